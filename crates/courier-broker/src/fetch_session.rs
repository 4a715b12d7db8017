//! Incremental fetch sessions (KIP-227) as a plain state machine: requests in, decisions out,
//! the clock passed in.
//!
//! - `session_id = 0, epoch = -1`: a sessionless full fetch.
//! - `epoch = 0`: close `session_id` if set and open a new session holding the request's
//!   partitions; the response carries the new id and every partition.
//! - `epoch > 0`: an incremental fetch on an existing session. The request lists only partitions
//!   whose fetch position changed and `forgotten_topics_data` lists those to drop; the response
//!   lists only partitions with records, an error, or a changed high watermark, last stable offset
//!   or log start offset.
//! - `epoch = -1` with a session id: close the session, then fetch sessionless.

use std::collections::HashMap;

use indexmap::IndexMap;

/// Identifies a partition within a session: topic name, topic id (nil before Fetch v13) and index.
pub type PartitionKey = (String, uuid::Uuid, i32);

/// What the session remembers of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPartition {
    /// Where the client reads next.
    pub fetch_offset: i64,
    /// The client's per-partition byte limit.
    pub partition_max_bytes: i32,
    /// (high watermark, last stable offset, log start offset) last sent, to tell what changed.
    pub last_sent: Option<(i64, i64, i64)>,
}

/// Why a session request failed; the whole Fetch response carries this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// FETCH_SESSION_ID_NOT_FOUND (70).
    NotFound,
    /// INVALID_FETCH_SESSION_EPOCH (71).
    InvalidEpoch,
}

/// What the fetch handler should do.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPlan {
    /// The id to put in the response: 0 when no session.
    pub session_id: i32,
    /// True when the response lists only changed partitions.
    pub incremental: bool,
    /// Partitions to read, with their fetch offset and byte limit, in order.
    pub partitions: Vec<(PartitionKey, SessionPartition)>,
}

struct Session {
    next_epoch: i32,
    partitions: IndexMap<PartitionKey, SessionPartition>,
    last_used_ms: i64,
}

/// The broker's fetch sessions.
pub struct FetchSessionCache {
    sessions: HashMap<i32, Session>,
    next_id: i32,
    /// Most sessions held at once (max.incremental.fetch.session.cache.slots).
    max_sessions: usize,
    /// A session idle this long may be evicted to make room for a new one.
    evict_idle_ms: i64,
}

const FINAL_EPOCH: i32 = -1;
const INITIAL_EPOCH: i32 = 0;

impl FetchSessionCache {
    /// An empty cache.
    pub fn new(max_sessions: usize, evict_idle_ms: i64) -> Self {
        Self {
            sessions: HashMap::new(),
            next_id: 1,
            max_sessions,
            evict_idle_ms,
        }
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Decides how to serve a Fetch request.
    pub fn begin(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: Vec<(PartitionKey, SessionPartition)>,
        forgotten: Vec<PartitionKey>,
        now_ms: i64,
    ) -> Result<SessionPlan, SessionError> {
        if epoch == FINAL_EPOCH || epoch < INITIAL_EPOCH {
            if session_id != 0 {
                self.sessions.remove(&session_id);
            }
            return Ok(SessionPlan {
                session_id: 0,
                incremental: false,
                partitions: requested,
            });
        }
        if epoch == INITIAL_EPOCH {
            if session_id != 0 {
                self.sessions.remove(&session_id);
            }
            let id = self.allocate(now_ms);
            if let Some(id) = id {
                let partitions: IndexMap<_, _> = requested.iter().cloned().collect();
                self.sessions.insert(
                    id,
                    Session {
                        next_epoch: 1,
                        partitions,
                        last_used_ms: now_ms,
                    },
                );
            }
            return Ok(SessionPlan {
                session_id: id.unwrap_or(0),
                incremental: false,
                partitions: requested,
            });
        }
        let session = self
            .sessions
            .get_mut(&session_id)
            .ok_or(SessionError::NotFound)?;
        if session.next_epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        session.last_used_ms = now_ms;
        // As in Kafka: updates first, then removals, so a partition in both is forgotten.
        for (key, update) in requested {
            let entry = session.partitions.entry(key).or_insert(update);
            entry.fetch_offset = update.fetch_offset;
            entry.partition_max_bytes = update.partition_max_bytes;
        }
        for key in forgotten {
            session.partitions.shift_remove(&key);
        }
        Ok(SessionPlan {
            session_id,
            incremental: true,
            partitions: session
                .partitions
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        })
    }

    /// Records what was sent for a partition and says whether an incremental response must
    /// include it. Sessionless and full responses include everything regardless.
    pub fn note_sent(
        &mut self,
        session_id: i32,
        key: &PartitionKey,
        offsets: (i64, i64, i64),
        has_records_or_error: bool,
    ) -> bool {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return true;
        };
        let Some(p) = session.partitions.get_mut(key) else {
            return true;
        };
        let changed = p.last_sent != Some(offsets);
        p.last_sent = Some(offsets);
        changed || has_records_or_error
    }

