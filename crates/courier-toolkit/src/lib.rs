//! The guarantee toolkit: what a service needs to consume and produce with an explicit
//! delivery guarantee, on the standard Kafka client (the `rdkafka` crate), so it runs against
//! Courier or any Kafka cluster.
//!
//! - [`runner`]: a consumer runner with an explicit guarantee — at-most-once (commit, then
//!   process), at-least-once (process, then commit; retries with backoff and jitter; dead
//!   letters after N failures), exactly-once Kafka-to-Kafka (transactional
//!   read-process-write) and exactly-once into a database (the effect, the idempotency key
//!   and the offsets in one database transaction).
//! - [`store`]: the processed-ID store behind exactly-once into a database: SQLite (embedded,
//!   the default) and PostgreSQL (for services on many machines), one API and one test suite.
//! - [`outbox`]: records written in the same database transaction as a business change, and
//!   a publisher that sends them to Kafka at least once, in order, with an idempotency key.
//! - [`producer`]: a producer with the safe defaults (acks=all, idempotence, retries,
//!   partition by key).
//! - [`keys`]: idempotency keys, from a header (`idempotency-key` by default) or a function
//!   of the message, falling back to the message's position.

pub mod error;
pub mod keys;
pub mod outbox;
pub mod producer;
pub mod runner;
pub mod store;

pub use error::ToolkitError;
