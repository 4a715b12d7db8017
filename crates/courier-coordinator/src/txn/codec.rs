//! Bytes of a [`TxnRecord`] in the transaction log: key = transactional id, value = the whole
//! metadata (version u16, then fields; strings as u16 length + UTF-8). Version 1 appends the
//! transaction version 2 fields; version 0 records (written before them) still decode, with
//! those fields at their defaults. Decoding never panics.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{TxnRecord, TxnState};

const VERSION: u16 = 1;

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
    v.put_u8(u8::from(r.tv2));
    v.put_i16(r.last_producer_epoch);
    v.put_i64(r.next_producer_id);
    v.put_i64(r.prev_producer_id);
    (key, v.to_vec())
}

/// Parses what [`encode_record`] wrote.
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<TxnRecord, String> {
    let transactional_id = String::from_utf8(key.to_vec()).map_err(|e| e.to_string())?;
    let mut b = Bytes::copy_from_slice(value);
    need(&b, 2)?;
    let version = b.get_u16();
    if version > VERSION {
        return Err(format!("unknown transaction record version {version}"));
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
    let (tv2, last_producer_epoch, next_producer_id, prev_producer_id) = if version >= 1 {
        need(&b, 1 + 2 + 8 + 8)?;
        (b.get_u8() != 0, b.get_i16(), b.get_i64(), b.get_i64())
    } else {
        (false, -1, -1, -1)
    };
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
        tv2,
        last_producer_epoch,
        next_producer_id,
        prev_producer_id,
    })
}
