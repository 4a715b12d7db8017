//! The store's tables, their migrations, and the SQL the store runs on them.
//!
//! Four tables, in the user's own database (so that the user's effect and the store's records
//! share one transaction):
//!
//! - `courier_processed_keys`: one row per (consumer group, idempotency key): its state
//!   (`in_progress` / `completed`), the stored result, and where the message came from
//!   (topic, partition, offset), which is what pruning judges it by.
//! - `courier_consumer_offsets`: per (group, topic, partition) the next offset to consume:
//!   where the runner seeks on assignment.
//! - `courier_outbox`: records to publish, written in the same transaction as the business
//!   change; `published_at_ms` is NULL until the broker acknowledged the record.
//! - `courier_schema_version`: the migrations applied so far.
//!
//! Times are milliseconds since the Unix epoch (`*_at_ms`). Each SQL text uses `$1, $2, …`
//! placeholders on both backends.

/// Which SQL dialect a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The schema version table, created before any migration runs.
pub(crate) const CREATE_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS courier_schema_version (version INTEGER NOT NULL)";

/// The highest migration applied (0 before any).
pub(crate) const SELECT_VERSION: &str =
    "SELECT COALESCE(MAX(version), 0) FROM courier_schema_version";

/// Records that a migration was applied.
pub(crate) const INSERT_VERSION: &str = "INSERT INTO courier_schema_version (version) VALUES ($1)";

/// PostgreSQL: serialises concurrent migrations of one database (two services starting at
/// once would otherwise race on `CREATE TABLE IF NOT EXISTS`). The key is arbitrary.
pub(crate) const PG_MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7308327468512360818)";

/// Migration `i + 1` is `migrations(backend)[i]`: statements run in one transaction. Append
/// new migrations; never edit an applied one.
pub(crate) fn migrations(backend: Backend) -> &'static [&'static [&'static str]] {
    match backend {
        Backend::Sqlite => &[&[
            "CREATE TABLE IF NOT EXISTS courier_processed_keys (
                group_id        TEXT    NOT NULL,
                idempotency_key BLOB    NOT NULL,
                state           TEXT    NOT NULL CHECK (state IN ('in_progress', 'completed')),
                result          BLOB,
                topic           TEXT    NOT NULL,
                kafka_partition INTEGER NOT NULL,
                kafka_offset    INTEGER NOT NULL,
                updated_at_ms   INTEGER NOT NULL,
                PRIMARY KEY (group_id, idempotency_key)
            )",
            "CREATE INDEX IF NOT EXISTS courier_processed_keys_by_offset
                ON courier_processed_keys (group_id, topic, kafka_partition, kafka_offset)",
            "CREATE TABLE IF NOT EXISTS courier_consumer_offsets (
                group_id        TEXT    NOT NULL,
                topic           TEXT    NOT NULL,
                kafka_partition INTEGER NOT NULL,
                next_offset     INTEGER NOT NULL,
                updated_at_ms   INTEGER NOT NULL,
                PRIMARY KEY (group_id, topic, kafka_partition)
            )",
            "CREATE TABLE IF NOT EXISTS courier_outbox (
                id              INTEGER PRIMARY KEY AUTOINCREMENT,
                topic           TEXT    NOT NULL,
                record_key      BLOB,
                record_value    BLOB,
                headers         BLOB    NOT NULL,
                created_at_ms   INTEGER NOT NULL,
                published_at_ms INTEGER
            )",
            "CREATE INDEX IF NOT EXISTS courier_outbox_unpublished
                ON courier_outbox (id) WHERE published_at_ms IS NULL",
        ]],
        Backend::Postgres => &[&[
            "CREATE TABLE IF NOT EXISTS courier_processed_keys (
                group_id        TEXT    NOT NULL,
                idempotency_key BYTEA   NOT NULL,
                state           TEXT    NOT NULL CHECK (state IN ('in_progress', 'completed')),
                result          BYTEA,
                topic           TEXT    NOT NULL,
                kafka_partition INTEGER NOT NULL,
                kafka_offset    BIGINT  NOT NULL,
                updated_at_ms   BIGINT  NOT NULL,
                PRIMARY KEY (group_id, idempotency_key)
            )",
            "CREATE INDEX IF NOT EXISTS courier_processed_keys_by_offset
                ON courier_processed_keys (group_id, topic, kafka_partition, kafka_offset)",
            "CREATE TABLE IF NOT EXISTS courier_consumer_offsets (
                group_id        TEXT    NOT NULL,
                topic           TEXT    NOT NULL,
                kafka_partition INTEGER NOT NULL,
                next_offset     BIGINT  NOT NULL,
                updated_at_ms   BIGINT  NOT NULL,
                PRIMARY KEY (group_id, topic, kafka_partition)
            )",
            "CREATE TABLE IF NOT EXISTS courier_outbox (
                id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                topic           TEXT    NOT NULL,
                record_key      BYTEA,
                record_value    BYTEA,
                headers         BYTEA   NOT NULL,
                created_at_ms   BIGINT  NOT NULL,
                published_at_ms BIGINT
            )",
            "CREATE INDEX IF NOT EXISTS courier_outbox_unpublished
                ON courier_outbox (id) WHERE published_at_ms IS NULL",
        ]],
    }
}

