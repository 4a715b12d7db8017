//! The live display: the Order API and each service's progress, and the faults as they
//! happen. Bars on a terminal; on anything else (CI logs) a status line every few seconds.

use std::io::IsTerminal as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::ApiProgress;
use crate::supervisor::ServiceProcess;

/// How often bars are redrawn.
const REDRAW: Duration = Duration::from_millis(250);
/// How often a status line is printed when stderr is not a terminal.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The display.
pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar, Vec<ProgressBar>)>,
    start: Instant,
}

impl Progress {
    /// Bars if `enabled` and stderr is a terminal; status lines otherwise; nothing at all if
    /// not `enabled`.
    pub fn new(enabled: bool, total_orders: u64, services: &[&'static str]) -> Self {
        let terminal = enabled && std::io::stderr().is_terminal();
        let bars = terminal.then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{prefix:>13} [{bar:30}] {pos:>8}/{len:8} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            let api = mp.add(ProgressBar::new(total_orders).with_style(style.clone()));
            api.set_prefix("order api");
            let svc = services
                .iter()
                .map(|name| {
                    let b = mp.add(ProgressBar::new(total_orders).with_style(style.clone()));
                    b.set_prefix(*name);
                    b
                })
                .collect();
            (mp, api, svc)
        });
        Self {
            bars,
            start: Instant::now(),
        }
    }

    /// Prints a line above the bars (or on stderr).
    pub fn line(&self, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        match &self.bars {
            Some((mp, _, _)) => {
                let _ = mp.println(format!("[{t:6.1}s] {text}"));
            }
            None => eprintln!("[{t:6.1}s] {text}"),
        }
    }

    /// Redraws until `done` is set: placed/acknowledged orders and each service's count.
    pub async fn follow(
        self: Arc<Self>,
        api: Arc<ApiProgress>,
        services: Arc<Mutex<Vec<ServiceProcess>>>,
        done: Arc<std::sync::atomic::AtomicBool>,
        enabled: bool,
    ) {
        let mut last_status = Instant::now();
        while !done.load(Ordering::Relaxed) {
            tokio::time::sleep(REDRAW).await;
            let placed = api.placed.load(Ordering::Relaxed);
            let acked = api.acked.load(Ordering::Relaxed);
            let counts: Vec<(&'static str, u64)> = services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|s| (s.kind().name(), s.processed()))
                .collect();
            match &self.bars {
                Some((_, api_bar, svc)) => {
                    api_bar.set_position(acked);
                    api_bar.set_message(format!("placed {placed}"));
                    for (bar, (_, n)) in svc.iter().zip(&counts) {
                        bar.set_position(*n);
                    }
                }
                None if enabled && last_status.elapsed() >= STATUS_EVERY => {
                    last_status = Instant::now();
                    let svc: Vec<String> = counts.iter().map(|(n, c)| format!("{n} {c}")).collect();
                    self.line(&format!(
                        "orders placed {placed}, acknowledged {acked} | {}",
                        svc.join(", ")
                    ));
                }
                None => {}
            }
        }
        if let Some((mp, api_bar, svc)) = &self.bars {
            api_bar.finish();
            for b in svc {
                b.finish();
            }
            let _ = mp.clear();
        }
    }
}
