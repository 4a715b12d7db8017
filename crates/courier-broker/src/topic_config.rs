//! Topic configs under Kafka's names: their defaults, validation and effect on the log.
//!
//! A topic stores only its overrides; the effective value of every other key is the broker's
//! default. DescribeConfigs lists every key with its source, IncrementalAlterConfigs edits the
//! overrides, and [`TopicConfig::log_config`] turns the effective values into what the storage
//! layer needs.

use std::collections::BTreeMap;

use courier_storage::LogConfig;

use crate::error::BrokerError;

/// Broker-wide defaults for topic configs (Kafka's `log.*` broker settings).
#[derive(Debug, Clone, Default)]
pub struct TopicDefaults {
    /// Storage defaults: segment size and age, retention, index interval, max batch size.
    pub log: LogConfig,
    /// flush.ms: how long appended data may wait before a background fsync when no acks=all
    /// producer is waiting. 0 syncs as soon as the syncer is free.
    pub flush_ms: i64,
}

/// How a key's value is parsed and checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A signed 64-bit number no smaller than the bound.
    Long(i64),
    /// A signed 32-bit number no smaller than the bound.
    Int(i32),
    /// `true` or `false`.
    Bool,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these words (APPEND and SUBTRACT apply).
    ListOf(&'static [&'static str]),
}

/// One topic config Courier understands.
struct Key {
    name: &'static str,
    kind: Kind,
    doc: &'static str,
}

const KEYS: &[Key] = &[
    Key { name: "cleanup.policy", kind: Kind::ListOf(&["delete"]), doc: "How old segments are removed. Only 'delete' (retention by time and size) is implemented." },
    Key { name: "compression.type", kind: Kind::OneOf(&["producer"]), doc: "Courier stores batches exactly as the producer compressed them." },
    Key { name: EPHEMERAL, kind: Kind::Bool, doc: "Courier only. Keep the topic's partitions in memory (tmpfs), never fsynced and emptied by every broker restart: at-most-once, for broadcast and metrics-like data. acks=all is answered once the batch is in memory. Retention defaults to 60 s and 64 MiB per partition. Set at creation only." },
    Key { name: "flush.ms", kind: Kind::Long(0), doc: "Longest time appended data waits for a background fsync when no acks=all producer is waiting. Consumers see records once fsynced." },
    Key { name: "index.interval.bytes", kind: Kind::Int(0), doc: "Bytes of log between offset-index entries." },
    Key { name: "max.message.bytes", kind: Kind::Int(0), doc: "Largest record batch accepted." },
    Key { name: "message.timestamp.type", kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]), doc: "Whether record timestamps are the producer's or the broker's append time." },
    Key { name: "min.insync.replicas", kind: Kind::Int(1), doc: "Accepted for compatibility; Courier is one node, so the in-sync set is always that node." },
    Key { name: "retention.bytes", kind: Kind::Long(-1), doc: "Largest size of a partition before its oldest segments are deleted; -1 for no limit." },
    Key { name: "retention.ms", kind: Kind::Long(-1), doc: "Longest time a segment is kept after its newest record; -1 for no limit." },
    Key { name: "segment.bytes", kind: Kind::Int(1024), doc: "Size at which the active segment rolls." },
    Key { name: "segment.ms", kind: Kind::Long(1), doc: "Age at which the active segment rolls." },
    Key { name: "unclean.leader.election.enable", kind: Kind::Bool, doc: "Accepted for compatibility; a single node has no other replica to elect." },
];

/// The Courier-specific topic config that makes a topic ephemeral (see docs/guarantees.md).
pub const EPHEMERAL: &str = "courier.ephemeral";

/// Defaults an ephemeral topic uses instead of the broker's, unless the topic sets the key:
/// short retention so that memory stays bounded, and segments small and young enough for
/// retention to delete them (it deletes whole segments, never the active one). A partition
/// holds at most about retention.bytes + segment.bytes.
const EPHEMERAL_DEFAULTS: &[(&str, &str)] = &[
    ("retention.bytes", "67108864"),
    ("retention.ms", "60000"),
    ("segment.bytes", "8388608"),
    ("segment.ms", "10000"),
];

