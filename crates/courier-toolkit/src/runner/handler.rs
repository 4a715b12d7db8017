//! What the runner hands to application code, and what it expects back.

use std::fmt;
use std::future::Future;

use rdkafka::message::{BorrowedMessage, Headers, Message as _};

use crate::keys::{IdempotencyKey, KeyExtractor};
use crate::producer::ProducerRecord;
use crate::store::Tx;

/// A consumed record, copied out of the client so that a handler may keep it across awaits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order; a value may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The record's timestamp in ms since the epoch, if it has one.
    pub timestamp: Option<i64>,
    /// The key under which processing this record is remembered (see [`crate::keys`]).
    pub idempotency_key: IdempotencyKey,
}

impl Message {
    /// Copies a consumed record and derives its idempotency key with `keys`.
    pub(crate) fn from_kafka(m: &BorrowedMessage<'_>, keys: &KeyExtractor) -> Self {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let mut msg = Self {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp().to_millis(),
            idempotency_key: IdempotencyKey::position(m.topic(), m.partition(), m.offset()),
        };
        msg.idempotency_key = keys.extract(&msg);
        msg
    }

    /// The value of the first header named `name`, if it is present and not null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A transient failure (a timeout, an unavailable dependency): retried with backoff.
    Retriable,
    /// Retrying cannot help (a malformed record, a rejected request): dead-lettered at once.
    Permanent,
}

/// Why a handler could not process a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct HandlerError {
    /// Whether to retry.
    pub kind: ErrorKind,
    /// What went wrong; copied into the dead letter's `courier-dlq-error` header.
    pub message: String,
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn retriable(err: impl fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Retriable,
            message: err.to_string(),
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(err: impl fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: err.to_string(),
        }
    }

    /// True for [`ErrorKind::Retriable`].
    pub fn is_retriable(&self) -> bool {
        self.kind == ErrorKind::Retriable
    }
}

/// What a handler produced: records to send. Under `ExactlyOnceKafka` they are sent in the
/// transaction that commits the input's offset; under the other guarantees they are sent
/// with the idempotent producer and acknowledged before the input's offset is committed
/// (at-least-once) or after it (at-most-once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandlerOutput {
    /// Records to send, in order.
    pub records: Vec<ProducerRecord>,
}

impl HandlerOutput {
    /// Nothing to send.
    pub fn none() -> Self {
        Self::default()
    }

    /// These records to send.
    pub fn records(records: Vec<ProducerRecord>) -> Self {
        Self { records }
    }
}

/// Application code that processes one message.
///
/// Implement it with `async fn`:
///
/// ```
/// use courier_toolkit::runner::{Handler, HandlerError, HandlerOutput, Message};
///
/// struct Billing;
///
/// impl Handler for Billing {
///     async fn handle(&self, msg: &Message) -> Result<HandlerOutput, HandlerError> {
///         let value = msg.value.as_deref().ok_or_else(|| HandlerError::permanent("tombstone"))?;
///         let _amount: u64 = std::str::from_utf8(value)
///             .ok()
///             .and_then(|s| s.parse().ok())
///             .ok_or_else(|| HandlerError::permanent("not a number"))?;
///         Ok(HandlerOutput::none())
///     }
/// }
/// ```
///
/// or wrap a closure with [`handler_fn`].
pub trait Handler: Send + Sync + 'static {
    /// Processes `msg`. It may be called again for the same message: after a retriable
    /// error, and (except under at-most-once) after a crash before its offset was committed;
    /// [`Message::idempotency_key`] names it across those calls.
    fn handle(
        &self,
        msg: &Message,
    ) -> impl Future<Output = Result<HandlerOutput, HandlerError>> + Send;
}

/// A [`Handler`] made from a closure; see [`handler_fn`].
pub struct FnHandler<F>(F);

/// Wraps a closure that takes an owned [`Message`] (a copy per call) as a [`Handler`]:
///
/// ```
/// use courier_toolkit::runner::{handler_fn, HandlerOutput, Message};
///
/// let handler = handler_fn(|msg: Message| async move {
///     tracing::info!(offset = msg.offset, "got it");
///     Ok(HandlerOutput::none())
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HandlerOutput, HandlerError>> + Send,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HandlerOutput, HandlerError>> + Send,
{
    fn handle(
        &self,
        msg: &Message,
    ) -> impl Future<Output = Result<HandlerOutput, HandlerError>> + Send {
        (self.0)(msg.clone())
    }
}

/// Application code that processes one message under
/// [`Guarantee::ExactlyOnceDatabase`](super::Guarantee::ExactlyOnceDatabase): its effect
/// runs on `tx`, inside the store's transaction that also records the message's idempotency
/// key and the group's next offset, so the effect commits exactly when the message is
/// recorded as processed.
///
/// ```
/// use courier_toolkit::runner::{DbHandler, HandlerError, Message};
/// use courier_toolkit::store::Tx;
///
/// struct Ledger;
///
/// impl DbHandler for Ledger {
///     async fn handle(&self, msg: &Message, tx: Tx) -> Result<Vec<u8>, HandlerError> {
///         let value = msg.value.clone().ok_or_else(|| HandlerError::permanent("tombstone"))?;
///         tx.execute("INSERT INTO ledger (entry) VALUES ($1)", &[value.into()])
///             .await
///             .map_err(HandlerError::retriable)?;
///         Ok(Vec::new())
///     }
/// }
/// ```
///
/// or wrap a closure with [`db_handler_fn`].
pub trait DbHandler: Send + Sync + 'static {
    /// Applies `msg`'s effect on `tx` and returns the result to store with the key (handed
    /// back, without running the effect, if the same key is seen again). On an error, or if
    /// a statement on `tx` fails, the transaction rolls back: no effect, no key, no offset.
    fn handle(
        &self,
        msg: &Message,
        tx: Tx,
    ) -> impl Future<Output = Result<Vec<u8>, HandlerError>> + Send;
}

/// A [`DbHandler`] made from a closure; see [`db_handler_fn`].
pub struct DbFnHandler<F>(F);

/// Wraps a closure that takes an owned [`Message`] and the transaction as a [`DbHandler`]:
///
/// ```
/// use courier_toolkit::runner::{db_handler_fn, HandlerError, Message};
/// use courier_toolkit::store::Tx;
///
/// let handler = db_handler_fn(|msg: Message, tx: Tx| async move {
///     tx.execute("INSERT INTO seen (off) VALUES ($1)", &[msg.offset.into()])
///         .await
///         .map_err(HandlerError::retriable)?;
///     Ok(Vec::new())
/// });
/// # let _ = handler;
/// ```
pub fn db_handler_fn<F, Fut>(f: F) -> DbFnHandler<F>
where
    F: Fn(Message, Tx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, HandlerError>> + Send,
{
    DbFnHandler(f)
}

impl<F, Fut> DbHandler for DbFnHandler<F>
where
    F: Fn(Message, Tx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, HandlerError>> + Send,
{
    fn handle(
        &self,
        msg: &Message,
        tx: Tx,
    ) -> impl Future<Output = Result<Vec<u8>, HandlerError>> + Send {
        (self.0)(msg.clone(), tx)
    }
}

/// A [`DbHandler`] in a [`Runner`](super::Runner): what [`Runner::new_db`](super::Runner::new_db)
/// builds.
pub struct InDatabase<D>(pub(crate) D);

impl<D> InDatabase<D> {
    /// The application's handler.
    pub fn inner(&self) -> &D {
        &self.0
    }
}
