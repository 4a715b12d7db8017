//! What a runner is told: where to read, as which group, with which guarantee.

use std::time::Duration;

use rdkafka::config::ClientConfig;

use super::backoff::RetryPolicy;
use super::dead_letter::DeadLetterTopic;
use crate::keys::KeyExtractor;
use crate::producer::ProducerConfig;
use crate::store::ProcessedStore;
use crate::ToolkitError;

/// The delivery guarantee a runner keeps. See the [module docs](super) for what each one
/// promises, and what it costs.
#[derive(Debug, Clone)]
pub enum Guarantee {
    /// Commit, then process, a batch at a time: a message is processed at most once; one
    /// whose processing fails, or which a crash interrupted or had not reached yet in the
    /// committed batch, is never seen again.
    AtMostOnce(AtMostOnceSettings),
    /// Process, then commit: nothing is skipped; a crash redelivers what was processed but
    /// not yet committed.
    AtLeastOnce(AtLeastOnceSettings),
    /// Transactional read-process-write: the handler's output records and the input's
    /// offsets commit together or not at all; `read_committed` readers of the output see each
    /// input's effect exactly once.
    ExactlyOnceKafka(ExactlyOnceKafkaSettings),
    /// Exactly-once effects in a database: a [`DbHandler`](super::DbHandler) (run by
    /// [`Runner::new_db`](super::Runner::new_db)) applies each message's effect inside the
    /// [`ProcessedStore`]'s transaction that also records the message's idempotency key and
    /// the group's next offset. On assignment each partition is positioned at the offset
    /// stored in the database, which is the source of truth; a message whose key the store
    /// has seen is skipped.
    ExactlyOnceDatabase(ExactlyOnceDbSettings),
}

impl Guarantee {
    /// At-most-once with the default batch (up to 500 messages, 5 ms linger).
    pub fn at_most_once() -> Self {
        Self::AtMostOnce(AtMostOnceSettings::default())
    }

    /// At-least-once with the default retries, dead-letter topic and commit cadence.
    pub fn at_least_once() -> Self {
        Self::AtLeastOnce(AtLeastOnceSettings::default())
    }

    /// Exactly-once into the database of `store`, with the default retries and dead-letter
    /// topic.
    pub fn exactly_once_database(store: ProcessedStore) -> Self {
        Self::ExactlyOnceDatabase(ExactlyOnceDbSettings::new(store))
    }

    /// Exactly-once Kafka-to-Kafka with the default batch and retries.
    pub fn exactly_once_kafka() -> Self {
        Self::ExactlyOnceKafka(ExactlyOnceKafkaSettings::default())
    }
}

/// Settings of [`Guarantee::AtMostOnce`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtMostOnceSettings {
    /// Most messages whose offsets are committed (in one synchronous commit) before their
    /// handlers run. A crash loses at most one batch: its messages not yet processed are
    /// committed, so never seen again. 1 commits each message before it is processed (the
    /// smallest loss, one broker round trip and fsync per message).
    pub batch_size: usize,
    /// How long a batch waits for more messages once it has one (messages already fetched
    /// are taken without waiting).
    pub batch_linger: Duration,
}

impl Default for AtMostOnceSettings {
    /// Batches of up to 500 messages lingering 5 ms.
    fn default() -> Self {
        Self {
            batch_size: 500,
            batch_linger: Duration::from_millis(5),
        }
    }
}

/// Settings of [`Guarantee::AtLeastOnce`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtLeastOnceSettings {
    /// Retries of a retriable handler error.
    pub retry: RetryPolicy,
    /// Where a message goes after its last attempt, or at once on a permanent error.
    pub dead_letter: DeadLetterTopic,
    /// Commit once this many messages are processed but not committed. 1 commits after every
    /// message (the smallest redelivery window, one synchronous commit per message).
    pub commit_every: usize,
    /// Commit processed offsets at least this often, also when no more messages come.
    pub commit_interval: Duration,
}

impl Default for AtLeastOnceSettings {
    /// Default retries, `<topic>.dlq`, commit every 100 messages or 1 s.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            dead_letter: DeadLetterTopic::default(),
            commit_every: 100,
            commit_interval: Duration::from_secs(1),
        }
    }
}

