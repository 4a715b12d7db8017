//! What a handler gives back to the connection.

use std::future::Future;
use std::pin::Pin;

use kafka_protocol::messages::ResponseKind;

/// A response, now or later, or none at all.
pub enum Reply {
    /// Ready to encode (boxed: response types are large and most replies are small).
    Now(Box<ResponseKind>),
    /// Completes later (durability wait, long poll). The connection awaits these in request
    /// order, so later requests' answers queue behind it, as Kafka requires.
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
    /// Nothing is sent (Produce with acks=0).
    NoResponse,
    /// Nothing is sent and the connection is closed once earlier replies are written: how Kafka
    /// tells an acks=0 producer that its request failed.
    Close,
}

impl Reply {
    /// A response ready now.
    pub fn now(r: ResponseKind) -> Self {
        Reply::Now(Box::new(r))
    }

    /// A response that completes later.
    pub fn later(f: impl Future<Output = ResponseKind> + Send + 'static) -> Self {
        Reply::Later(Box::pin(f))
    }
}