/// Claims a key as in progress; affects 0 rows if the key has a record already (on
/// PostgreSQL, after waiting for a concurrent transaction that inserted it to end).
/// `$1` group, `$2` key, `$3` topic, `$4` partition, `$5` offset, `$6` now.
pub(crate) const CLAIM_KEY: &str = "INSERT INTO courier_processed_keys
        (group_id, idempotency_key, state, result, topic, kafka_partition, kafka_offset, updated_at_ms)
    VALUES ($1, $2, 'in_progress', NULL, $3, $4, $5, $6)
    ON CONFLICT (group_id, idempotency_key) DO NOTHING";

/// The existing record of a key, locked until the transaction ends. `$1` group, `$2` key.
pub(crate) fn lock_key(backend: Backend) -> &'static str {
    match backend {
        // BEGIN IMMEDIATE already holds the database's write lock.
        Backend::Sqlite => {
            "SELECT state, result FROM courier_processed_keys
             WHERE group_id = $1 AND idempotency_key = $2"
        }
        Backend::Postgres => {
            "SELECT state, result FROM courier_processed_keys
             WHERE group_id = $1 AND idempotency_key = $2 FOR UPDATE"
        }
    }
}

/// Takes over an `in_progress` record left by someone else: points it at this message.
/// `$1` group, `$2` key, `$3` topic, `$4` partition, `$5` offset, `$6` now.
pub(crate) const RECLAIM_KEY: &str = "UPDATE courier_processed_keys
    SET topic = $3, kafka_partition = $4, kafka_offset = $5, updated_at_ms = $6
    WHERE group_id = $1 AND idempotency_key = $2";

/// Marks a key completed with its result. `$1` group, `$2` key, `$3` result, `$4` now.
pub(crate) const COMPLETE_KEY: &str = "UPDATE courier_processed_keys
    SET state = 'completed', result = $3, updated_at_ms = $4
    WHERE group_id = $1 AND idempotency_key = $2";

/// Moves a partition's next offset forward, never back. `$1` group, `$2` topic,
/// `$3` partition, `$4` next offset, `$5` now.
pub(crate) fn advance_offset(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "INSERT INTO courier_consumer_offsets
                (group_id, topic, kafka_partition, next_offset, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE SET
                next_offset = MAX(courier_consumer_offsets.next_offset, excluded.next_offset),
                updated_at_ms = excluded.updated_at_ms"
        }
        Backend::Postgres => {
            "INSERT INTO courier_consumer_offsets
                (group_id, topic, kafka_partition, next_offset, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE SET
                next_offset = GREATEST(courier_consumer_offsets.next_offset, excluded.next_offset),
                updated_at_ms = excluded.updated_at_ms"
        }
    }
}

/// Sets a partition's next offset to exactly `$4`, back or forward (an operator's rewind).
pub(crate) const RESET_OFFSET: &str = "INSERT INTO courier_consumer_offsets
        (group_id, topic, kafka_partition, next_offset, updated_at_ms)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE SET
        next_offset = excluded.next_offset, updated_at_ms = excluded.updated_at_ms";

/// `$1` group, `$2` topic → (partition, next offset) rows.
pub(crate) const SELECT_OFFSETS: &str = "SELECT kafka_partition, next_offset
    FROM courier_consumer_offsets WHERE group_id = $1 AND topic = $2 ORDER BY kafka_partition";

/// `$1` group, `$2` key → its record.
pub(crate) const SELECT_KEY: &str = "SELECT state, result, topic, kafka_partition, kafka_offset,
        updated_at_ms
    FROM courier_processed_keys WHERE group_id = $1 AND idempotency_key = $2";

/// Deletes the completed records of group `$1` last updated before `$2` whose message is below
/// the group's stored next offset for its partition.
pub(crate) const PRUNE_KEYS: &str = "DELETE FROM courier_processed_keys
    WHERE group_id = $1 AND state = 'completed' AND updated_at_ms < $2
      AND EXISTS (SELECT 1 FROM courier_consumer_offsets o
                  WHERE o.group_id = courier_processed_keys.group_id
                    AND o.topic = courier_processed_keys.topic
                    AND o.kafka_partition = courier_processed_keys.kafka_partition
                    AND courier_processed_keys.kafka_offset < o.next_offset)";

/// Adds an outbox row; returns its id. `$1` topic, `$2` key, `$3` value, `$4` headers,
/// `$5` now.
pub(crate) const OUTBOX_INSERT: &str = "INSERT INTO courier_outbox
        (topic, record_key, record_value, headers, created_at_ms)
    VALUES ($1, $2, $3, $4, $5) RETURNING id";

/// The first `$1` unpublished outbox rows in insertion order.
pub(crate) const OUTBOX_PENDING: &str = "SELECT id, topic, record_key, record_value, headers
    FROM courier_outbox WHERE published_at_ms IS NULL ORDER BY id LIMIT $1";

/// Marks one outbox row published at `$1`. `$2` id.
pub(crate) const OUTBOX_MARK: &str =
    "UPDATE courier_outbox SET published_at_ms = $1 WHERE id = $2 AND published_at_ms IS NULL";

/// Deletes rows published before `$1`.
pub(crate) const OUTBOX_DELETE_PUBLISHED: &str =
    "DELETE FROM courier_outbox WHERE published_at_ms IS NOT NULL AND published_at_ms < $1";