fn key(name: &str) -> Result<&'static Key, BrokerError> {
    KEYS.iter()
        .find(|k| k.name == name)
        .ok_or_else(|| BrokerError::InvalidConfig(format!("unknown topic config {name:?}")))
}

fn default_value(name: &str, d: &TopicDefaults) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        EPHEMERAL => "false".into(),
        "flush.ms" => d.flush_ms.to_string(),
        "index.interval.bytes" => d.log.index_interval_bytes.to_string(),
        "max.message.bytes" => d.log.max_message_bytes.to_string(),
        "message.timestamp.type" => if d.log.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }
        .into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => d.log.retention_bytes.to_string(),
        "retention.ms" => d.log.retention_ms.to_string(),
        "segment.bytes" => d.log.segment_bytes.to_string(),
        "segment.ms" => d.log.segment_ms.to_string(),
        "unclean.leader.election.enable" => "false".into(),
        _ => String::new(),
    }
}

fn check(k: &Key, value: &str) -> Result<String, BrokerError> {
    let bad = |why: String| BrokerError::InvalidConfig(format!("{}={value:?}: {why}", k.name));
    match k.kind {
        Kind::Long(min) => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| bad("not a number".into()))?;
            if v < min {
                return Err(bad(format!("must be at least {min}")));
            }
            Ok(v.to_string())
        }
        Kind::Int(min) => {
            let v: i32 = value
                .trim()
                .parse()
                .map_err(|_| bad("not a 32-bit number".into()))?;
            if v < min {
                return Err(bad(format!("must be at least {min}")));
            }
            Ok(v.to_string())
        }
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_string()),
            _ => Err(bad("must be true or false".into())),
        },
        Kind::OneOf(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(value.trim()))
            .map(|w| w.to_string())
            .ok_or_else(|| bad(format!("must be one of {words:?}"))),
        Kind::ListOf(words) => {
            let items: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if items.is_empty() {
                return Err(bad("must not be empty".into()));
            }
            for item in &items {
                if !words.contains(item) {
                    return Err(bad(format!("{item:?} is not one of {words:?}")));
                }
            }
            Ok(items.join(","))
        }
    }
}

/// One key as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka's config name.
    pub name: String,
    /// The effective value.
    pub value: String,
    /// True when the topic does not override it.
    pub is_default: bool,
    /// What the key does.
    pub doc: &'static str,
    /// Kafka's config type code for DescribeConfigs v3+ (1 boolean, 2 string, 3 int, 4 short,
    /// 5 long, 6 double, 7 list).
    pub config_type: i8,
}

/// An edit from IncrementalAlterConfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOp {
    /// Set the value.
    Set,
    /// Remove the override, returning to the default.
    Delete,
    /// Add items to a list config.
    Append,
    /// Remove items from a list config.
    Subtract,
}

