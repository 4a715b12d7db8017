//! Dead letters: a message the handler gave up on, copied to a side topic with why and where
//! it came from, so that its offset can be committed without losing it.
//!
//! The dead letter keeps the original key, value and headers, and appends:
//!
//! | Header | Value (UTF-8) |
//! |---|---|
//! | [`HEADER_TOPIC`] `courier-dlq-topic` | the source topic |
//! | [`HEADER_PARTITION`] `courier-dlq-partition` | the source partition, decimal |
//! | [`HEADER_OFFSET`] `courier-dlq-offset` | the source offset, decimal |
//! | [`HEADER_ERROR`] `courier-dlq-error` | the last error's text |
//! | [`HEADER_ATTEMPTS`] `courier-dlq-attempts` | attempts made, decimal |
//!
//! Its key is the original key, so dead letters of one key stay in order in one partition of
//! the dead-letter topic.

use crate::producer::{ProducerRecord, SafeProducer};
use crate::ToolkitError;

use super::handler::{HandlerError, Message};

/// Header naming the source topic.
pub const HEADER_TOPIC: &str = "courier-dlq-topic";
/// Header naming the source partition.
pub const HEADER_PARTITION: &str = "courier-dlq-partition";
/// Header naming the source offset.
pub const HEADER_OFFSET: &str = "courier-dlq-offset";
/// Header holding the last error's text.
pub const HEADER_ERROR: &str = "courier-dlq-error";
/// Header holding how many attempts were made.
pub const HEADER_ATTEMPTS: &str = "courier-dlq-attempts";

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterTopic {
    /// `<source topic><suffix>`; the default suffix is `.dlq`.
    Suffix(String),
    /// One topic for every source topic.
    Fixed(String),
}

impl Default for DeadLetterTopic {
    /// `<topic>.dlq`.
    fn default() -> Self {
        Self::Suffix(".dlq".to_string())
    }
}

impl DeadLetterTopic {
    /// The dead-letter topic for messages from `source`.
    pub fn topic_for(&self, source: &str) -> String {
        match self {
            Self::Suffix(s) => format!("{source}{s}"),
            Self::Fixed(t) => t.clone(),
        }
    }
}

/// The dead letter of `msg`, which failed `attempts` times, the last time with `error`.
pub fn dead_letter(
    dlq: &DeadLetterTopic,
    msg: &Message,
    error: &HandlerError,
    attempts: u32,
) -> ProducerRecord {
    let mut headers = msg.headers.clone();
    for (name, value) in [
        (HEADER_TOPIC, msg.topic.clone()),
        (HEADER_PARTITION, msg.partition.to_string()),
        (HEADER_OFFSET, msg.offset.to_string()),
        (HEADER_ERROR, error.message.clone()),
        (HEADER_ATTEMPTS, attempts.to_string()),
    ] {
        headers.push((name.to_string(), Some(value.into_bytes())));
    }
    ProducerRecord {
        topic: dlq.topic_for(&msg.topic),
        key: msg.key.clone(),
        value: msg.value.clone(),
        headers,
        partition: None,
    }
}

/// Sends the dead letter of `msg` (see [`dead_letter`]) to `dlq` and waits for the broker's
/// acknowledgement; a failure is [`ToolkitError::DeadLetter`].
pub(crate) async fn send_dead_letter(
    producer: &SafeProducer,
    dlq: &DeadLetterTopic,
    msg: &Message,
    error: &HandlerError,
    attempts: u32,
) -> Result<(), ToolkitError> {
    let letter = dead_letter(dlq, msg, error, attempts);
    tracing::warn!(attempts, error = %error.message, dlq = %letter.topic, "dead-lettering");
    producer
        .send(&letter)
        .await
        .map_err(|e| ToolkitError::DeadLetter {
            source_topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            dlq: letter.topic.clone(),
            reason: e.to_string(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdempotencyKey;

    #[test]
    fn dead_letter_keeps_the_record_and_says_where_and_why() {
        let msg = Message {
            topic: "orders".into(),
            partition: 2,
            offset: 17,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![("trace".into(), Some(b"t1".to_vec())), ("n".into(), None)],
            timestamp: Some(1),
            idempotency_key: IdempotencyKey::position("orders", 2, 17),
        };
        let err = HandlerError::permanent("bad json");
        let r = dead_letter(&DeadLetterTopic::default(), &msg, &err, 3);
        assert_eq!(r.topic, "orders.dlq");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(h("trace"), Some(b"t1".to_vec()));
        assert_eq!(r.headers[1], ("n".to_string(), None));
        assert_eq!(h(HEADER_TOPIC), Some(b"orders".to_vec()));
        assert_eq!(h(HEADER_PARTITION), Some(b"2".to_vec()));
        assert_eq!(h(HEADER_OFFSET), Some(b"17".to_vec()));
        assert_eq!(h(HEADER_ERROR), Some(b"bad json".to_vec()));
        assert_eq!(h(HEADER_ATTEMPTS), Some(b"3".to_vec()));
        assert_eq!(
            DeadLetterTopic::Fixed("dead".into()).topic_for("orders"),
            "dead"
        );
    }
}
