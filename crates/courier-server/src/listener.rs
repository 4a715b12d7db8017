//! Accepts connections, caps their number and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;

use courier_broker::Broker;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::ServerConfig;
use crate::connection;

/// What every connection shares.
pub struct Context {
    /// The broker state handlers operate on.
    pub broker: Arc<Broker>,
    /// Network limits.
    pub config: ServerConfig,
    /// One permit per byte of request frames in memory (see
    /// [`ServerConfig::max_request_memory_bytes`]).
    pub request_memory: Arc<Semaphore>,
}

impl Context {
    /// Builds the shared context; the memory pool is at least one maximum-size frame.
    pub fn new(broker: Arc<Broker>, config: ServerConfig) -> Self {
        let pool = config.max_request_memory_bytes.max(config.max_frame_bytes);
        Self {
            broker,
            config,
            request_memory: Arc::new(Semaphore::new(pool)),
        }
    }
}

/// Serves Kafka clients on `listener` until `shutdown` completes, then stops accepting, lets
/// connections finish the requests they are answering, and returns.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, shutdown: impl Future<Output = ()>) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let ctx = Arc::clone(&ctx);
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    connection::run(stream, peer, ctx, stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    tracing::info!("shutting down: no longer accepting connections");
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections did not finish within 10 s; closing them");
    }
}
