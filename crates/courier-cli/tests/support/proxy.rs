//! A TCP proxy between Kafka clients and the broker that can lose acknowledgements: it forwards
//! a Produce request, then drops its response and cuts the connection, exactly the failure that
//! makes a producer retry something the broker already appended.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Produce's API key.
const PRODUCE: i16 = 0;

/// A running proxy.
pub struct LossyProxy {
    /// Where clients connect.
    pub addr: String,
    state: Arc<State>,
}

struct State {
    upstream: Mutex<String>,
    /// Produce responses still to drop.
    to_drop: AtomicUsize,
    /// Produce responses dropped so far.
    dropped: AtomicUsize,
    stop: AtomicBool,
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    if !(0..=200 << 20).contains(&n) {
        return Err(std::io::Error::other("bad frame length"));
    }
    let mut buf = vec![0u8; n as usize + 4];
    buf[..4].copy_from_slice(&len);
    s.read_exact(&mut buf[4..])?;
    Ok(buf)
}

impl LossyProxy {
    /// Listens on an ephemeral port; call [`LossyProxy::set_upstream`] before clients connect.
    pub fn bind() -> (Self, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(State {
            upstream: Mutex::new(String::new()),
            to_drop: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        (Self { addr, state }, listener)
    }

    /// Starts accepting and forwarding to the broker at `upstream`.
    pub fn start(&self, listener: TcpListener, upstream: &str) {
        *self.state.upstream.lock().expect("lock") = upstream.to_string();
        let state = Arc::clone(&self.state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if state.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let upstream = state.upstream.lock().expect("lock").clone();
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let state = Arc::clone(&state);
                std::thread::spawn(move || relay(client, server, state));
            }
        });
    }

    /// The broker moved (restarted on another port).
    pub fn set_upstream(&self, upstream: &str) {
        *self.state.upstream.lock().expect("lock") = upstream.to_string();
    }

    /// Drops the responses of the next `n` Produce requests (cutting their connections).
    pub fn drop_produce_responses(&self, n: usize) {
        self.state.to_drop.fetch_add(n, Ordering::SeqCst);
    }

    /// How many Produce responses were dropped.
    pub fn dropped(&self) -> usize {
        self.state.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn relay(client: TcpStream, server: TcpStream, state: Arc<State>) {
    let pending: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
    let (mut c_in, mut s_out) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let requests = {
        let pending = Arc::clone(&pending);
        std::thread::spawn(move || {
            while let Ok(frame) = read_frame(&mut c_in) {
                if frame.len() >= 12 {
                    let key = i16::from_be_bytes([frame[4], frame[5]]);
                    let correlation =
                        i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
                    pending.lock().expect("lock").insert(correlation, key);
                }
                if s_out.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = s_out.shutdown(Shutdown::Both);
        })
    };
    let (mut s_in, mut c_out) = (server, client);
    while let Ok(frame) = read_frame(&mut s_in) {
        let correlation = if frame.len() >= 8 {
            i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
        } else {
            -1
        };
        let key = pending.lock().expect("lock").remove(&correlation);
        if key == Some(PRODUCE)
            && state
                .to_drop
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            // The broker has appended the batch; the producer never hears of it.
            state.dropped.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if c_out.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = s_in.shutdown(Shutdown::Both);
    let _ = requests.join();
}
