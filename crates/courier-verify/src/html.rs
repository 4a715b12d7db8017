//! A self-contained HTML page: the verdict, then plots over time of throughput, latency and
//! fault windows, then the text report. The plots are inline SVG written by hand: no scripts,
//! no external assets, so the page opens anywhere and can be attached to an issue.
//!
//! Fault windows are shaded bands on every plot, in one colour per fault kind. The last plot
//! has a row per fault kind and a row of ticks at the times of forbidden anomalies.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{History, Outcome};
use crate::judgement::is_forbidden;
use crate::{CheckResult, FaultWindow};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 100.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 30.0;
/// Beyond this many ops, the latency scatter plots every n-th one.
const MAX_POINTS: usize = 20_000;
/// Fault colours: none of them the green, blue and orange the series use.
const PALETTE: [&str; 8] = [
    "#911eb4", "#e6194b", "#9a6324", "#808080", "#f032e6", "#469990", "#000075", "#808000",
];

/// Escapes text for HTML and SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A step of 1, 2 or 5 times a power of ten giving about `n` ticks over `range`.
fn nice_step(range: f64, n: f64) -> f64 {
    let raw = (range / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Formats a tick value without trailing noise.
fn tick_label(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One plot's frame: time on x (seconds), something on y.
struct Frame {
    height: f64,
    /// The time axis's end (s).
    t_max: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.t_max).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn inner_height(&self) -> f64 {
        self.height - TOP - BOTTOM
    }

    /// Opens the SVG and draws the time axis and the fault bands.
    fn open(&self, out: &mut String, faults: &[FaultWindow], colors: &BTreeMap<&str, &str>) {
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif" font-size="11">"#,
            self.height
        );
        let bottom = self.height - BOTTOM;
        for w in faults {
            let x0 = self.x(w.start as f64 / 1e9);
            let x1 = self.x(w.stop.map_or(self.t_max, |t| t as f64 / 1e9));
            let color = colors.get(w.kind.as_str()).copied().unwrap_or("#999");
            let _ = writeln!(
                out,
                r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.15"><title>{}</title></rect>"#,
                (x1 - x0).max(1.0),
                self.inner_height(),
                esc(&w.describe())
            );
        }
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
            WIDTH - RIGHT
        );
        let step = nice_step(self.t_max, 10.0);
        let mut t = 0.0;
        while t <= self.t_max * 1.0001 {
            let x = self.x(t);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}s</text>"##,
                bottom + 4.0,
                bottom + 16.0,
                tick_label(t)
            );
            t += step;
        }
    }

    /// A horizontal grid line with its label at `y`.
    fn y_tick(&self, out: &mut String, y: f64, label: &str) {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
}

