//! The records the group coordinator persists, and their bytes in the internal offsets log.
//!
//! Each record is one Kafka record: the key names (group, topic, partition); the value holds
//! the committed offset, or is empty for a tombstone (OffsetDelete, DeleteGroups). Both start
//! with a format version so the layout can change later. Strings are a u16 length and UTF-8.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::group::CommittedOffset;

const KEY_VERSION: u16 = 0;
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

impl OffsetRecord {
    /// (key, value) bytes; an empty value is a tombstone.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let (group, topic, partition) = match self {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                ..
            }
            | OffsetRecord::Delete {
                group,
                topic,
                partition,
            } => (group, topic, *partition),
        };
        let mut key = BytesMut::new();
        key.put_u16(KEY_VERSION);
        put_str(&mut key, group);
        put_str(&mut key, topic);
        key.put_i32(partition);
        let mut value = BytesMut::new();
        if let OffsetRecord::Commit { offset, .. } = self {
            value.put_u16(VALUE_VERSION);
            value.put_i64(offset.offset);
            value.put_i32(offset.leader_epoch);
            put_str(&mut value, &offset.metadata);
            value.put_i64(offset.commit_timestamp_ms);
        }
        (key.to_vec(), value.to_vec())
    }

    /// Parses what [`OffsetRecord::encode`] wrote.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, String> {
        let mut k = Bytes::copy_from_slice(key);
        if k.remaining() < 2 || k.get_u16() != KEY_VERSION {
            return Err("unknown offset key version".into());
        }
        let group = get_str(&mut k)?;
        let topic = get_str(&mut k)?;
        if k.remaining() < 4 {
            return Err("truncated partition".into());
        }
        let partition = k.get_i32();
        if value.is_empty() {
            return Ok(OffsetRecord::Delete {
                group,
                topic,
                partition,
            });
        }
        let mut v = Bytes::copy_from_slice(value);
        if v.remaining() < 2 || v.get_u16() != VALUE_VERSION {
            return Err("unknown offset value version".into());
        }
        if v.remaining() < 12 {
            return Err("truncated offset".into());
        }
        let offset = v.get_i64();
        let leader_epoch = v.get_i32();
        let metadata = get_str(&mut v)?;
        if v.remaining() < 8 {
            return Err("truncated commit timestamp".into());
        }
        let commit_timestamp_ms = v.get_i64();
        Ok(OffsetRecord::Commit {
            group,
            topic,
            partition,
            offset: CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp_ms,
            },
        })
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
                              ts in any::<i64>(), tombstone in any::<bool>()) {
            let r = if tombstone {
                OffsetRecord::Delete { group, topic, partition }
            } else {
                OffsetRecord::Commit { group, topic, partition,
                    offset: CommittedOffset { offset, leader_epoch: epoch, metadata, commit_timestamp_ms: ts } }
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
