//! The nemesis of `courier verify run`: the faults injected into a broker while the workload
//! runs against it, and the schedule saying when.
//!
//! Every fault acts on something real, never on a mock:
//!
//! - [`BrokerProcess`] (`broker.rs`) owns a `courier serve` child process: SIGKILL and restart
//!   on the same port, SIGSTOP/SIGCONT, and (while it is down) a torn write of a segment's
//!   tail ([`BrokerProcess::truncate_tail`], `torn_write.rs`). Blocking calls: from async
//!   code, run them under `tokio::task::spawn_blocking`.
//! - [`FaultProxy`] (`proxy.rs`, with the Kafka framing in `frame.rs`) is a TCP proxy every
//!   client connection goes through: it cuts connections, delays frames, partitions clients
//!   from the broker, and loses Produce acknowledgements. It runs on the tokio runtime it is
//!   started from; its controls are plain methods callable from any thread.
//! - [`DiskLimit`] (`disk.rs`) mounts a small tmpfs at the data directory and fills it up.
//! - [`Schedule`] (`schedule.rs`) is the list of [`FaultEvent`]s: random from a seed, or
//!   written out by hand (`kill-broker@5s+2s,lost-ack@8s+3s`).
//!
//! Wiring: start the proxy first (ephemeral port, upstream `127.0.0.1:<broker port>`, the port
//! chosen with [`free_port`]), then the broker with [`BrokerOptions::advertised`] set to the
//! proxy's address, so that clients bootstrapping through the proxy are told to keep using it.
//!
//! Some faults are destructive on purpose: truncate-segment destroys acknowledged data and
//! lost-ack makes a non-idempotent producer write duplicates. The checker is expected to
//! flag what they cause; the workload records each fault's window so it can.

mod broker;
mod disk;
mod frame;
mod proxy;
mod rewrite;
mod schedule;
mod torn_write;

use std::fmt;
use std::str::FromStr;

use crate::VerifyError;

pub use broker::{free_port, probe_api_versions, BrokerOptions, BrokerProcess};
pub use disk::DiskLimit;
pub use proxy::{FaultProxy, ProxyStats};
pub use schedule::{FaultEvent, Schedule};
pub use torn_write::TruncateInfo;

/// A kind of fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL the broker, then restart it on the same port and data directory.
    KillBroker,
    /// SIGSTOP the broker (its sockets stay open, nothing answers), then SIGCONT it.
    PauseBroker,
    /// Drop the responses to Produce requests the broker handled, and close the client's
    /// connection: the record is appended but the producer never hears so.
    LostAck,
    /// Close every open client connection at once.
    CutConnections,
    /// Hold every frame in the proxy for a while before forwarding it.
    Delay,
    /// Refuse new connections and cut open ones: clients cannot reach the broker.
    Partition,
    /// Kill the broker, cut the tail of a segment (a torn write: destroys acknowledged
    /// data), and restart it.
    TruncateSegment,
    /// Fill the broker's (size-limited) filesystem until writes fail with ENOSPC.
    DiskFull,
    /// Crash a client process of the workload (it loses whatever it had not acknowledged).
    ClientCrash,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillBroker,
        FaultKind::PauseBroker,
        FaultKind::LostAck,
        FaultKind::CutConnections,
        FaultKind::Delay,
        FaultKind::Partition,
        FaultKind::TruncateSegment,
        FaultKind::DiskFull,
        FaultKind::ClientCrash,
    ];

    /// The kebab-case name used on the command line, in schedules and in histories.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillBroker => "kill-broker",
            FaultKind::PauseBroker => "pause-broker",
            FaultKind::LostAck => "lost-ack",
            FaultKind::CutConnections => "cut-connections",
            FaultKind::Delay => "delay",
            FaultKind::Partition => "partition",
            FaultKind::TruncateSegment => "truncate-segment",
            FaultKind::DiskFull => "disk-full",
            FaultKind::ClientCrash => "client-crash",
        }
    }

    /// True for faults acting on the broker process itself (kill, pause, truncate): at most
    /// one of them is in effect at a time, since each needs the process in a known state.
    pub fn acts_on_process(self) -> bool {
        matches!(
            self,
            FaultKind::KillBroker | FaultKind::PauseBroker | FaultKind::TruncateSegment
        )
    }

    /// The valid names, comma-separated, for error messages and `--help`.
    pub fn valid_names() -> String {
        FaultKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = VerifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| VerifyError::UnknownFault {
                name: s.to_string(),
                valid: FaultKind::valid_names(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.name().parse::<FaultKind>().expect("parses"), kind);
            assert_eq!(kind.to_string(), kind.name());
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "kill".parse::<FaultKind>().expect_err("unknown");
        let msg = err.to_string();
        assert!(msg.contains("\"kill\""), "{msg}");
        for kind in FaultKind::ALL {
            assert!(msg.contains(kind.name()), "{msg} lacks {}", kind.name());
        }
    }
}
