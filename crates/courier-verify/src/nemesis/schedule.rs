//! When each fault happens: a list of [`FaultEvent`]s, random from a seed or written out.
//!
//! Rules every schedule keeps (random ones by construction, parsed ones checked):
//!
//! - Two faults of the same kind never overlap, and the faults acting on the broker process
//!   (kill-broker, pause-broker, truncate-segment; see [`FaultKind::acts_on_process`]) never
//!   overlap each other, since each needs the process in a known state.
//! - Random schedules leave the first 10% of the run alone (a clean baseline) and end every
//!   fault before the last 15% (the healing phase, in which whatever was retried must
//!   settle).
//!
//! An event's `length` is how long the fault lasts: how long the broker stays down
//! (kill-broker, truncate-segment: the segment is cut while it is down), paused, partitioned,
//! and so on. For one-shot faults (cut-connections, client-crash) the workload acts at `at`
//! and the window is the time after it that anomalies are attributed to it.
//!
//! Random schedules use their own SplitMix64 generator on integer milliseconds, so a seed
//! gives the same schedule on every platform and every version of the `rand` crate.

use std::fmt;
use std::time::Duration;

use super::FaultKind;
use crate::VerifyError;

/// Most events a random schedule holds, whatever the interval.
const MAX_EVENTS: usize = 10_000;
/// Shortest mean interval honoured, in ms.
const MIN_MEAN_INTERVAL_MS: u64 = 10;

/// One fault: `kind` starts `at` after the run starts and lasts `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultEvent {
    /// When it starts, from the start of the run.
    pub at: Duration,
    /// What it is.
    pub kind: FaultKind,
    /// How long it lasts.
    pub length: Duration,
}

impl FaultEvent {
    /// When it ends, from the start of the run.
    pub fn end(&self) -> Duration {
        self.at + self.length
    }
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}+{}",
            self.kind,
            FormatDuration(self.at),
            FormatDuration(self.length)
        )
    }
}

/// The faults of one run, in start order. Its `Display` form is what [`Schedule::parse`]
/// reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Sorted by `at`.
    events: Vec<FaultEvent>,
}

impl Schedule {
    /// A random schedule over a run of `duration`: fault starts are spaced by a uniformly
    /// random gap of 0 to 2 × `mean_interval`, each of a kind drawn uniformly from `kinds`,
    /// lasting 1-5 s (0.5-3 s of downtime for kill-broker and truncate-segment). A fault that
    /// would overlap one it must not, or not end before the healing phase, is left out.
    /// The same arguments always give the same schedule.
    pub fn random(
        seed: u64,
        duration: Duration,
        kinds: &[FaultKind],
        mean_interval: Duration,
    ) -> Schedule {
        let mut unique: Vec<FaultKind> = Vec::new();
        for &k in kinds {
            if !unique.contains(&k) {
                unique.push(k);
            }
        }
        let total = millis(duration);
        let first = total / 10;
        let last = total - total * 15 / 100;
        let mean = millis(mean_interval).max(MIN_MEAN_INTERVAL_MS);
        let mut rng = SplitMix64(seed);
        let mut events = Vec::new();
        if unique.is_empty() {
            return Schedule { events };
        }
        // Starts only grow, so an event fits if it starts after the last one of its kind (and
        // the last process fault, for those) ended.
        let mut kind_end = [0u64; FaultKind::ALL.len()];
        let mut process_end = 0u64;
        let mut t = first;
        while events.len() < MAX_EVENTS {
            t = t.saturating_add(rng.up_to(2 * mean));
            if t >= last {
                break;
            }
            let kind = unique[rng.up_to(unique.len() as u64 - 1) as usize];
            let (min, max) = length_range_ms(kind);
            let length = min + rng.up_to(max - min);
            let process = kind.acts_on_process();
            let fits = t + length <= last
                && kind_end[kind as usize] <= t
                && (!process || process_end <= t);
            if fits {
                kind_end[kind as usize] = t + length;
                if process {
                    process_end = t + length;
                }
                events.push(FaultEvent {
                    at: Duration::from_millis(t),
                    kind,
                    length: Duration::from_millis(length),
                });
            }
        }
        Schedule { events }
    }