/// The page for `result`, checked from `history`, with `report` (the text report) at the end.
pub fn page(history: &History, result: &CheckResult, report: &str) -> String {
    let t_max = (history.end_time as f64 / 1e9).max(1e-6);
    let mut colors: BTreeMap<&str, &str> = BTreeMap::new();
    for w in &history.faults {
        let next = PALETTE[colors.len() % PALETTE.len()];
        colors.entry(w.kind.as_str()).or_insert(next);
    }
    let mut out = String::new();
    let verdict = if result.valid() { "VALID" } else { "INVALID" };
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>courier verify: {verdict}</title>\n\
         <style>body{{font-family:sans-serif;margin:24px;max-width:1000px}}\
         .bad{{color:#b00}}.good{{color:#070}}td,th{{padding:2px 10px;text-align:left}}\
         pre{{background:#f6f6f6;padding:12px;overflow-x:auto}}</style></head><body>"
    );
    let class = if result.valid() { "good" } else { "bad" };
    let _ = writeln!(
        out,
        "<h1 class=\"{class}\">{verdict} under {} at {}</h1>",
        result.guarantee, result.isolation
    );
    let _ = writeln!(
        out,
        "<p>{} operations over {:.3}s; {} values sent, {} read; {} fault windows; seed {}.</p>",
        result.stats.ops,
        t_max,
        result.stats.values_sent,
        result.stats.values_read,
        result.faults.len(),
        result.meta.seed
    );
    if !result.anomalies.is_empty() {
        let _ = writeln!(
            out,
            "<table><tr><th>anomaly</th><th>count</th><th>verdict</th></tr>"
        );
        for (kind, found) in &result.anomalies {
            let forbidden = is_forbidden(*kind, result.guarantee, result.isolation);
            let _ = writeln!(
                out,
                "<tr><td>{kind}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                found.len(),
                if forbidden { "bad" } else { "good" },
                if forbidden { "forbidden" } else { "allowed" }
            );
        }
        let _ = writeln!(out, "</table>");
    }
    if !colors.is_empty() {
        let legend = colors
            .iter()
            .map(|(k, c)| {
                format!(
                    "<span style=\"background:{c};opacity:0.6\">&nbsp;&nbsp;&nbsp;</span> {}",
                    esc(k)
                )
            })
            .collect::<Vec<_>>()
            .join(" &nbsp; ");
        let _ = writeln!(out, "<p>Fault windows: {legend}</p>");
    }
    let _ = writeln!(out, "<h2>Throughput</h2>");
    throughput(&mut out, history, t_max, &colors);
    let _ = writeln!(out, "<h2>Latency</h2>");
    latency(&mut out, history, t_max, &colors);
    let _ = writeln!(out, "<h2>Faults and forbidden anomalies</h2>");
    timeline(&mut out, history, result, t_max, &colors);
    let _ = writeln!(
        out,
        "<h2>Report</h2>\n<pre>{}</pre>\n</body></html>",
        esc(report)
    );
    out
}

/// Ok sends and polled values per second, by completion time.
fn throughput(out: &mut String, history: &History, t_max: f64, colors: &BTreeMap<&str, &str>) {
    let buckets = 120usize;
    let width = t_max / buckets as f64;
    let mut sent = vec![0usize; buckets];
    let mut read = vec![0usize; buckets];
    for op in history.ops.iter().filter(|op| op.outcome == Outcome::Ok) {
        let b = ((op.time as f64 / 1e9 / width) as usize).min(buckets - 1);
        sent[b] += op.sends().count();
        read[b] += op.polls().count();
    }
    let rate = |n: usize| n as f64 / width;
    // The scale follows the bulk of the run, not its peaks: the final read's burst would
    // otherwise flatten everything else. Peaks above it are clipped (and said to be).
    let mut rates: Vec<f64> = sent
        .iter()
        .chain(&read)
        .map(|&n| rate(n))
        .filter(|&r| r > 0.0)
        .collect();
    rates.sort_by(f64::total_cmp);
    let peak = rates.last().copied().unwrap_or(0.0);
    let p95 = rates
        .get(rates.len().saturating_sub(1) * 95 / 100)
        .copied()
        .unwrap_or(0.0);
    let y_max = (p95 * 1.5).min(peak).max(1.0);
    let clipped = peak > y_max;
    let frame = Frame {
        height: 240.0,
        t_max,
    };
    frame.open(out, &history.faults, colors);
    let y = |v: f64| TOP + frame.inner_height() * (1.0 - (v / y_max).min(1.0));
    let step = nice_step(y_max, 5.0);
    let mut v = 0.0;
    while v <= y_max {
        frame.y_tick(out, y(v), &format!("{}/s", tick_label(v)));
        v += step;
    }
    for (series, color, name) in [(&sent, "#4363d8", "sent"), (&read, "#3cb44b", "polled")] {
        let points = series
            .iter()
            .enumerate()
            .map(|(i, &n)| format!("{:.1},{:.1}", frame.x((i as f64 + 0.5) * width), y(rate(n))))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            out,
            r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"><title>values {name} per second</title></polyline>"#
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" fill="#4363d8">ok sends/s</text><text x="{}" y="{}" fill="#3cb44b">polled values/s</text></svg>"##,
        LEFT + 10.0,
        TOP + 12.0,
        LEFT + 90.0,
        TOP + 12.0
    );
    if clipped {
        let _ = writeln!(
            out,
            "<p>Peaks above the scale are clipped (highest: {}/s, e.g. the final read).</p>",
            tick_label(peak)
        );
    }
}

/// Invoke-to-completion latency per op (log scale), coloured by outcome.
fn latency(out: &mut String, history: &History, t_max: f64, colors: &BTreeMap<&str, &str>) {
    let done: Vec<_> = history.ops.iter().filter(|op| op.completed).collect();
    let every = done.len().div_ceil(MAX_POINTS).max(1);
    let ms = |ns: u64| (ns as f64 / 1e6).max(1e-3);
    let latencies = || {
        done.iter()
            .map(|op| ms(op.time.saturating_sub(op.invoke_time)))
    };
    let max_ms = latencies().fold(1.0, f64::max);
    let min_ms = latencies().fold(max_ms, f64::min);
    let lo = min_ms.log10().floor().min(-1.0);
    let hi = max_ms.log10().ceil().max(lo + 1.0);
    let frame = Frame {
        height: 280.0,
        t_max,
    };
    frame.open(out, &history.faults, colors);
    let y = |v: f64| TOP + frame.inner_height() * (1.0 - (v.log10() - lo) / (hi - lo));
    let mut decade = lo;
    while decade <= hi {
        let v = 10f64.powf(decade);
        frame.y_tick(out, y(v), &format!("{} ms", tick_label(v)));
        decade += 1.0;
    }
    for op in done.iter().step_by(every) {
        let color = match op.outcome {
            Outcome::Ok => "#3cb44b",
            Outcome::Info => "#f58231",
            Outcome::Fail => "#e6194b",
        };
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{color}" fill-opacity="0.6"/>"#,
            frame.x(op.invoke_time as f64 / 1e9),
            y(ms(op.time.saturating_sub(op.invoke_time)))
        );
    }
    let sampled = if every > 1 {
        format!(" (every {every}th op)")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}"><tspan fill="#3cb44b">ok</tspan> <tspan fill="#f58231">info</tspan> <tspan fill="#e6194b">fail</tspan>{sampled}</text></svg>"##,
        LEFT + 10.0,
        TOP + 12.0
    );
}

/// One row per fault kind with its windows, and a row of forbidden-anomaly ticks.
fn timeline(
    out: &mut String,
    history: &History,
    result: &CheckResult,
    t_max: f64,
    colors: &BTreeMap<&str, &str>,
) {
    let rows = colors.len() + 1;
    let row_h = 18.0;
    let frame = Frame {
        height: TOP + BOTTOM + row_h * rows as f64,
        t_max,
    };
    frame.open(out, &[], colors);
    for (row, (kind, color)) in colors.iter().enumerate() {
        let y = TOP + row_h * row as f64;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 12.0,
            esc(kind)
        );
        for w in history.faults.iter().filter(|w| w.kind == *kind) {
            let x0 = frame.x(w.start as f64 / 1e9);
            let x1 = frame.x(w.stop.map_or(t_max, |t| t as f64 / 1e9));
            let _ = writeln!(
                out,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.7"><title>{}</title></rect>"#,
                y + 2.0,
                (x1 - x0).max(1.0),
                row_h - 4.0,
                esc(&w.describe())
            );
        }
    }
    let y = TOP + row_h * colors.len() as f64;
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#b00">anomalies</text>"##,
        LEFT - 6.0,
        y + 12.0
    );
    for (kind, found) in &result.anomalies {
        if !is_forbidden(*kind, result.guarantee, result.isolation) {
            continue;
        }
        for a in found.iter().take(MAX_POINTS) {
            let x = frame.x(a.time as f64 / 1e9);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#b00"><title>{}</title></line>"##,
                y + 2.0,
                y + row_h - 2.0,
                esc(&format!("{kind}: {}", a.explanation))
            );
        }
    }
    let _ = writeln!(out, "</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(10.0, 10.0), 1.0);
        assert_eq!(nice_step(60.0, 10.0), 10.0);
        assert!((nice_step(0.003, 10.0) - 0.0005).abs() < 1e-12);
        assert_eq!(esc("<a&\"b'>"), "&lt;a&amp;&quot;b&#39;&gt;");
        assert_eq!(tick_label(0.001), "0.001");
        assert_eq!(tick_label(0.1), "0.1");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(1000.0), "1000");
    }
}
