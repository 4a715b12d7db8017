//! Which anomalies each guarantee forbids.
//!
//! | anomaly                             | at-most-once | at-least-once | exactly-once |
//! |-------------------------------------|--------------|---------------|--------------|
//! | inconsistent-offsets                | forbidden    | forbidden     | forbidden    |
//! | duplicate                           | forbidden    | allowed       | forbidden    |
//! | double-processed                    | forbidden    | allowed       | forbidden    |
//! | lost-write, unseen                  | allowed      | forbidden     | forbidden    |
//! | poll-skip, int-poll-skip            | allowed      | forbidden     | forbidden    |
//! | nonmonotonic-poll, int-nonmonotonic-poll | forbidden | allowed    | forbidden    |
//! | nonmonotonic-send, int-nonmonotonic-send | forbidden | forbidden  | forbidden    |
//! | aborted-read (read_committed only)  | forbidden    | forbidden     | forbidden    |
//! | precommitted-read (read_committed)  | allowed      | allowed       | forbidden    |
//! | G1c (read_committed)                | allowed      | allowed       | forbidden    |
//! | G0, G1c-ww                          | allowed      | allowed       | allowed      |
//!
//! The reasoning, kind by kind, is in [`rationale`]. Jepsen forbids poll skips and
//! non-monotonic polls outside rebalances whatever the guarantee; here the history marks
//! rebalances (tracking restarts at each), so what remains is a consumer losing records
//! (a skip) or receiving them again (going back), and each is judged as the loss or the
//! duplicate it is.

use crate::checker::AnomalyKind;
use crate::history::{Guarantee, Isolation};

/// True if `guarantee` (with consumers at `isolation`) forbids `kind`.
pub fn is_forbidden(kind: AnomalyKind, guarantee: Guarantee, isolation: Isolation) -> bool {
    use AnomalyKind as K;
    use Guarantee as G;
    let read_committed = isolation == Isolation::ReadCommitted;
    match kind {
        K::InconsistentOffsets | K::NonmonotonicSend | K::IntNonmonotonicSend => true,
        K::Duplicate | K::DoubleProcessed | K::NonmonotonicPoll | K::IntNonmonotonicPoll => {
            guarantee != G::AtLeastOnce
        }
        K::LostWrite | K::Unseen | K::PollSkip | K::IntPollSkip => guarantee != G::AtMostOnce,
        K::AbortedRead => read_committed,
        K::PrecommittedRead | K::G1c => read_committed && guarantee == G::ExactlyOnce,
        K::G0 | K::G1cWw => false,
    }
}

/// Why [`is_forbidden`] answers as it does for `kind`, in a sentence for the report.
pub fn rationale(kind: AnomalyKind) -> &'static str {
    use AnomalyKind as K;
    match kind {
        K::InconsistentOffsets => "an offset names one record under every guarantee",
        K::Duplicate => {
            "a record stored twice is delivered twice: at-least-once allows that, at-most-once \
             and exactly-once do not"
        }
        K::DoubleProcessed => {
            "an input record consumed by two committed transactions was processed twice: \
             at-least-once allows that redelivery, exactly-once (offsets committed in the \
             transaction) and at-most-once do not"
        }
        K::LostWrite | K::Unseen => {
            "an acknowledged record must be delivered under at-least-once and exactly-once; \
             at-most-once may lose it"
        }
        K::PollSkip | K::IntPollSkip => {
            "a consumer skipping records without a rebalance loses them: allowed only under \
             at-most-once"
        }
        K::NonmonotonicPoll | K::IntNonmonotonicPoll => {
            "a consumer going back without a rebalance receives records again: allowed only \
             under at-least-once"
        }
        K::NonmonotonicSend | K::IntNonmonotonicSend => {
            "acknowledged sends from one producer keep their order in the partition under \
             every guarantee"
        }
        K::AbortedRead => {
            "read_committed hides failed sends and aborted transactions, whatever the guarantee"
        }
        K::PrecommittedRead => {
            "exactly-once at read_committed hides a transaction's records until it commits, \
             from its own polls too"
        }
        K::G1c => {
            "under read_committed a transaction reads only committed records, so two cannot \
             read each other: forbidden for exactly-once"
        }
        K::G0 | K::G1cWw => {
            "Kafka does not isolate writes: transactions interleave in the log, so log-order \
             (ww) cycles are expected (as in Jepsen)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnomalyKind as K;
    use Guarantee as G;

    #[test]
    fn the_table_matches_the_issue() {
        let rc = Isolation::ReadCommitted;
        let row = |k| G::ALL.map(|g| is_forbidden(k, g, rc));
        assert_eq!(row(K::InconsistentOffsets), [true, true, true]);
        assert_eq!(row(K::Duplicate), [true, false, true]);
        assert_eq!(row(K::DoubleProcessed), [true, false, true]);
        assert_eq!(row(K::LostWrite), [false, true, true]);
        assert_eq!(row(K::Unseen), [false, true, true]);
        assert_eq!(row(K::AbortedRead), [true, true, true]);
        assert_eq!(row(K::PrecommittedRead), [false, false, true]);
        assert_eq!(row(K::G1c), [false, false, true]);
        assert_eq!(row(K::G0), [false, false, false]);
        let ru = Isolation::ReadUncommitted;
        assert!(!is_forbidden(K::AbortedRead, G::ExactlyOnce, ru));
        assert!(!is_forbidden(K::G1c, G::ExactlyOnce, ru));
        assert!(is_forbidden(K::Duplicate, G::ExactlyOnce, ru));
        assert!(is_forbidden(K::DoubleProcessed, G::ExactlyOnce, ru));
    }
}
