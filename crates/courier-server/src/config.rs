//! Limits that protect the server from its clients.

/// Network-side settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request frame accepted (socket.request.max.bytes); larger ones close the
    /// connection with a log line before any of it is buffered.
    pub max_frame_bytes: usize,
    /// Most client connections at once (max.connections); further ones wait to be accepted.
    pub max_connections: usize,
    /// Most requests per connection decoded but not yet answered; bounds per-connection memory
    /// together with the frame limit.
    pub max_in_flight_per_connection: usize,
    /// Upper bound on a fetch response's size (fetch.max.bytes).
    pub fetch_max_bytes: usize,
    /// Bytes of request frames held in memory at once across all connections
    /// (queued.max.request.bytes). A connection whose next frame does not fit waits, and stops
    /// reading its socket, until earlier requests are answered. Never less than
    /// `max_frame_bytes`, so any legal frame can be read.
    pub max_request_memory_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 100 * 1024 * 1024,
            max_connections: 1000,
            max_in_flight_per_connection: 32,
            fetch_max_bytes: 55 * 1024 * 1024,
            max_request_memory_bytes: 512 * 1024 * 1024,
        }
    }
}