/// A topic's config overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    /// Only the keys the topic sets; everything else is the broker default.
    overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Builds a config from CreateTopics' key/value pairs, validating each.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self, BrokerError> {
        let mut cfg = TopicConfig::default();
        for (name, value) in pairs {
            match value {
                Some(v) => cfg.alter(name, Some(v), AlterOp::Set)?,
                None => cfg.alter(name, None, AlterOp::Delete)?,
            }
        }
        Ok(cfg)
    }

    /// The overrides, for persisting.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Applies one IncrementalAlterConfigs operation.
    pub fn alter(
        &mut self,
        name: &str,
        value: Option<&str>,
        op: AlterOp,
    ) -> Result<(), BrokerError> {
        let k = key(name)?;
        match op {
            AlterOp::Delete => {
                self.overrides.remove(name);
            }
            AlterOp::Set => {
                let v = value.ok_or_else(|| {
                    BrokerError::InvalidConfig(format!("{name}: SET needs a value"))
                })?;
                self.overrides.insert(name.to_string(), check(k, v)?);
            }
            AlterOp::Append | AlterOp::Subtract => {
                if !matches!(k.kind, Kind::ListOf(_)) {
                    return Err(BrokerError::InvalidConfig(format!(
                        "{name} is not a list config"
                    )));
                }
                let v = value.unwrap_or("");
                let current = self
                    .overrides
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| "delete".into());
                let mut items: Vec<String> = current.split(',').map(str::to_string).collect();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if op == AlterOp::Append {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                self.overrides
                    .insert(name.to_string(), check(k, &items.join(","))?);
            }
        }
        Ok(())
    }

    /// True for an ephemeral topic (`courier.ephemeral=true`): memory-only partitions.
    pub fn is_ephemeral(&self) -> bool {
        self.overrides.get(EPHEMERAL).is_some_and(|v| v == "true")
    }

    /// Refuses an edit that would change `courier.ephemeral`: where a topic's partitions live
    /// is decided when it is created. `self` is the current config, `new` the edited one.
    pub fn check_change(&self, new: &TopicConfig) -> Result<(), BrokerError> {
        if self.is_ephemeral() == new.is_ephemeral() {
            return Ok(());
        }
        Err(BrokerError::InvalidConfig(format!(
            "{EPHEMERAL} can only be set when a topic is created (it is {}; AlterConfigs \
             replaces every override, so include {EPHEMERAL}={} there)",
            self.is_ephemeral(),
            self.is_ephemeral()
        )))
    }

    fn value(&self, name: &str, d: &TopicDefaults) -> String {
        if let Some(v) = self.overrides.get(name) {
            return v.clone();
        }
        let ephemeral_default = EPHEMERAL_DEFAULTS
            .iter()
            .find(|(k, _)| *k == name && self.is_ephemeral());
        match ephemeral_default {
            Some((_, v)) => v.to_string(),
            None => default_value(name, d),
        }
    }

    fn num<T: std::str::FromStr>(&self, name: &str, d: &TopicDefaults, fallback: T) -> T {
        self.value(name, d).parse().unwrap_or(fallback)
    }

    /// What the storage layer needs, from the effective values.
    pub fn log_config(&self, d: &TopicDefaults) -> LogConfig {
        LogConfig {
            segment_bytes: self.num("segment.bytes", d, d.log.segment_bytes),
            segment_ms: self.num("segment.ms", d, d.log.segment_ms),
            index_interval_bytes: self.num("index.interval.bytes", d, d.log.index_interval_bytes),
            retention_bytes: self.num("retention.bytes", d, d.log.retention_bytes),
            retention_ms: self.num("retention.ms", d, d.log.retention_ms),
            max_message_bytes: self.num("max.message.bytes", d, d.log.max_message_bytes),
            log_append_time: self.value("message.timestamp.type", d) == "LogAppendTime",
        }
    }

    /// The effective flush.ms.
    pub fn flush_ms(&self, d: &TopicDefaults) -> i64 {
        self.num("flush.ms", d, d.flush_ms)
    }

    /// Every key with its effective value, for DescribeConfigs.
    pub fn entries(&self, d: &TopicDefaults) -> Vec<ConfigEntry> {
        KEYS.iter()
            .map(|k| ConfigEntry {
                name: k.name.to_string(),
                value: self.value(k.name, d),
                is_default: !self.overrides.contains_key(k.name),
                doc: k.doc,
                config_type: match k.kind {
                    Kind::Long(_) => 5,
                    Kind::Int(_) => 3,
                    Kind::Bool => 1,
                    Kind::OneOf(_) => 2,
                    Kind::ListOf(_) => 7,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_change_the_log_config_and_defaults_do_not() {
        let d = TopicDefaults::default();
        let mut c = TopicConfig::from_pairs([
            ("retention.ms", Some("1000")),
            ("segment.bytes", Some("4096")),
        ])
        .expect("valid");
        let log = c.log_config(&d);
        assert_eq!(log.retention_ms, 1000);
        assert_eq!(log.segment_bytes, 4096);
        assert_eq!(log.max_message_bytes, d.log.max_message_bytes);
        c.alter("retention.ms", None, AlterOp::Delete)
            .expect("delete");
        assert_eq!(c.log_config(&d).retention_ms, d.log.retention_ms);
        let e = c.entries(&d);
        assert!(e
            .iter()
            .any(|e| e.name == "segment.bytes" && !e.is_default && e.value == "4096"));
        assert!(e.iter().any(|e| e.name == "retention.ms" && e.is_default));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let mut c = TopicConfig::default();
        for (k, v) in [
            ("no.such.key", "1"),
            ("retention.ms", "abc"),
            ("retention.ms", "-2"),
            ("segment.bytes", "10"),
            ("message.timestamp.type", "Sometimes"),
            ("cleanup.policy", "compact"),
            ("compression.type", "gzip"),
        ] {
            assert!(
                matches!(
                    c.alter(k, Some(v), AlterOp::Set),
                    Err(BrokerError::InvalidConfig(_))
                ),
                "{k}={v}"
            );
        }
        assert!(matches!(
            c.alter("retention.ms", Some("5"), AlterOp::Append),
            Err(BrokerError::InvalidConfig(_))
        ));
        assert!(c.overrides().is_empty(), "nothing invalid was stored");
    }

    #[test]
    fn log_append_time_and_case_insensitive_enum() {
        let d = TopicDefaults::default();
        let c = TopicConfig::from_pairs([("message.timestamp.type", Some("logappendtime"))])
            .expect("valid");
        assert!(c.log_config(&d).log_append_time);
        assert_eq!(c.overrides()["message.timestamp.type"], "LogAppendTime");
    }

    #[test]
    fn ephemeral_topics_get_short_retention_unless_they_set_it() {
        let d = TopicDefaults::default();
        let durable = TopicConfig::default();
        assert!(!durable.is_ephemeral());
        assert_eq!(durable.log_config(&d), d.log);
        let e = TopicConfig::from_pairs([(EPHEMERAL, Some("TRUE"))]).expect("valid");
        assert!(e.is_ephemeral());
        let log = e.log_config(&d);
        assert_eq!(log.retention_ms, 60_000);
        assert_eq!(log.retention_bytes, 64 << 20);
        assert_eq!(log.segment_bytes, 8 << 20);
        assert_eq!(log.segment_ms, 10_000);
        let entries = e.entries(&d);
        let entry = |name: &str| entries.iter().find(|x| x.name == name).expect("listed");
        assert_eq!(entry(EPHEMERAL).value, "true");
        assert!(!entry(EPHEMERAL).is_default);
        assert_eq!(entry(EPHEMERAL).config_type, 1);
        assert_eq!(entry("retention.ms").value, "60000");
        assert!(entry("retention.ms").is_default);
        let set =
            TopicConfig::from_pairs([(EPHEMERAL, Some("true")), ("retention.ms", Some("1000"))])
                .expect("valid");
        assert_eq!(set.log_config(&d).retention_ms, 1000);
        assert_eq!(set.log_config(&d).retention_bytes, 64 << 20);
    }

    #[test]
    fn ephemeral_is_checked_and_fixed_at_creation() {
        assert!(matches!(
            TopicConfig::from_pairs([(EPHEMERAL, Some("maybe"))]),
            Err(BrokerError::InvalidConfig(_))
        ));
        let durable = TopicConfig::default();
        let explicit_false = TopicConfig::from_pairs([(EPHEMERAL, Some("false"))]).expect("valid");
        let ephemeral = TopicConfig::from_pairs([(EPHEMERAL, Some("true"))]).expect("valid");
        assert!(durable.check_change(&explicit_false).is_ok());
        assert!(ephemeral.check_change(&ephemeral.clone()).is_ok());
        assert!(matches!(
            durable.check_change(&ephemeral),
            Err(BrokerError::InvalidConfig(_))
        ));
        assert!(matches!(
            ephemeral.check_change(&durable),
            Err(BrokerError::InvalidConfig(_))
        ));
    }
}