    fn allocate(&mut self, now_ms: i64) -> Option<i32> {
        if self.sessions.len() >= self.max_sessions {
            let idle = self
                .sessions
                .iter()
                .filter(|(_, s)| now_ms - s.last_used_ms >= self.evict_idle_ms)
                .min_by_key(|(_, s)| s.last_used_ms)
                .map(|(id, _)| *id)?;
            self.sessions.remove(&idle);
        }
        loop {
            let id = self.next_id;
            self.next_id = if self.next_id == i32::MAX {
                1
            } else {
                self.next_id + 1
            };
            if !self.sessions.contains_key(&id) {
                return Some(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        ("t".to_string(), uuid::Uuid::nil(), p)
    }
    fn at(offset: i64) -> SessionPartition {
        SessionPartition {
            fetch_offset: offset,
            partition_max_bytes: 1024,
            last_sent: None,
        }
    }

    #[test]
    fn full_then_incremental_then_close() {
        let mut c = FetchSessionCache::new(10, 1000);
        let plan = c
            .begin(0, 0, vec![(key(0), at(0)), (key(1), at(5))], vec![], 0)
            .expect("new");
        assert!(!plan.incremental);
        let id = plan.session_id;
        assert!(id > 0);
        // Incremental: only partition 1 moved; partition 0 is kept from the session.
        let plan = c
            .begin(id, 1, vec![(key(1), at(7))], vec![], 1)
            .expect("incr");
        assert!(plan.incremental);
        assert_eq!(plan.partitions, vec![(key(0), at(0)), (key(1), at(7))]);
        // Forget partition 0.
        let plan = c.begin(id, 2, vec![], vec![key(0)], 2).expect("incr");
        assert_eq!(plan.partitions.len(), 1);
        // Wrong epoch, unknown id.
        assert_eq!(
            c.begin(id, 2, vec![], vec![], 3),
            Err(SessionError::InvalidEpoch)
        );
        assert_eq!(
            c.begin(id + 100, 1, vec![], vec![], 3),
            Err(SessionError::NotFound)
        );
        // Close.
        let plan = c
            .begin(id, -1, vec![(key(3), at(1))], vec![], 4)
            .expect("close");
        assert_eq!(plan.session_id, 0);
        assert!(c.is_empty());
    }

    #[test]
    fn incremental_response_includes_only_changes() {
        let mut c = FetchSessionCache::new(10, 1000);
        let id = c
            .begin(0, 0, vec![(key(0), at(0))], vec![], 0)
            .expect("new")
            .session_id;
        assert!(c.note_sent(id, &key(0), (10, 10, 0), false), "first send");
        assert!(
            !c.note_sent(id, &key(0), (10, 10, 0), false),
            "nothing changed"
        );
        assert!(c.note_sent(id, &key(0), (10, 10, 0), true), "records");
        assert!(c.note_sent(id, &key(0), (11, 11, 0), false), "hw moved");
    }

    #[test]
    fn full_cache_evicts_only_idle_sessions() {
        let mut c = FetchSessionCache::new(1, 1000);
        let a = c.begin(0, 0, vec![], vec![], 0).expect("a").session_id;
        assert_ne!(a, 0);
        let b = c.begin(0, 0, vec![], vec![], 10).expect("b");
        assert_eq!(b.session_id, 0, "no room, a is not idle: sessionless");
        let b = c.begin(0, 0, vec![], vec![], 5000).expect("b");
        assert_ne!(b.session_id, 0, "a was idle and evicted");
        assert_eq!(
            c.begin(a, 1, vec![], vec![], 5001),
            Err(SessionError::NotFound)
        );
    }
}