    /// Parses an explicit schedule: comma-separated `KIND@START+LENGTH` items, durations with
    /// a unit (`500ms`, `5s`, `1.5s`, `2m`), e.g. `kill-broker@5s+2s,lost-ack@8s+3s`. An
    /// empty spec is an empty schedule. Overlaps the rules forbid are errors.
    pub fn parse(spec: &str) -> Result<Schedule, VerifyError> {
        let mut events: Vec<FaultEvent> = Vec::new();
        if spec.trim().is_empty() {
            return Ok(Schedule { events });
        }
        for item in spec.split(',') {
            let event = parse_event(item.trim())?;
            if let Some(other) = events.iter().find(|e| !compatible(e, &event)) {
                return Err(bad(
                    item,
                    format!("it overlaps {other}, which must not run at the same time"),
                ));
            }
            events.push(event);
        }
        events.sort_by_key(|e| (e.at, e.kind));
        Ok(Schedule { events })
    }

    /// The events, in start order.
    pub fn events(&self) -> &[FaultEvent] {
        &self.events
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// When the last fault ends (zero for an empty schedule).
    pub fn end(&self) -> Duration {
        self.events
            .iter()
            .map(FaultEvent::end)
            .max()
            .unwrap_or_default()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The range of a random fault's length, in ms.
fn length_range_ms(kind: FaultKind) -> (u64, u64) {
    match kind {
        FaultKind::KillBroker | FaultKind::TruncateSegment => (500, 3_000),
        _ => (1_000, 5_000),
    }
}

/// True if `a` and `b` may be in effect at the same time.
fn compatible(a: &FaultEvent, b: &FaultEvent) -> bool {
    let exclusive = a.kind == b.kind || (a.kind.acts_on_process() && b.kind.acts_on_process());
    !exclusive || a.end() <= b.at || b.end() <= a.at
}

fn parse_event(item: &str) -> Result<FaultEvent, VerifyError> {
    const SHAPE: &str = "expected KIND@START+LENGTH, e.g. kill-broker@5s+2s";
    if item.is_empty() {
        return Err(bad(item, format!("empty item; {SHAPE}")));
    }
    let (kind, times) = item
        .split_once('@')
        .ok_or_else(|| bad(item, format!("no '@'; {SHAPE}")))?;
    let (at, length) = times
        .split_once('+')
        .ok_or_else(|| bad(item, format!("no '+LENGTH'; {SHAPE}")))?;
    let kind: FaultKind = kind
        .parse()
        .map_err(|e: VerifyError| bad(item, e.to_string()))?;
    let at = parse_duration(at).map_err(|reason| bad(item, format!("start: {reason}")))?;
    let length = parse_duration(length).map_err(|reason| bad(item, format!("length: {reason}")))?;
    if length.is_zero() {
        return Err(bad(item, "the length must be more than zero".into()));
    }
    Ok(FaultEvent { at, kind, length })
}

/// `<number><unit>`, the number plain decimal (`1`, `1.5`), the unit `ms`, `s` or `m`;
/// rounded to the millisecond.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let expected = || format!("{s:?} is not a duration like 500ms, 5s, 1.5s or 2m");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(expected)?;
    let (number, unit) = s.split_at(split);
    let well_formed = !number.is_empty()
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.matches('.').count() <= 1;
    if !well_formed {
        return Err(expected());
    }
    let value: f64 = number.parse().map_err(|_| expected())?;
    let unit_ms = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        _ => return Err(expected()),
    };
    let ms = (value * unit_ms).round();
    // A day is far longer than any run; the bound keeps the conversion exact.
    if ms > 86_400_000.0 {
        return Err(format!("{s:?} is longer than a day"));
    }
    Ok(Duration::from_millis(ms as u64))
}

fn bad(item: &str, reason: String) -> VerifyError {
    VerifyError::BadSchedule {
        item: item.to_string(),
        reason,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Writes a duration the way [`parse_duration`] reads it: whole seconds as `5s`, else ms.
struct FormatDuration(Duration);

impl fmt::Display for FormatDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = millis(self.0);
        let (secs, rest) = (ms / 1_000, ms % 1_000);
        if rest == 0 {
            write!(f, "{secs}s")
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator whose output is fixed by its
/// definition, so schedules stay reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (the modulo bias is negligible for the small ranges used).
    fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[FaultKind] = &FaultKind::ALL;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn same_seed_same_schedule() {
        let a = Schedule::random(42, secs(120), ALL, secs(3));
        let b = Schedule::random(42, secs(120), ALL, secs(3));
        assert_eq!(a, b);
        assert!(a.len() >= 5, "{a}");
        let c = Schedule::random(43, secs(120), ALL, secs(3));
        assert_ne!(a, c);
    }

    #[test]
    fn random_schedules_keep_the_rules() {
        for seed in 0..200 {
            let duration = secs(60 + seed % 120);
            let s = Schedule::random(seed, duration, ALL, Duration::from_millis(800));
            let events = s.events();
            for (i, e) in events.iter().enumerate() {
                assert!(e.at >= duration / 10, "seed {seed}: {e} starts too early");
                assert!(
                    e.end() <= duration - duration * 15 / 100,
                    "seed {seed}: {e} runs into the healing phase"
                );
                let (min, max) = length_range_ms(e.kind);
                let ms = millis(e.length);
                assert!((min..=max).contains(&ms), "seed {seed}: {e} length");
                for other in &events[i + 1..] {
                    assert!(compatible(e, other), "seed {seed}: {e} overlaps {other}");
                    assert!(other.at >= e.at, "seed {seed}: not sorted");
                }
            }
        }
    }

    #[test]
    fn random_uses_only_the_kinds_given() {
        let kinds = [FaultKind::LostAck, FaultKind::Delay, FaultKind::LostAck];
        let s = Schedule::random(1, secs(300), &kinds, secs(1));
        assert!(!s.is_empty());
        assert!(s
            .events()
            .iter()
            .all(|e| matches!(e.kind, FaultKind::LostAck | FaultKind::Delay)));
    }

    #[test]
    fn degenerate_random_inputs_give_small_schedules() {
        assert!(Schedule::random(1, secs(60), &[], secs(1)).is_empty());
        assert!(Schedule::random(1, Duration::ZERO, ALL, secs(1)).is_empty());
        assert!(Schedule::random(1, Duration::from_millis(500), ALL, secs(1)).is_empty());
        let dense = Schedule::random(1, secs(3_600), ALL, Duration::ZERO);
        assert!(dense.len() <= MAX_EVENTS);
        assert!(!dense.is_empty());
    }

    #[test]
    fn parse_and_display_round_trip() {
        let s = Schedule::parse(" lost-ack@8s+3s , kill-broker@5s+1.5s,delay@500ms+2m")
            .expect("parses");
        let kinds: Vec<_> = s.events().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [FaultKind::Delay, FaultKind::KillBroker, FaultKind::LostAck]
        );
        assert_eq!(s.events()[1].length, Duration::from_millis(1_500));
        assert_eq!(s.end(), Duration::from_millis(120_500));
        let text = s.to_string();
        assert_eq!(
            text,
            "delay@500ms+120s,kill-broker@5s+1500ms,lost-ack@8s+3s"
        );
        assert_eq!(Schedule::parse(&text).expect("reparses"), s);
        let random = Schedule::random(9, secs(100), ALL, secs(2));
        assert_eq!(
            Schedule::parse(&random.to_string()).expect("reparses"),
            random
        );
        assert!(Schedule::parse("  ").expect("empty").is_empty());
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let cases = [
            ("kill-broker", "no '@'"),
            ("kill-broker@5s", "no '+LENGTH'"),
            ("kil-broker@5s+1s", "valid faults: kill-broker"),
            ("kill-broker@5+1s", "start: \"5\" is not a duration"),
            ("kill-broker@5s+1h", "length: \"1h\" is not a duration"),
            ("kill-broker@-5s+1s", "start:"),
            ("kill-broker@1.s+1s", "start:"),
            ("kill-broker@5s+0s", "more than zero"),
            ("kill-broker@5s+1s,,delay@1s+1s", "empty item"),
            ("delay@99999m+1s", "longer than a day"),
            (
                "kill-broker@5s+2s,pause-broker@6s+1s",
                "overlaps kill-broker@5s+2s",
            ),
            ("delay@5s+2s,delay@6s+1s", "overlaps delay@5s+2s"),
        ];
        for (spec, expected) in cases {
            let err = Schedule::parse(spec).expect_err(spec).to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
        // Different kinds that do not share the process may overlap.
        let ok = Schedule::parse("kill-broker@5s+2s,lost-ack@5s+3s,delay@6s+1s").expect("ok");
        assert_eq!(ok.len(), 3);
        // Back to back is not an overlap.
        Schedule::parse("kill-broker@5s+2s,truncate-segment@7s+1s").expect("adjacent");
    }
}
