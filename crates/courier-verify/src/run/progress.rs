//! The live display while a run goes: elapsed time against the duration, and the totals so
//! far (acknowledged, unknown and failed operations, values read, faults).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::Shared;

/// A running display; `finish` (or drop) clears it.
pub struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the display (a no-op when `enabled` is false, e.g. in CI logs).
    pub fn start(shared: Arc<Shared>, duration: Duration, enabled: bool) -> Self {
        if !enabled {
            return Self {
                bar: None,
                task: None,
            };
        }
        let bar = ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                let c = &shared.recorder.counters;
                shown.set_position(started.elapsed().as_secs());
                shown.set_message(format!(
                    "ok {} info {} fail {} read {} faults {}",
                    c.ok.load(Ordering::Relaxed),
                    c.info.load(Ordering::Relaxed),
                    c.fail.load(Ordering::Relaxed),
                    c.read.load(Ordering::Relaxed),
                    c.faults.load(Ordering::Relaxed),
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self {
            bar: Some(bar),
            task: Some(task),
        }
    }

    /// Stops and clears the display.
    pub fn finish(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
