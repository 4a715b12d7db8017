//! The records the group coordinator persists, and their bytes in the internal offsets log.
//!
//! Each record is one Kafka record whose key starts with a format version that also says what
//! the record is:
//! - 0: a committed offset, key (group, topic, partition), value the offset, or empty for a
//!   tombstone (OffsetDelete, DeleteGroups);
//! - 1: an offset committed inside a transaction, key (group, producer id, topic, partition);
//!   it takes effect only when a version 2 record commits that producer's offsets;
//! - 2: the end of a producer's transactional offsets in a group, value 1 (commit) or 0 (abort).
//!
//! Strings are a u16 length and UTF-8. Decoding never panics.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::group::CommittedOffset;

const OFFSET_KEY: u16 = 0;
const TXN_OFFSET_KEY: u16 = 1;
const TXN_END_KEY: u16 = 2;
const VALUE_VERSION: u16 = 0;

/// A change to the committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    /// An offset committed for a partition.
    Commit {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What was committed.
        offset: CommittedOffset,
    },
    /// The partition's committed offset is gone.
    Delete {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// An offset committed inside a transaction (TxnOffsetCommit): it takes effect when the
    /// transaction commits and is dropped if it aborts.
    TxnCommit {
        /// The group.
        group: String,
        /// The transactional producer.
        producer_id: i64,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What was committed.
        offset: CommittedOffset,
    },
    /// The producer's transaction ended: its pending offsets in the group apply or vanish.
    TxnEnd {
        /// The group.
        group: String,
        /// The transactional producer.
        producer_id: i64,
        /// Committed (true) or aborted.
        commit: bool,
    },
}

fn put_str(buf: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(u16::MAX as usize);
    buf.put_u16(len as u16);
    buf.put_slice(&bytes[..len]);
}

fn get_str(buf: &mut Bytes) -> Result<String, String> {
    if buf.remaining() < 2 {
        return Err("truncated string length".into());
    }
    let len = buf.get_u16() as usize;
    if buf.remaining() < len {
        return Err("truncated string".into());
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|e| e.to_string())
}

fn get_i64(buf: &mut Bytes, what: &str) -> Result<i64, String> {
    if buf.remaining() < 8 {
        return Err(format!("truncated {what}"));
    }
    Ok(buf.get_i64())
}

fn get_i32(buf: &mut Bytes, what: &str) -> Result<i32, String> {
    if buf.remaining() < 4 {
        return Err(format!("truncated {what}"));
    }
    Ok(buf.get_i32())
}

fn encode_value(offset: &CommittedOffset) -> Vec<u8> {
    let mut value = BytesMut::new();
    value.put_u16(VALUE_VERSION);
    value.put_i64(offset.offset);
    value.put_i32(offset.leader_epoch);
    put_str(&mut value, &offset.metadata);
    value.put_i64(offset.commit_timestamp_ms);
    value.to_vec()
}

fn decode_value(value: &[u8]) -> Result<CommittedOffset, String> {
    let mut v = Bytes::copy_from_slice(value);
    if v.remaining() < 2 || v.get_u16() != VALUE_VERSION {
        return Err("unknown offset value version".into());
    }
    let offset = get_i64(&mut v, "offset")?;
    let leader_epoch = get_i32(&mut v, "leader epoch")?;
    let metadata = get_str(&mut v)?;
    let commit_timestamp_ms = get_i64(&mut v, "commit timestamp")?;
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

impl OffsetRecord {
    /// (key, value) bytes.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut key = BytesMut::new();
        let value = match self {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                offset,
            } => {
                key.put_u16(OFFSET_KEY);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                encode_value(offset)
            }
            OffsetRecord::Delete {
                group,
                topic,
                partition,
            } => {
                key.put_u16(OFFSET_KEY);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                Vec::new()
            }
            OffsetRecord::TxnCommit {
                group,
                producer_id,
                topic,
                partition,
                offset,
            } => {
                key.put_u16(TXN_OFFSET_KEY);
                put_str(&mut key, group);
                key.put_i64(*producer_id);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                encode_value(offset)
            }
            OffsetRecord::TxnEnd {
                group,
                producer_id,
                commit,
            } => {
                key.put_u16(TXN_END_KEY);
                put_str(&mut key, group);
                key.put_i64(*producer_id);
                vec![u8::from(*commit)]
            }
        };
        (key.to_vec(), value)
    }

    /// Parses what [`OffsetRecord::encode`] wrote.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, String> {
        let mut k = Bytes::copy_from_slice(key);
        if k.remaining() < 2 {
            return Err("truncated key".into());
        }
        match k.get_u16() {
            OFFSET_KEY => {
                let group = get_str(&mut k)?;
                let topic = get_str(&mut k)?;
                let partition = get_i32(&mut k, "partition")?;
                if value.is_empty() {
                    Ok(OffsetRecord::Delete {
                        group,
                        topic,
                        partition,
                    })
                } else {
                    Ok(OffsetRecord::Commit {
                        group,
                        topic,
                        partition,
                        offset: decode_value(value)?,
                    })
                }
            }
            TXN_OFFSET_KEY => {
                let group = get_str(&mut k)?;
                let producer_id = get_i64(&mut k, "producer id")?;
                let topic = get_str(&mut k)?;
                let partition = get_i32(&mut k, "partition")?;
                Ok(OffsetRecord::TxnCommit {
                    group,
                    producer_id,
                    topic,
                    partition,
                    offset: decode_value(value)?,
                })
            }
            TXN_END_KEY => {
                let group = get_str(&mut k)?;
                let producer_id = get_i64(&mut k, "producer id")?;
                match value {
                    [flag] => Ok(OffsetRecord::TxnEnd {
                        group,
                        producer_id,
                        commit: *flag == 1,
                    }),
                    _ => Err("bad transaction end value".into()),
                }
            }
            _ => Err("unknown offset key version".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(group in ".{0,40}", topic in "[a-z.-]{1,40}", partition in any::<i32>(),
                              offset in any::<i64>(), epoch in any::<i32>(), metadata in ".{0,100}",
                              ts in any::<i64>(), kind in 0u8..4, pid in any::<i64>()) {
            let o = CommittedOffset { offset, leader_epoch: epoch, metadata, commit_timestamp_ms: ts };
            let r = match kind {
                0 => OffsetRecord::Commit { group, topic, partition, offset: o },
                1 => OffsetRecord::Delete { group, topic, partition },
                2 => OffsetRecord::TxnCommit { group, producer_id: pid, topic, partition, offset: o },
                _ => OffsetRecord::TxnEnd { group, producer_id: pid, commit: epoch % 2 == 0 },
            };
            let (k, v) = r.encode();
            prop_assert_eq!(OffsetRecord::decode(&k, &v), Ok(r));
        }

        #[test]
        fn garbage_never_panics(k in proptest::collection::vec(any::<u8>(), 0..64),
                                v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = OffsetRecord::decode(&k, &v);
        }
    }
}
