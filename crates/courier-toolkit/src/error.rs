//! The toolkit's one error type.

/// Why a toolkit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolkitError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A setting is missing or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The handler failed processing a message.
    #[error("handler: {0}")]
    Handler(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// A message could not be written to its dead-letter topic; its offset was not
    /// committed, so it is delivered again after a restart.
    #[error("dead-lettering {source_topic}/{partition}/{offset} to {dlq}: {reason}")]
    DeadLetter {
        /// The message's topic.
        source_topic: String,
        /// The message's partition.
        partition: i32,
        /// The message's offset.
        offset: i64,
        /// The dead-letter topic.
        dlq: String,
        /// Why the send failed.
        reason: String,
    },
    /// The transactional producer failed fatally: typically fenced by a newer instance with
    /// the same transactional id. The runner stops; its open transaction is aborted.
    #[error("transactional producer failed fatally: {0}")]
    TransactionFatal(#[source] rdkafka::error::KafkaError),
    /// A batch of the processed-ID store
    /// ([`process_batch`](crate::store::ProcessedStore::process_batch)) failed and its whole
    /// transaction rolled back: nothing of any of its messages was kept.
    #[error("batch rolled back{}: {source}", at_message(.index))]
    BatchRolledBack {
        /// The position of the message whose effect or statement failed; `None` when the
        /// failure belongs to no message (starting or committing the transaction, the
        /// offsets).
        index: Option<usize>,
        /// What failed.
        #[source]
        source: Box<ToolkitError>,
    },
    /// SQLite failed (the processed-ID store's embedded backend).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (the processed-ID store's server backend).
    #[error("postgres: {}", describe_postgres(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// " at message `i`" when the failure belongs to message `i`.
fn at_message(index: &Option<usize>) -> String {
    index.map_or_else(String::new, |i| format!(" at message {i}"))
}

/// A PostgreSQL error with the server's message (tokio-postgres displays only "db error").
fn describe_postgres(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    }
}
