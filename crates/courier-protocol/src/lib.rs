//! Courier's view of the Kafka wire protocol.
//!
//! The codec itself is the `kafka-protocol` crate, generated from Kafka's JSON schemas. This crate
//! owns what sits around it:
//!
//! - [`versions`]: which API keys and versions Courier serves. Each range is the intersection of
//!   what Courier implements and what the crate can decode (request) and encode (response), never
//!   `ApiKey::valid_versions()`, which claims versions the message types cannot encode.
//! - [`codec`]: a length-prefixed frame in, a typed request out; a typed response in, a frame out,
//!   with the right header version for each API (ApiVersions responses always use header v0).
//! - [`error`]: [`ProtocolError`], which tells the server whether to answer or close the connection.

pub mod codec;
pub mod error;
pub mod versions;

pub use codec::{decode_request, encode_response, peek_header, DecodedRequest, RawHeader};
pub use error::ProtocolError;
pub use kafka_protocol;
pub use versions::{supported_apis, supported_versions};
