//! Per-group settings of share groups, set with IncrementalAlterConfigs and shown by
//! DescribeConfigs on resource type GROUP (32), and their record in the share-group state log.
//!
//! | name (Kafka's group config) | also accepted as | default |
//! |---|---|---|
//! | `share.auto.offset.reset` | | `latest` (or `earliest`) |
//! | `share.record.lock.duration.ms` | `group.share.record.lock.duration.ms` | 30000 |
//! | `share.delivery.count.limit` | `group.share.delivery.count.limit` | 5 |
//! | `errors.deadletterqueue.topic.name` | `courier.share.dlq.topic` | `<group>.dlq`¹; empty: none |
//!
//! ¹ None when `<group>.dlq` is not a legal topic name.
//!
//! A group may have settings before it has members. A new setting applies to share-partitions
//! created afterwards and to existing ones as soon as they hold no acquired records.
//!
//! The record: key `[KIND_GROUP_CONFIG, u16 length, group]`, value `[version 0, u16 count,
//! (u16 length, name, u16 length, value) per override]`, big-endian; the newest record of a
//! group holds all of its overrides. Share-partition records (`courier_coordinator::share::
//! ShareRecord`) use key kinds 0 and 1, so the two never collide in the log.

use std::collections::BTreeMap;

use courier_coordinator::share::{
    AutoOffsetReset, SharePartitionConfig, DEFAULT_DELIVERY_COUNT_LIMIT,
    DEFAULT_RECORD_LOCK_DURATION_MS,
};

use crate::error::BrokerError;
use crate::topic_config::AlterOp;
use crate::topic_name;

/// `share.auto.offset.reset`.
pub const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// `share.record.lock.duration.ms`.
pub const RECORD_LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
/// `share.delivery.count.limit`.
pub const DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
/// `errors.deadletterqueue.topic.name` (KIP-1191's name for the group's dead-letter topic).
pub const DLQ_TOPIC: &str = "errors.deadletterqueue.topic.name";

/// Other names accepted for the same settings: the broker-level names, and Courier's own.
const ALIASES: [(&str, &str); 3] = [
    (
        "group.share.record.lock.duration.ms",
        RECORD_LOCK_DURATION_MS,
    ),
    ("group.share.delivery.count.limit", DELIVERY_COUNT_LIMIT),
    ("courier.share.dlq.topic", DLQ_TOPIC),
];

/// Bounds of `share.record.lock.duration.ms`.
const LOCK_DURATION_RANGE: std::ops::RangeInclusive<i64> = 1_000..=3_600_000;
/// Bounds of `share.delivery.count.limit` (Kafka's, KIP-1240).
const DELIVERY_LIMIT_RANGE: std::ops::RangeInclusive<u16> = 2..=10;

/// The key kind of a group-config record in the share-group state log.
pub const KIND_GROUP_CONFIG: u8 = 0x40;
const CONFIG_VERSION: u8 = 0;

/// One setting as DescribeConfigs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfigEntry {
    /// Its name.
    pub name: &'static str,
    /// Its value now.
    pub value: String,
    /// True when not overridden.
    pub is_default: bool,
    /// Kafka's config type code (2 string, 3 int, 5 long).
    pub config_type: i8,
    /// One line of documentation.
    pub doc: &'static str,
}

/// A share group's overridden settings, by canonical name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareGroupSettings {
    overrides: BTreeMap<String, String>,
}

/// The canonical name of a share-group setting, or `None` when it is not one.
pub fn canonical(name: &str) -> Option<&'static str> {
    [
        AUTO_OFFSET_RESET,
        RECORD_LOCK_DURATION_MS,
        DELIVERY_COUNT_LIMIT,
        DLQ_TOPIC,
    ]
    .into_iter()
    .find(|n| *n == name)
    .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, n)| *n))
}

fn invalid(msg: String) -> BrokerError {
    BrokerError::InvalidConfig(msg)
}

/// Checks a value for a canonical name.
fn validate(name: &str, value: &str) -> Result<(), BrokerError> {
    match name {
        AUTO_OFFSET_RESET if value == "latest" || value == "earliest" => Ok(()),
        AUTO_OFFSET_RESET => Err(invalid(format!(
            "{name} must be latest or earliest, not {value:?}"
        ))),
        RECORD_LOCK_DURATION_MS => match value.parse::<i64>() {
            Ok(v) if LOCK_DURATION_RANGE.contains(&v) => Ok(()),
            _ => Err(invalid(format!(
                "{name} must be an integer in {LOCK_DURATION_RANGE:?}, not {value:?}"
            ))),
        },
        DELIVERY_COUNT_LIMIT => match value.parse::<u16>() {
            Ok(v) if DELIVERY_LIMIT_RANGE.contains(&v) => Ok(()),
            _ => Err(invalid(format!(
                "{name} must be an integer in {DELIVERY_LIMIT_RANGE:?}, not {value:?}"
            ))),
        },
        DLQ_TOPIC if value.is_empty() => Ok(()),
        DLQ_TOPIC => topic_name::validate(value).map_err(|e| invalid(format!("{name}: {e}"))),
        _ => Err(invalid(format!("unknown share group config {name}"))),
    }
}

