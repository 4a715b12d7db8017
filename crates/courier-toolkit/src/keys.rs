//! Idempotency keys: the name under which a processed message is remembered, so that a
//! redelivered copy can be recognised and skipped.
//!
//! A key comes from, in this order:
//!
//! 1. the source the runner is configured with: a header (by default
//!    [`DEFAULT_HEADER`], `idempotency-key`) or a function of the message;
//! 2. if that yields nothing (the header is missing or null, the function returns `None`),
//!    the message's position, `<topic>/<partition>/<offset>`.
//!
//! The position fallback identifies a *record in the log*, not a *request*: a producer that
//! retried without idempotence, or a client that resubmitted, wrote two records with two
//! positions, and they get two keys. Use a header or a function when duplicates can be born
//! upstream of the topic.

use std::fmt;
use std::sync::Arc;

use crate::runner::Message;

/// The header read by [`KeyExtractor::default`].
pub const DEFAULT_HEADER: &str = "idempotency-key";

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOrigin {
    /// The configured header.
    Header,
    /// The configured function.
    Function,
    /// The fallback: `<topic>/<partition>/<offset>`.
    Position,
}

/// A message's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The key's bytes (a header value, a function's result, or the position as UTF-8).
    bytes: Vec<u8>,
    /// Which source produced it.
    origin: KeyOrigin,
}

impl IdempotencyKey {
    /// A key with these bytes and origin.
    pub fn new(bytes: impl Into<Vec<u8>>, origin: KeyOrigin) -> Self {
        Self {
            bytes: bytes.into(),
            origin,
        }
    }

    /// The fallback key of the record at `partition`/`offset` of `topic`.
    pub fn position(topic: &str, partition: i32, offset: i64) -> Self {
        Self::new(format!("{topic}/{partition}/{offset}"), KeyOrigin::Position)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where the key came from.
    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.bytes))
    }
}

/// A user function that derives a key from a message; `None` falls back to the position.
pub type KeyFn = dyn Fn(&Message) -> Option<Vec<u8>> + Send + Sync;

/// How the runner derives each message's [`IdempotencyKey`].
#[derive(Clone)]
pub enum KeyExtractor {
    /// The value of the first header with this name.
    Header(String),
    /// A function of the message. It is called before the key is known, so the message it
    /// sees carries its fallback (position) key in [`Message::idempotency_key`].
    Function(Arc<KeyFn>),
}

impl Default for KeyExtractor {
    /// The `idempotency-key` header.
    fn default() -> Self {
        Self::Header(DEFAULT_HEADER.to_string())
    }
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Function(_) => f.write_str("Function(..)"),
        }
    }
}

impl KeyExtractor {
    /// Keys from the header `name`.
    pub fn header(name: impl Into<String>) -> Self {
        Self::Header(name.into())
    }

    /// Keys from a function of the message.
    pub fn function(f: impl Fn(&Message) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        Self::Function(Arc::new(f))
    }

    /// The key of `msg`: from the configured source, else its position.
    pub fn extract(&self, msg: &Message) -> IdempotencyKey {
        let found = match self {
            Self::Header(name) => msg
                .header(name)
                .map(|v| IdempotencyKey::new(v, KeyOrigin::Header)),
            Self::Function(f) => f(msg).map(|v| IdempotencyKey::new(v, KeyOrigin::Function)),
        };
        found.unwrap_or_else(|| IdempotencyKey::position(&msg.topic, msg.partition, msg.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: Vec<(String, Option<Vec<u8>>)>) -> Message {
        Message {
            topic: "orders".into(),
            partition: 3,
            offset: 42,
            key: Some(b"user-7".to_vec()),
            value: Some(b"{}".to_vec()),
            headers,
            timestamp: None,
            idempotency_key: IdempotencyKey::position("orders", 3, 42),
        }
    }

    #[test]
    fn header_key_is_the_first_header_with_that_name() {
        let m = msg(vec![
            ("other".into(), Some(b"x".to_vec())),
            (DEFAULT_HEADER.into(), Some(b"req-1".to_vec())),
            (DEFAULT_HEADER.into(), Some(b"req-2".to_vec())),
        ]);
        let key = KeyExtractor::default().extract(&m);
        assert_eq!(key, IdempotencyKey::new("req-1", KeyOrigin::Header));
    }

    #[test]
    fn missing_or_null_header_falls_back_to_the_position() {
        for headers in [vec![], vec![(DEFAULT_HEADER.to_string(), None)]] {
            let key = KeyExtractor::default().extract(&msg(headers));
            assert_eq!(key.as_bytes(), b"orders/3/42");
            assert_eq!(key.origin(), KeyOrigin::Position);
        }
    }

    #[test]
    fn function_key_and_its_fallback() {
        let by_key = KeyExtractor::function(|m| m.key.clone());
        assert_eq!(
            by_key.extract(&msg(vec![])),
            IdempotencyKey::new("user-7", KeyOrigin::Function)
        );
        let none = KeyExtractor::function(|_| None);
        assert_eq!(none.extract(&msg(vec![])).to_string(), "orders/3/42");
    }

    #[test]
    fn custom_header_name() {
        let m = msg(vec![("request-id".into(), Some(b"r9".to_vec()))]);
        assert_eq!(
            KeyExtractor::header("request-id").extract(&m).as_bytes(),
            b"r9"
        );
        assert_eq!(
            KeyExtractor::default().extract(&m).origin(),
            KeyOrigin::Position
        );
    }
}
