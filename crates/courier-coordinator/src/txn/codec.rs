//! Bytes of a [`TxnRecord`] in the transaction log: key = transactional id, value = the whole
//! metadata (version u16, then fields; strings as u16 length + UTF-8). Decoding never panics.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{TxnRecord, TxnState};

const VERSION: u16 = 0;

fn put_str(b: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    b.put_u16(s.len() as u16);
    b.put_slice(s);
}

fn get_str(b: &mut Bytes) -> Result<String, String> {
    if b.remaining() < 2 {
        return Err("truncated string length".into());
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return Err("truncated string".into());
    }
    String::from_utf8(b.split_to(n).to_vec()).map_err(|e| e.to_string())
}

fn need(b: &Bytes, n: usize) -> Result<(), String> {
    if b.remaining() < n {
        return Err("truncated record".into());
    }
    Ok(())
}

/// (key, value) for the transaction log.
pub fn encode_record(r: &TxnRecord) -> (Vec<u8>, Vec<u8>) {
    let key = r.transactional_id.as_bytes().to_vec();
    let mut v = BytesMut::new();
    v.put_u16(VERSION);
    v.put_i64(r.producer_id);
    v.put_i16(r.producer_epoch);
    v.put_i32(r.timeout_ms);
    v.put_u8(r.state.code());
    v.put_i64(r.txn_start_ms);
    v.put_i64(r.last_update_ms);
    v.put_u32(r.partitions.len() as u32);
    for (t, p) in &r.partitions {
        put_str(&mut v, t);
        v.put_i32(*p);
    }
    v.put_u32(r.groups.len() as u32);
    for g in &r.groups {
        put_str(&mut v, g);
    }
    (key, v.to_vec())
}

/// Parses what [`encode_record`] wrote.
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<TxnRecord, String> {
    let transactional_id = String::from_utf8(key.to_vec()).map_err(|e| e.to_string())?;
    let mut b = Bytes::copy_from_slice(value);
    need(&b, 2)?;
    if b.get_u16() != VERSION {
        return Err("unknown transaction record version".into());
    }
    need(&b, 8 + 2 + 4 + 1 + 8 + 8 + 4)?;
    let producer_id = b.get_i64();
    let producer_epoch = b.get_i16();
    let timeout_ms = b.get_i32();
    let state = TxnState::from_code(b.get_u8()).ok_or("unknown transaction state")?;
    let txn_start_ms = b.get_i64();
    let last_update_ms = b.get_i64();
    let n = b.get_u32() as usize;
    if n > b.remaining() {
        return Err("partition count exceeds the record".into());
    }
    let mut partitions = BTreeSet::new();
    for _ in 0..n {
        let t = get_str(&mut b)?;
        need(&b, 4)?;
        partitions.insert((t, b.get_i32()));
    }
    need(&b, 4)?;
    let n = b.get_u32() as usize;
    if n > b.remaining() {
        return Err("group count exceeds the record".into());
    }
    let mut groups = BTreeSet::new();
    for _ in 0..n {
        groups.insert(get_str(&mut b)?);
    }
    Ok(TxnRecord {
        transactional_id,
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        groups,
        txn_start_ms,
        last_update_ms,
    })
}