impl ShareGroupSettings {
    /// Applies one IncrementalAlterConfigs operation (SET or DELETE; the settings are not lists).
    pub fn alter(
        &mut self,
        name: &str,
        value: Option<&str>,
        op: AlterOp,
    ) -> Result<(), BrokerError> {
        let Some(name) = canonical(name) else {
            return Err(invalid(format!("unknown share group config {name}")));
        };
        match op {
            AlterOp::Set => {
                let value = value.unwrap_or_default();
                validate(name, value)?;
                self.overrides.insert(name.to_string(), value.to_string());
            }
            AlterOp::Delete => {
                self.overrides.remove(name);
            }
            AlterOp::Append | AlterOp::Subtract => {
                return Err(invalid(format!("{name} is not a list")));
            }
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.overrides.get(name).map(String::as_str)
    }

    /// Where a new share-partition of the group starts.
    pub fn auto_offset_reset(&self) -> AutoOffsetReset {
        match self.get(AUTO_OFFSET_RESET) {
            Some("earliest") => AutoOffsetReset::Earliest,
            _ => AutoOffsetReset::Latest,
        }
    }

    /// Lock duration and delivery limit for the group's share-partitions.
    pub fn partition_config(&self) -> SharePartitionConfig {
        let d = SharePartitionConfig::default();
        SharePartitionConfig {
            record_lock_duration_ms: self
                .get(RECORD_LOCK_DURATION_MS)
                .and_then(|v| v.parse().ok())
                .unwrap_or(d.record_lock_duration_ms),
            delivery_count_limit: self
                .get(DELIVERY_COUNT_LIMIT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(d.delivery_count_limit),
            max_record_locks: d.max_record_locks,
        }
    }

    /// The group's dead-letter topic: `<group>.dlq` unless set (and unless that is not a legal
    /// topic name: a group id may hold any character); `None` when set empty.
    pub fn dead_letter_topic(&self, group: &str) -> Option<String> {
        match self.get(DLQ_TOPIC) {
            Some("") => None,
            Some(t) => Some(t.to_string()),
            None => Some(format!("{group}.dlq")).filter(|t| topic_name::validate(t).is_ok()),
        }
    }

    /// Every setting with its value now, for DescribeConfigs.
    pub fn entries(&self, group: &str) -> Vec<ShareConfigEntry> {
        let value = |name: &str, default: String| {
            (
                self.get(name).map_or(default, str::to_string),
                self.get(name).is_none(),
            )
        };
        let rows: [(&'static str, String, i8, &'static str); 4] = [
            (
                AUTO_OFFSET_RESET,
                "latest".into(),
                2,
                "Where a share-partition starts when the group first uses it: latest or earliest.",
            ),
            (
                RECORD_LOCK_DURATION_MS,
                DEFAULT_RECORD_LOCK_DURATION_MS.to_string(),
                5,
                "How long an acquired record stays locked to its consumer.",
            ),
            (
                DELIVERY_COUNT_LIMIT,
                DEFAULT_DELIVERY_COUNT_LIMIT.to_string(),
                3,
                "Deliveries after which a record that comes back is archived.",
            ),
            (
                DLQ_TOPIC,
                format!("{group}.dlq"),
                2,
                "Topic that receives a copy of every rejected or undeliverable record; empty: none.",
            ),
        ];
        rows.into_iter()
            .map(|(name, default, config_type, doc)| {
                let (value, is_default) = value(name, default);
                ShareConfigEntry {
                    name,
                    value,
                    is_default,
                    config_type,
                    doc,
                }
            })
            .collect()
    }

    /// The (key, value) of the group's config record.
    pub fn encode(&self, group: &str) -> (Vec<u8>, Vec<u8>) {
        let mut key = vec![KIND_GROUP_CONFIG];
        put_str(&mut key, group);
        let mut value = vec![CONFIG_VERSION];
        value.extend_from_slice(
            &(self.overrides.len().min(usize::from(u16::MAX)) as u16).to_be_bytes(),
        );
        for (name, v) in self.overrides.iter().take(usize::from(u16::MAX)) {
            put_str(&mut value, name);
            put_str(&mut value, v);
        }
        (key, value)
    }

    /// Parses a config record: (group, settings). Unknown names and invalid values are
    /// dropped (a newer broker may know more), anything malformed is an error.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<(String, Self), &'static str> {
        let mut k = key;
        if take(&mut k, 1)? != [KIND_GROUP_CONFIG] {
            return Err("not a group config record");
        }
        let group = take_str(&mut k)?;
        if !k.is_empty() {
            return Err("trailing bytes in the key");
        }
        let mut v = value;
        if take(&mut v, 1)? != [CONFIG_VERSION] {
            return Err("unknown group config version");
        }
        let count = u16::from_be_bytes([take(&mut v, 1)?[0], take(&mut v, 1)?[0]]);
        let mut settings = Self::default();
        for _ in 0..count {
            let name = take_str(&mut v)?;
            let value = take_str(&mut v)?;
            if let Some(name) = canonical(&name) {
                if validate(name, &value).is_ok() {
                    settings.overrides.insert(name.to_string(), value);
                }
            }
        }
        if !v.is_empty() {
            return Err("trailing bytes in the value");
        }
        Ok((group, settings))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if buf.len() < n {
        return Err("truncated group config record");
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn take_str(buf: &mut &[u8]) -> Result<String, &'static str> {
    let len = take(buf, 2)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    String::from_utf8(take(buf, len)?.to_vec()).map_err(|_| "group config string is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &mut ShareGroupSettings, name: &str, value: &str) -> Result<(), BrokerError> {
        s.alter(name, Some(value), AlterOp::Set)
    }

    #[test]
    fn defaults_are_kafkas_and_a_dlq_named_after_the_group() {
        let s = ShareGroupSettings::default();
        assert_eq!(s.auto_offset_reset(), AutoOffsetReset::Latest);
        assert_eq!(s.partition_config().record_lock_duration_ms, 30_000);
        assert_eq!(s.partition_config().delivery_count_limit, 5);
        assert_eq!(s.dead_letter_topic("g").as_deref(), Some("g.dlq"));
        assert_eq!(s.dead_letter_topic("not a topic name"), None);
        assert!(s.entries("g").iter().all(|e| e.is_default));
    }

    #[test]
    fn aliases_set_the_canonical_setting_and_bad_values_are_refused() {
        let mut s = ShareGroupSettings::default();
        set(&mut s, AUTO_OFFSET_RESET, "earliest").expect("valid");
        set(&mut s, "group.share.record.lock.duration.ms", "2000").expect("valid");
        set(&mut s, "group.share.delivery.count.limit", "3").expect("valid");
        set(&mut s, "courier.share.dlq.topic", "dead").expect("valid");
        assert_eq!(s.auto_offset_reset(), AutoOffsetReset::Earliest);
        assert_eq!(s.partition_config().record_lock_duration_ms, 2000);
        assert_eq!(s.partition_config().delivery_count_limit, 3);
        assert_eq!(s.dead_letter_topic("g").as_deref(), Some("dead"));
        for (name, value) in [
            (AUTO_OFFSET_RESET, "none"),
            (RECORD_LOCK_DURATION_MS, "10"),
            (DELIVERY_COUNT_LIMIT, "1"),
            (DELIVERY_COUNT_LIMIT, "x"),
            (DLQ_TOPIC, "bad name"),
            ("share.unknown", "1"),
        ] {
            assert!(
                matches!(set(&mut s, name, value), Err(BrokerError::InvalidConfig(_))),
                "{name}={value}"
            );
        }
        assert!(s
            .alter(DELIVERY_COUNT_LIMIT, Some("4"), AlterOp::Append)
            .is_err());
        set(&mut s, DLQ_TOPIC, "").expect("empty disables");
        assert_eq!(s.dead_letter_topic("g"), None);
        s.alter(DLQ_TOPIC, None, AlterOp::Delete).expect("delete");
        assert_eq!(s.dead_letter_topic("g").as_deref(), Some("g.dlq"));
    }

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let mut s = ShareGroupSettings::default();
        set(&mut s, AUTO_OFFSET_RESET, "earliest").expect("valid");
        set(&mut s, DELIVERY_COUNT_LIMIT, "4").expect("valid");
        let (k, v) = s.encode("grp");
        assert_eq!(ShareGroupSettings::decode(&k, &v), Ok(("grp".into(), s)));
        for cut in 0..v.len() {
            assert!(ShareGroupSettings::decode(&k, &v[..cut]).is_err(), "{cut}");
        }
        for cut in 0..k.len() {
            assert!(ShareGroupSettings::decode(&k[..cut], &v).is_err(), "{cut}");
        }
        let mut longer = v.clone();
        longer.push(0);
        assert!(ShareGroupSettings::decode(&k, &longer).is_err());
    }
}
