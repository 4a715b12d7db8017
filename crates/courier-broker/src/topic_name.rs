//! Kafka's rules for topic names.

use crate::error::BrokerError;

/// Longest legal topic name (Kafka's limit, so that `<name>-<partition>` fits a file name).
pub const MAX_NAME_LEN: usize = 249;

/// Checks a topic name as Kafka's `Topic.validate` does.
pub fn validate(name: &str) -> Result<(), BrokerError> {
    let bad = |reason| {
        Err(BrokerError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_names_and_rejects_the_rest() {
        for ok in ["a", "orders", "order-events.v2_x", &"x".repeat(249)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ünï", &"x".repeat(250), "a\0"] {
            assert!(
                matches!(validate(bad), Err(BrokerError::InvalidTopicName { .. })),
                "{bad:?}"
            );
        }
    }
}