/// Settings of [`Guarantee::ExactlyOnceDatabase`].
#[derive(Debug, Clone)]
pub struct ExactlyOnceDbSettings {
    /// The processed-ID store: where effects, idempotency keys and offsets are committed.
    pub store: ProcessedStore,
    /// Retries of a retriable handler error or a failed database transaction (rolled back,
    /// nothing recorded).
    pub retry: RetryPolicy,
    /// Where a message goes after its last attempt, or at once on a permanent error; it is
    /// then recorded in the store as processed (with an empty result), so the database
    /// offset moves past it.
    pub dead_letter: DeadLetterTopic,
    /// How often processed offsets are also committed to Kafka, asynchronously and only for
    /// lag monitoring (the runner positions partitions at the database's offsets); `None`
    /// never commits to Kafka.
    pub kafka_commit_interval: Option<Duration>,
    /// Most messages applied in one database transaction: one commit (one fsync) for all of
    /// them. If the batch's transaction fails it rolls back, and its messages are applied
    /// again one per transaction (with the retries and dead letters above). 1 is a
    /// transaction per message.
    pub batch_size: usize,
    /// How long a batch waits for more messages once it has one (messages already fetched
    /// are taken without waiting). The database's write lock (SQLite) or the batch's key
    /// locks (PostgreSQL) are held only while the batch is applied, not while it lingers.
    pub batch_linger: Duration,
    /// Deletes the group's key records that no redelivery can reach any more, from the run
    /// loop (see [`ProcessedStore::prune`]); `None` never prunes.
    pub prune: Option<PruneSettings>,
}

/// When [`Guarantee::ExactlyOnceDatabase`] prunes its key records: every `every`, those
/// below the group's stored offsets that completed more than `retention` ago (the window in
/// which a producer's resend of a message as a new record is still recognised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneSettings {
    /// How often to prune.
    pub every: Duration,
    /// How long a completed key is kept after it completed, whatever the offsets say.
    pub retention: Duration,
}

