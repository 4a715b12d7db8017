//! One client connection: frames in, responses out, strictly in order.
//!
//! The reader decodes a frame, runs the handler's synchronous part (a produce's append happens
//! here, so appends keep the order requests arrived in), and queues the reply on a bounded
//! channel. The writer awaits each reply in order and writes it. The channel's capacity bounds
//! requests in flight; the frame limit bounds each request's size.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use courier_protocol::{decode_request, encode_response, ProtocolError};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tracing::Instrument;

use crate::handlers::api_versions;
use crate::listener::Context;
use crate::reply::Reply;
use crate::router;

/// A decoded request waiting for its answer to be written.
struct Pending {
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    reply: Reply,
    /// The frame's share of the request memory pool, returned once the reply is written.
    _memory: OwnedSemaphorePermit,
}

/// Serves one connection until the client closes it, a protocol violation closes it, or the
/// server shuts down.
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(ctx.config.max_in_flight_per_connection.max(1));
    let writer = tokio::spawn(write_loop(wr, rx, peer));
    read_loop(rd, tx, peer, &ctx, stop).await;
    let _ = writer.await;
    tracing::debug!(%peer, "connection closed");
}

async fn read_loop(
    rd: OwnedReadHalf,
    tx: mpsc::Sender<Pending>,
    peer: SocketAddr,
    ctx: &Arc<Context>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    loop {
        let len = tokio::select! {
            r = rd.read_i32() => match r {
                Ok(len) => len,
                Err(_) => return, // EOF or reset: the client is gone.
            },
            _ = stop.changed() => return,
        };
        if len < 0 || len as usize > ctx.config.max_frame_bytes {
            tracing::warn!(%peer, len, limit = ctx.config.max_frame_bytes, "closing connection: frame size out of bounds");
            return;
        }
        let len = len as usize;
        let memory = match Arc::clone(&ctx.request_memory)
            .acquire_many_owned(u32::try_from(len.max(1)).unwrap_or(u32::MAX))
            .await
        {
            Ok(permit) => permit,
            Err(_) => return,
        };
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let want = len - buf.len();
            let mut limited = (&mut rd).take(want as u64);
            match limited.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    tracing::debug!(%peer, got = buf.len(), len, "connection closed mid-frame");
                    return;
                }
                Ok(_) => {}
            }
        }
        let frame = buf.freeze();
        let raw = courier_protocol::peek_header(&frame).ok();
        let pending = match decode_request(frame) {
            Ok(req) => {
                let span = tracing::debug_span!(
                    "request",
                    api = ?req.api_key,
                    version = req.header.request_api_version,
                    correlation_id = req.header.correlation_id,
                );
                let api_key = req.api_key;
                let api_version = req.header.request_api_version;
                let correlation_id = req.header.correlation_id;
                let reply = router::route(ctx, req, peer).instrument(span).await;
                Pending {
                    api_key,
                    api_version,
                    correlation_id,
                    reply,
                    _memory: memory,
                }
            }
            Err(ProtocolError::UnsupportedVersion { api_key, version })
                if api_key == ApiKey::ApiVersions as i16 =>
            {
                // Kafka answers a too-new ApiVersions with v0 and UNSUPPORTED_VERSION, listing
                // what it serves, so the client can retry with a version it knows.
                tracing::debug!(%peer, version, "ApiVersions version unsupported; answering v0");
                Pending {
                    api_key: ApiKey::ApiVersions,
                    api_version: 0,
                    correlation_id: raw.map(|h| h.correlation_id).unwrap_or_default(),
                    reply: Reply::now(api_versions::unsupported_version_response()),
                    _memory: memory,
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad request");
                return;
            }
        };
        if tx.send(pending).await.is_err() {
            return; // The writer failed; the socket is unusable.
        }
    }
}

async fn write_loop(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Pending>, peer: SocketAddr) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(p) = rx.recv().await {
        let body = match p.reply {
            Reply::Now(body) => *body,
            Reply::Later(fut) => fut.await,
            Reply::NoResponse => continue,
            Reply::Close => {
                tracing::debug!(%peer, "closing connection to report an acks=0 failure");
                break;
            }
        };
        let frame = match encode_response(p.api_key, p.api_version, p.correlation_id, &body) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(%peer, error = %e, "could not encode a response; closing connection");
                return;
            }
        };
        if let Err(e) = w.write_all(&frame).await {
            tracing::debug!(%peer, error = %e, "write failed");
            return;
        }
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}
