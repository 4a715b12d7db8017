//! `courier demo orders`: the reference's order-processing system, built on the toolkit, run
//! under faults, and judged from its data.
//!
//! An Order API publishes `OrderPlaced` events keyed by user to `order-events` (8 partitions)
//! with acks=all and idempotence; four services consume them, each its own consumer group and
//! its own OS process: Payment and Inventory exactly-once into SQLite, Notification
//! at-least-once, Analytics at-most-once. While orders flow, services are SIGKILLed and
//! restarted, acknowledgements are lost, connections cut, the broker restarted, and clients
//! retry orders. Then everything drains, stops, and the audit reads the topic and every
//! service's database and says, per service, whether it kept its guarantee.
//!
//! Module map (the folder tree is the pipeline):
//!
//! - [`order`]: the event; [`api`]: the Order API (producer);
//! - [`services`]: the four consumers (run as `courier demo service <name>`);
//!   [`supervisor`]: their processes (start, SIGKILL, restart, stop);
//! - [`env`]: the broker (embedded or `--bootstrap`) behind the fault proxy; [`faults`]: the
//!   fault kinds and schedule; [`pipeline`]: the run itself; [`progress`]: the live display;
//! - [`audit`]: the judgement from the data; [`report`]: the table and the JSON.

pub mod api;
pub mod audit;
pub mod env;
mod error;
pub mod faults;
pub mod order;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod services;
pub mod supervisor;

pub use error::DemoError;
pub use pipeline::{run, DemoOptions};
pub use report::Report;
