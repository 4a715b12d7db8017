//! The faults the demo injects while orders flow, each switchable (`--faults`, `--no-faults`).
//!
//! | Fault | What happens | What it tests |
//! |---|---|---|
//! | `kill-service` | a random service is SIGKILLed mid-batch and started again 0.5–2 s later | redelivery of what it had not committed; exactly-once recovery from the database's offsets |
//! | `lost-ack` | the proxy drops the answers to the next Produce requests (and closes those connections) | the producer's retries; the idempotent producer storing each retried batch once |
//! | `cut-connections` | every client connection is closed at once | every client's reconnect; consumers' fetch and commit retries |
//! | `broker-restart` | the embedded broker is SIGKILLed and started again on its data | acks=all durability (fsync before the answer); committed offsets and group recovery |
//! | `producer-retry` | about 1 in 200 acknowledged orders is sent again by its client, as a new record with the same idempotency key | deduplication by idempotency key in Payment and Inventory |
//!
//! The first four are events on a schedule drawn from the run's seed (one every 2–4 s); the
//! last is continuous, in the Order API.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::DemoError;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DemoFault {
    /// SIGKILL a service, then restart it.
    KillService,
    /// Lose the acknowledgements of Produce requests.
    LostAck,
    /// Close every client connection.
    CutConnections,
    /// SIGKILL and restart the embedded broker.
    BrokerRestart,
    /// Clients send acknowledged orders again.
    ProducerRetry,
}

impl DemoFault {
    /// Every kind.
    pub const ALL: [DemoFault; 5] = [
        DemoFault::KillService,
        DemoFault::LostAck,
        DemoFault::CutConnections,
        DemoFault::BrokerRestart,
        DemoFault::ProducerRetry,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            DemoFault::KillService => "kill-service",
            DemoFault::LostAck => "lost-ack",
            DemoFault::CutConnections => "cut-connections",
            DemoFault::BrokerRestart => "broker-restart",
            DemoFault::ProducerRetry => "producer-retry",
        }
    }

    /// Parses a comma-separated list (`all` for every kind).
    pub fn parse_list(list: &str) -> Result<Vec<DemoFault>, DemoError> {
        if list.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let f: DemoFault = name.parse()?;
            if !out.contains(&f) {
                out.push(f);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for DemoFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DemoFault {
    type Err = DemoError;

    fn from_str(s: &str) -> Result<Self, DemoError> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let valid: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                DemoError::BadArgument(format!(
                    "unknown fault {s:?}; the faults are {} (or all)",
                    valid.join(", ")
                ))
            })
    }
}

/// The share of acknowledged orders clients send again under `producer-retry`.
pub const CLIENT_RETRY_FRACTION: f64 = 0.005;
/// Produce answers dropped per `lost-ack` event.
pub const ACKS_LOST_PER_EVENT: u64 = 3;

/// One scheduled fault event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When, from the start of the run.
    pub at: Duration,
    /// What.
    pub fault: DemoFault,
}

/// The scheduled events for a run of `duration`: the enabled event kinds in turn, one every
/// 2–4 s, never in the first 2 s or the last 2 s; the broker restarted at most once per 30 s.
pub fn plan(enabled: &[DemoFault], duration: Duration, rng: &mut StdRng) -> Vec<Planned> {
    let kinds: Vec<DemoFault> = enabled
        .iter()
        .copied()
        .filter(|f| *f != DemoFault::ProducerRetry)
        .collect();
    let mut out = Vec::new();
    if kinds.is_empty() || duration < Duration::from_secs(5) {
        return out;
    }
    let end = duration - Duration::from_secs(2);
    let mut at = Duration::from_millis(rng.gen_range(2000..4000));
    let mut last_restart: Option<Duration> = None;
    // Round robin in declaration order, so that a short run still sees each kind once.
    let mut turn = 0;
    while at < end {
        let mut fault = kinds[turn % kinds.len()];
        turn += 1;
        let too_soon = last_restart.is_some_and(|t| at - t < Duration::from_secs(30));
        if fault == DemoFault::BrokerRestart && too_soon {
            if kinds.len() == 1 {
                at += Duration::from_millis(rng.gen_range(2000..4000));
                continue;
            }
            // Round robin: the next kind is another one.
            fault = kinds[turn % kinds.len()];
            turn += 1;
        }
        if fault == DemoFault::BrokerRestart {
            last_restart = Some(at);
        }
        out.push(Planned { at, fault });
        at += Duration::from_millis(rng.gen_range(2000..4000));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_lists_and_rejects_unknown_names() {
        assert_eq!(
            DemoFault::parse_list("all").unwrap(),
            DemoFault::ALL.to_vec()
        );
        assert_eq!(
            DemoFault::parse_list("lost-ack, kill-service,lost-ack").unwrap(),
            vec![DemoFault::LostAck, DemoFault::KillService]
        );
        let err = DemoFault::parse_list("kill").unwrap_err().to_string();
        assert!(
            err.contains("\"kill\"") && err.contains("broker-restart"),
            "{err}"
        );
    }

    #[test]
    fn plan_spaces_events_and_restarts_the_broker_rarely() {
        let mut rng = StdRng::seed_from_u64(7);
        let plan = plan(&DemoFault::ALL, Duration::from_secs(30), &mut rng);
        assert!(plan.len() >= 6, "{plan:?}");
        for w in plan.windows(2) {
            assert!(w[1].at - w[0].at >= Duration::from_secs(2), "{plan:?}");
        }
        let restarts = plan
            .iter()
            .filter(|p| p.fault == DemoFault::BrokerRestart)
            .count();
        assert_eq!(restarts, 1, "{plan:?}");
        assert!(plan.iter().all(|p| p.at <= Duration::from_secs(28)));
        assert!(plan.iter().all(|p| p.fault != DemoFault::ProducerRetry));
        for kind in [
            DemoFault::KillService,
            DemoFault::LostAck,
            DemoFault::CutConnections,
        ] {
            assert!(
                plan.iter().any(|p| p.fault == kind),
                "{kind} missing from {plan:?}"
            );
        }
    }
}
