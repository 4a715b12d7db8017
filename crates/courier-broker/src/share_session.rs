//! Share sessions (KIP-932) as a plain state machine: requests in, decisions out, the clock
//! passed in.
//!
//! A share session belongs to one member of one share group, keyed by (group id, member id),
//! and holds the partitions that member fetches from this broker. The epoch in each ShareFetch
//! and ShareAcknowledge says where the request stands:
//!
//! - `0` (ShareFetch only): open a session holding the request's partitions, replacing any the
//!   member had (whose partitions are handed back, like a closed session's); it must carry no
//!   acknowledgements. The next request must carry epoch 1.
//! - `N > 0`: the request continues the session and must carry exactly the epoch expected
//!   (else INVALID_SHARE_SESSION_EPOCH); a ShareFetch adds the partitions it lists and drops
//!   its forgotten ones, and fetches from every partition in the session. Each request, a
//!   ShareAcknowledge too, moves the expected epoch on by one (`i32::MAX` wraps to 1).
//! - `-1`: close the session (the last acknowledgements may ride along); its partitions are
//!   handed back so that the caller releases what the member still holds in them.
//!
//! At most `max_sessions` sessions exist; a new one beyond that evicts sessions idle for
//! `idle_timeout_ms`, and if none is, it is SHARE_SESSION_LIMIT_REACHED. Sessions of members
//! that leave the group or expire are removed by [`ShareSessionCache::remove`].

use std::collections::HashMap;

use indexmap::IndexSet;

/// A partition in a share session: topic id and partition index.
pub type SessionPartition = (uuid::Uuid, i32);

/// The most partitions one session may hold; more is INVALID_REQUEST.
pub const MAX_SESSION_PARTITIONS: usize = 10_000;

/// Why a share-session request failed; the whole response carries this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareSessionError {
    /// SHARE_SESSION_NOT_FOUND (122): no session for this member.
    NotFound,
    /// INVALID_SHARE_SESSION_EPOCH (123): not the epoch the session expects.
    InvalidEpoch,
    /// SHARE_SESSION_LIMIT_REACHED (133): no room for a new session.
    LimitReached,
    /// INVALID_REQUEST: acknowledgements when opening a session, or too many partitions.
    InvalidRequest,
}

/// What a ShareFetch asks of its session besides the epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionChanges<'a> {
    /// Partitions the request lists (added to the session).
    pub add: &'a [SessionPartition],
    /// Partitions the request forgets (dropped from the session).
    pub forget: &'a [SessionPartition],
    /// True when the request carries acknowledgements.
    pub acks: bool,
}

/// What a request did to its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    /// The session is open; these are its partitions, in the order they were added.
    Open(Vec<SessionPartition>),
    /// Epoch 0 replaced a session the member had (its client reset the session after an
    /// error): `open` as for [`SessionOutcome::Open`], `closed` the old session's partitions,
    /// whose records the member can no longer acknowledge.
    Replaced {
        /// The new session's partitions.
        open: Vec<SessionPartition>,
        /// The replaced session's partitions.
        closed: Vec<SessionPartition>,
    },
    /// The session was closed; these were its partitions.
    Closed(Vec<SessionPartition>),
}

struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    /// Partitions in the order they were added, without duplicates.
    partitions: IndexSet<SessionPartition>,
    /// For eviction when the cache is full.
    last_used_ms: i64,
}

