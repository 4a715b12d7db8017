//! The protocol crate's one error type.

use thiserror::Error;

/// Why a frame could not be turned into a request.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// Fewer bytes than a request header needs.
    #[error("frame of {len} bytes is too short for a request header")]
    ShortFrame {
        /// Length of the frame that was received.
        len: usize,
    },
    /// An API key Courier does not know or does not serve.
    #[error("unknown or unsupported API key {api_key}")]
    UnknownApiKey {
        /// The key from the request header.
        api_key: i16,
    },
    /// A known API at a version outside the advertised range.
    #[error("API key {api_key} version {version} is not supported")]
    UnsupportedVersion {
        /// The key from the request header.
        api_key: i16,
        /// The version from the request header.
        version: i16,
    },
    /// The header or body did not decode at the version claimed.
    #[error("malformed request (API key {api_key} v{version}): {reason}")]
    Malformed {
        /// The key from the request header.
        api_key: i16,
        /// The version from the request header.
        version: i16,
        /// What the decoder reported.
        reason: String,
    },
    /// Encoding a response failed; a bug in Courier, reported rather than panicking.
    #[error("failed to encode response (API key {api_key} v{version}): {reason}")]
    Encode {
        /// The API being answered.
        api_key: i16,
        /// The version being answered.
        version: i16,
        /// What the encoder reported.
        reason: String,
    },
}
