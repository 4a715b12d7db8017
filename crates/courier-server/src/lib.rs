//! The network face of Courier: Kafka clients connect here.
//!
//! A request flows top to bottom through these modules:
//! [`listener`] accepts a TCP connection (a semaphore caps how many) and hands it to
//! [`connection`], which reads length-prefixed frames (bounded by the frame limit), decodes them
//! with `courier-protocol`, and passes each to [`router`], a `match` on the API key that calls
//! one file in [`handlers`] per Kafka API. A handler returns a [`reply::Reply`]: an answer now,
//! an answer later (a produce waiting for its fsync, a fetch long-polling), or none (acks=0).
//! The connection answers strictly in request order, with a bounded number in flight.
//! [`error_codes`] is the one place errors become Kafka error codes.

pub mod config;
pub mod connection;
pub mod error_codes;
pub mod handlers;
pub mod listener;
pub mod reply;
pub mod router;

pub use config::ServerConfig;
pub use listener::{serve, Context};