/// Every share session on this broker.
pub struct ShareSessionCache {
    /// By (group id, member id).
    sessions: HashMap<(String, String), Session>,
    /// The most sessions kept at once.
    max_sessions: usize,
    /// A session unused this long may be evicted to make room for a new one.
    idle_timeout_ms: i64,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl ShareSessionCache {
    /// No sessions yet.
    pub fn new(max_sessions: usize, idle_timeout_ms: i64) -> Self {
        Self {
            sessions: HashMap::new(),
            max_sessions,
            idle_timeout_ms,
        }
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A ShareFetch with its partition changes.
    pub fn fetch(
        &mut self,
        group: &str,
        member: &str,
        epoch: i32,
        changes: SessionChanges<'_>,
        now_ms: i64,
    ) -> Result<SessionOutcome, ShareSessionError> {
        let SessionChanges { add, forget, acks } = changes;
        let key = (group.to_string(), member.to_string());
        match epoch {
            0 => {
                if acks {
                    return Err(ShareSessionError::InvalidRequest);
                }
                let partitions: IndexSet<SessionPartition> = add.iter().copied().collect();
                if partitions.len() > MAX_SESSION_PARTITIONS {
                    return Err(ShareSessionError::InvalidRequest);
                }
                if !self.sessions.contains_key(&key) && self.sessions.len() >= self.max_sessions {
                    self.evict_idle(now_ms);
                    if self.sessions.len() >= self.max_sessions {
                        return Err(ShareSessionError::LimitReached);
                    }
                }
                let open = partitions.iter().copied().collect();
                let replaced = self.sessions.insert(
                    key,
                    Session {
                        next_epoch: 1,
                        partitions,
                        last_used_ms: now_ms,
                    },
                );
                Ok(match replaced {
                    None => SessionOutcome::Open(open),
                    Some(old) => SessionOutcome::Replaced {
                        open,
                        closed: old.partitions.into_iter().collect(),
                    },
                })
            }
            -1 => self.close(&key),
            e if e > 0 => {
                let s = self.continue_session(&key, e, now_ms)?;
                for p in forget {
                    s.partitions.shift_remove(p);
                }
                for p in add {
                    if s.partitions.len() >= MAX_SESSION_PARTITIONS {
                        return Err(ShareSessionError::InvalidRequest);
                    }
                    s.partitions.insert(*p);
                }
                Ok(SessionOutcome::Open(s.partitions.iter().copied().collect()))
            }
            _ => Err(ShareSessionError::InvalidEpoch),
        }
    }

    /// A ShareAcknowledge: epoch `N > 0` continues the session, -1 closes it; 0 opens none.
    pub fn acknowledge(
        &mut self,
        group: &str,
        member: &str,
        epoch: i32,
        now_ms: i64,
    ) -> Result<SessionOutcome, ShareSessionError> {
        let key = (group.to_string(), member.to_string());
        match epoch {
            -1 => self.close(&key),
            e if e > 0 => {
                let s = self.continue_session(&key, e, now_ms)?;
                Ok(SessionOutcome::Open(s.partitions.iter().copied().collect()))
            }
            _ => Err(ShareSessionError::InvalidEpoch),
        }
    }

    /// Drops the session of a member that left the group or expired; returns its partitions.
    pub fn remove(&mut self, group: &str, member: &str) -> Option<Vec<SessionPartition>> {
        self.sessions
            .remove(&(group.to_string(), member.to_string()))
            .map(|s| s.partitions.into_iter().collect())
    }

    fn continue_session(
        &mut self,
        key: &(String, String),
        epoch: i32,
        now_ms: i64,
    ) -> Result<&mut Session, ShareSessionError> {
        let s = self
            .sessions
            .get_mut(key)
            .ok_or(ShareSessionError::NotFound)?;
        if epoch != s.next_epoch {
            return Err(ShareSessionError::InvalidEpoch);
        }
        s.next_epoch = next_epoch(epoch);
        s.last_used_ms = now_ms;
        Ok(s)
    }

    fn close(&mut self, key: &(String, String)) -> Result<SessionOutcome, ShareSessionError> {
        let s = self
            .sessions
            .remove(key)
            .ok_or(ShareSessionError::NotFound)?;
        Ok(SessionOutcome::Closed(s.partitions.into_iter().collect()))
    }

    fn evict_idle(&mut self, now_ms: i64) {
        let idle = self.idle_timeout_ms;
        self.sessions
            .retain(|_, s| now_ms.saturating_sub(s.last_used_ms) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> SessionPartition {
        (uuid::Uuid::from_u128(7), p)
    }

    fn adding(add: &[SessionPartition]) -> SessionChanges<'_> {
        SessionChanges {
            add,
            ..SessionChanges::default()
        }
    }

    fn open(
        c: &mut ShareSessionCache,
        epoch: i32,
        add: &[SessionPartition],
    ) -> Vec<SessionPartition> {
        match c.fetch("g", "m", epoch, adding(add), 0) {
            Ok(SessionOutcome::Open(p)) => p,
            other => panic!("expected an open session, got {other:?}"),
        }
    }

    #[test]
    fn epochs_move_on_with_every_fetch_and_acknowledge() {
        let mut c = ShareSessionCache::new(10, 1000);
        assert_eq!(open(&mut c, 0, &[tp(0), tp(1), tp(0)]), vec![tp(0), tp(1)]);
        assert_eq!(open(&mut c, 1, &[]), vec![tp(0), tp(1)]);
        assert_eq!(
            c.acknowledge("g", "m", 2, 0),
            Ok(SessionOutcome::Open(vec![tp(0), tp(1)]))
        );
        assert_eq!(
            c.fetch("g", "m", 2, SessionChanges::default(), 0),
            Err(ShareSessionError::InvalidEpoch)
        );
        assert_eq!(open(&mut c, 3, &[tp(2)]), vec![tp(0), tp(1), tp(2)]);
        let forgot = c.fetch(
            "g",
            "m",
            4,
            SessionChanges {
                forget: &[tp(1)],
                acks: true,
                ..SessionChanges::default()
            },
            0,
        );
        assert_eq!(forgot, Ok(SessionOutcome::Open(vec![tp(0), tp(2)])));
    }

    #[test]
    fn unknown_sessions_bad_epochs_and_acks_on_open_are_refused() {
        let mut c = ShareSessionCache::new(10, 1000);
        assert_eq!(
            c.fetch("g", "m", 1, SessionChanges::default(), 0),
            Err(ShareSessionError::NotFound)
        );
        assert_eq!(
            c.acknowledge("g", "m", -1, 0),
            Err(ShareSessionError::NotFound)
        );
        assert_eq!(
            c.fetch(
                "g",
                "m",
                0,
                SessionChanges {
                    acks: true,
                    ..adding(&[tp(0)])
                },
                0
            ),
            Err(ShareSessionError::InvalidRequest)
        );
        open(&mut c, 0, &[tp(0)]);
        assert_eq!(
            c.acknowledge("g", "m", 0, 0),
            Err(ShareSessionError::InvalidEpoch)
        );
        assert_eq!(
            c.fetch("g", "m", -2, SessionChanges::default(), 0),
            Err(ShareSessionError::InvalidEpoch)
        );
    }

    #[test]
    fn closing_returns_the_partitions_and_forgets_the_session() {
        let mut c = ShareSessionCache::new(10, 1000);
        open(&mut c, 0, &[tp(0), tp(3)]);
        assert_eq!(
            c.acknowledge("g", "m", -1, 0),
            Ok(SessionOutcome::Closed(vec![tp(0), tp(3)]))
        );
        assert!(c.is_empty());
        open(&mut c, 0, &[tp(1)]);
        assert_eq!(c.remove("g", "m"), Some(vec![tp(1)]));
        assert_eq!(c.remove("g", "m"), None);
    }

    #[test]
    fn the_epoch_wraps_to_one() {
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(5), 6);
    }

    #[test]
    fn a_full_cache_evicts_idle_sessions_or_refuses() {
        let mut c = ShareSessionCache::new(1, 1000);
        open(&mut c, 0, &[tp(0)]);
        assert_eq!(
            c.fetch("g", "other", 0, adding(&[tp(0)]), 500),
            Err(ShareSessionError::LimitReached)
        );
        // The same member may always reopen its own session, replacing the old one.
        assert_eq!(
            c.fetch("g", "m", 0, adding(&[tp(1)]), 500),
            Ok(SessionOutcome::Replaced {
                open: vec![tp(1)],
                closed: vec![tp(0)]
            })
        );
        assert!(matches!(
            c.fetch("g", "other", 0, adding(&[tp(0)]), 5000),
            Ok(SessionOutcome::Open(_))
        ));
        assert_eq!(c.len(), 1);
    }
}