impl Default for PruneSettings {
    /// Every 10 minutes, keys older than 7 days (Kafka's default log retention: a resend
    /// can come from no further back than the log keeps).
    fn default() -> Self {
        Self {
            every: Duration::from_secs(600),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl ExactlyOnceDbSettings {
    /// `store` with default retries, `<topic>.dlq`, Kafka commits every second, batches of
    /// up to 500 messages lingering 5 ms, and [`PruneSettings::default`].
    pub fn new(store: ProcessedStore) -> Self {
        Self {
            store,
            retry: RetryPolicy::default(),
            dead_letter: DeadLetterTopic::default(),
            kafka_commit_interval: Some(Duration::from_secs(1)),
            batch_size: 500,
            batch_linger: Duration::from_millis(5),
            prune: Some(PruneSettings::default()),
        }
    }
}

/// Settings of [`Guarantee::ExactlyOnceKafka`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactlyOnceKafkaSettings {
    /// Most messages in one transaction; 1 is a transaction per message.
    pub batch_size: usize,
    /// How long a batch waits for more messages once it has one.
    pub batch_linger: Duration,
    /// Retries of a batch whose handler call failed with a retriable error (the whole batch
    /// is aborted and read again). After the last attempt, or on a permanent error, the
    /// failing message is dead-lettered inside the next attempt's transaction.
    pub retry: RetryPolicy,
    /// Where dead letters go.
    pub dead_letter: DeadLetterTopic,
    /// `transaction.timeout.ms`: the broker aborts a transaction open longer than this.
    pub transaction_timeout: Duration,
    /// `transactional.id`; default `<group id>-<instance id>`. See the
    /// [module docs](super#exactly-once-kafka-to-kafka) on zombie fencing.
    pub transactional_id: Option<String>,
}

impl Default for ExactlyOnceKafkaSettings {
    /// Batches of up to 100 messages lingering 100 ms, default retries, `<topic>.dlq`,
    /// a 60 s transaction timeout.
    fn default() -> Self {
        Self {
            batch_size: 100,
            batch_linger: Duration::from_millis(100),
            retry: RetryPolicy::default(),
            dead_letter: DeadLetterTopic::default(),
            transaction_timeout: Duration::from_secs(60),
            transactional_id: None,
        }
    }
}

/// Everything a [`Runner`](super::Runner) needs to know.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The consumer group (`group.id`): members share the partitions, offsets are its own.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// The delivery guarantee.
    pub guarantee: Guarantee,
    /// This instance's name within the group, unique and stable across restarts: part of the
    /// client id and of the default transactional id. Default `"0"`.
    pub instance_id: String,
    /// How each message's idempotency key is derived.
    pub keys: KeyExtractor,
    /// Raw librdkafka consumer settings, applied last (`enable.auto.commit` and
    /// `enable.auto.offset.store` cannot be turned on: the runner commits).
    pub consumer_overrides: Vec<(String, String)>,
    /// Raw librdkafka settings of the producer that sends outputs and dead letters.
    pub producer_overrides: Vec<(String, String)>,
}

impl RunnerConfig {
    /// A runner for `group_id` reading `topics` with `guarantee`, with default settings.
    pub fn new(
        bootstrap: impl Into<String>,
        group_id: impl Into<String>,
        topics: &[&str],
        guarantee: Guarantee,
    ) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            group_id: group_id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            guarantee,
            instance_id: "0".to_string(),
            keys: KeyExtractor::default(),
            consumer_overrides: Vec::new(),
            producer_overrides: Vec::new(),
        }
    }

    /// Sets the instance id.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Sets the idempotency key source.
    pub fn keys(mut self, keys: KeyExtractor) -> Self {
        self.keys = keys;
        self
    }

    /// Overrides one consumer setting.
    pub fn consumer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer_overrides.push((key.into(), value.into()));
        self
    }

    /// Overrides one producer setting.
    pub fn producer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer_overrides.push((key.into(), value.into()));
        self
    }

    /// The consumer's librdkafka configuration.
    pub fn consumer_config(&self) -> Result<ClientConfig, ToolkitError> {
        for key in ["enable.auto.commit", "enable.auto.offset.store"] {
            if self
                .consumer_overrides
                .iter()
                .any(|(k, v)| k == key && v != "false")
            {
                return Err(ToolkitError::Config(format!(
                    "{key} must stay false: the runner commits offsets itself"
                )));
            }
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group_id)
            .set("client.id", self.client_id())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        for (k, v) in &self.consumer_overrides {
            c.set(k, v);
        }
        Ok(c)
    }

    /// The output and dead-letter producer's configuration (the safe defaults plus the
    /// overrides).
    pub fn producer_config(&self) -> ProducerConfig {
        ProducerConfig {
            bootstrap: self.bootstrap.clone(),
            overrides: self.producer_overrides.clone(),
        }
    }

    /// The transactional id of [`Guarantee::ExactlyOnceKafka`]: the configured one, else
    /// `<group id>-<instance id>`.
    pub fn transactional_id(&self) -> String {
        match &self.guarantee {
            Guarantee::ExactlyOnceKafka(ExactlyOnceKafkaSettings {
                transactional_id: Some(id),
                ..
            }) => id.clone(),
            _ => format!("{}-{}", self.group_id, self.instance_id),
        }
    }

    /// `client.id` of this instance's clients.
    fn client_id(&self) -> String {
        format!("courier-runner-{}-{}", self.group_id, self.instance_id)
    }

    /// Checks what librdkafka cannot: a group, topics, and batch and commit sizes.
    pub(crate) fn validate(&self) -> Result<(), ToolkitError> {
        if self.group_id.is_empty() {
            return Err(ToolkitError::Config("group id is empty".into()));
        }
        if self.topics.is_empty() {
            return Err(ToolkitError::Config("no topics to consume".into()));
        }
        match &self.guarantee {
            Guarantee::AtLeastOnce(s) if s.commit_every == 0 => Err(ToolkitError::Config(
                "commit_every must be at least 1".into(),
            )),
            Guarantee::AtMostOnce(AtMostOnceSettings { batch_size: 0, .. })
            | Guarantee::ExactlyOnceKafka(ExactlyOnceKafkaSettings { batch_size: 0, .. })
            | Guarantee::ExactlyOnceDatabase(ExactlyOnceDbSettings { batch_size: 0, .. }) => {
                Err(ToolkitError::Config("batch_size must be at least 1".into()))
            }
            _ => self.consumer_config().map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_keeps_commits_to_itself() {
        let cfg = RunnerConfig::new("h:1", "g", &["t"], Guarantee::at_most_once())
            .consumer_set("enable.auto.commit", "true");
        assert!(matches!(cfg.validate(), Err(ToolkitError::Config(_))));
        let ok = RunnerConfig::new("h:1", "g", &["t"], Guarantee::at_most_once())
            .consumer_set("auto.offset.reset", "latest");
        let c = ok.consumer_config().expect("config");
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
    }

    #[test]
    fn transactional_id_is_group_and_instance_unless_set() {
        let cfg = RunnerConfig::new("h:1", "copy", &["in"], Guarantee::exactly_once_kafka())
            .instance_id("7");
        assert_eq!(cfg.transactional_id(), "copy-7");
        let fixed = RunnerConfig::new(
            "h:1",
            "copy",
            &["in"],
            Guarantee::ExactlyOnceKafka(ExactlyOnceKafkaSettings {
                transactional_id: Some("tx".into()),
                ..Default::default()
            }),
        );
        assert_eq!(fixed.transactional_id(), "tx");
    }

    #[test]
    fn empty_topics_and_zero_batches_are_refused() {
        let none = RunnerConfig::new("h:1", "g", &[], Guarantee::at_most_once());
        assert!(none.validate().is_err());
        let zero = RunnerConfig::new(
            "h:1",
            "g",
            &["t"],
            Guarantee::ExactlyOnceKafka(ExactlyOnceKafkaSettings {
                batch_size: 0,
                ..Default::default()
            }),
        );
        assert!(zero.validate().is_err());
        let zero = RunnerConfig::new(
            "h:1",
            "g",
            &["t"],
            Guarantee::AtMostOnce(AtMostOnceSettings {
                batch_size: 0,
                ..Default::default()
            }),
        );
        assert!(
            matches!(zero.validate(), Err(ToolkitError::Config(m)) if m.contains("batch_size"))
        );
    }
}
