//! The transaction coordinator through whole transactions: begin, commit, abort, fence a
//! zombie, time out, and finish after a crash between Prepare and Complete.

use super::*;

fn init(c: &mut TxnCoordinator, id: &str, now: i64, next_pid: i64) -> TxnRecord {
    match c.prepare_init(id, 60_000, now, || next_pid).expect("init") {
        InitOutcome::Ready(r) => {
            c.apply(r.clone());
            r
        }
        InitOutcome::Fencing(..) => panic!("unexpected fencing"),
    }
}

fn add(c: &mut TxnCoordinator, r: &TxnRecord, parts: &[(&str, i32)], now: i64) {
    let parts: Vec<(String, i32)> = parts.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    if let Some(next) = c
        .prepare_add(
            &r.transactional_id,
            r.producer_id,
            r.producer_epoch,
            &parts,
            &[],
            now,
        )
        .expect("add")
    {
        c.apply(next);
    }
}

/// EndTxn before transaction version 2 (v0-4): no epoch bump.
fn end_v1(
    c: &TxnCoordinator,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
    now: i64,
) -> Result<Option<(TxnRecord, MarkerJob)>, TxnError> {
    c.prepare_end(&end_req(id, pid, epoch, commit, false), now, || -1)
        .map(|o| o.prepared)
}

fn end_req(id: &str, pid: i64, epoch: i16, commit: bool, tv2: bool) -> EndRequest<'_> {
    EndRequest {
        transactional_id: id,
        producer_id: pid,
        producer_epoch: epoch,
        commit,
        tv2,
    }
}

#[test]
fn commit_goes_through_prepare_markers_and_complete() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let p = init(&mut c, "tx", 0, 7);
    assert_eq!(
        (p.producer_id, p.producer_epoch, p.state),
        (7, 0, TxnState::Empty)
    );
    add(&mut c, &p, &[("a", 0), ("b", 1)], 10);
    assert_eq!(c.get("tx").map(|t| t.state), Some(TxnState::Ongoing));
    let (prepare, job) = end_v1(&c, "tx", 7, 0, true, 20)
        .expect("end")
        .expect("work");
    assert_eq!(prepare.state, TxnState::PrepareCommit);
    assert!(job.commit);
    assert_eq!(job.partitions.len(), 2);
    c.apply(prepare);
    // While markers are written, the producer must wait.
    assert_eq!(
        c.prepare_add("tx", 7, 0, &[("a".into(), 0)], &[], 21),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        c.pending_markers().len(),
        1,
        "a crash now would finish the commit on restart"
    );
    let done = c.markers_written("tx", 30).expect("complete");
    assert_eq!(done.state, TxnState::CompleteCommit);
    c.apply(done);
    assert_eq!(
        end_v1(&c, "tx", 7, 0, true, 31),
        Ok(None),
        "a retried EndTxn succeeds"
    );
    assert_eq!(
        end_v1(&c, "tx", 7, 0, false, 31),
        Err(TxnError::InvalidTxnState)
    );
    // The next transaction starts afresh.
    add(&mut c, &p, &[("c", 0)], 40);
    assert_eq!(c.get("tx").map(|t| t.partitions.len()), Some(1));
}

#[test]
fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let old = init(&mut c, "tx", 0, 1);
    add(&mut c, &old, &[("a", 0)], 1);
    let InitOutcome::Fencing(prepare, job) = c.prepare_init("tx", 60_000, 2, || 99).expect("init")
    else {
        panic!("expected fencing");
    };
    assert_eq!(
        (prepare.state, prepare.producer_epoch, job.commit),
        (TxnState::PrepareAbort, 1, false)
    );
    c.apply(prepare);
    assert_eq!(
        c.prepare_init("tx", 60_000, 3, || 99),
        Err(TxnError::ConcurrentTransactions)
    );
    c.apply(c.markers_written("tx", 4).expect("complete"));
    let new = init(&mut c, "tx", 5, 99);
    assert_eq!(
        (new.producer_id, new.producer_epoch),
        (1, 2),
        "same id, newer epoch"
    );
    // The zombie's requests fail.
    assert_eq!(
        c.prepare_add("tx", 1, 0, &[("a".into(), 0)], &[], 6),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        end_v1(&c, "tx", 1, 0, true, 6),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        c.prepare_add("tx", 5, 2, &[("a".into(), 0)], &[], 6),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn a_transaction_left_open_past_its_timeout_is_aborted() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let p = init(&mut c, "slow", 0, 3);
    add(&mut c, &p, &[("a", 0)], 1_000);
    assert!(c.expire(60_000).is_empty());
    let expired = c.expire(61_001);
    assert_eq!(expired.len(), 1);
    let (prepare, job) = expired[0].clone();
    assert_eq!(
        (prepare.state, prepare.producer_epoch, job.commit),
        (TxnState::PrepareAbort, 1, false)
    );
    c.apply(prepare);
    assert_eq!(
        end_v1(&c, "slow", 3, 0, true, 61_002),
        Err(TxnError::ProducerFenced),
        "the hung producer is fenced"
    );
}

#[test]
fn timeouts_above_the_maximum_are_refused() {
    let c = TxnCoordinator::new(TxnConfig {
        max_timeout_ms: 1_000,
        ..TxnConfig::default()
    });
    assert_eq!(
        c.prepare_init("x", 5_000, 0, || 1),
        Err(TxnError::InvalidTransactionTimeout)
    );
}

#[test]
fn records_round_trip_and_garbage_is_an_error() {
    let r = TxnRecord {
        transactional_id: "tx-1".into(),
        producer_id: 42,
        producer_epoch: 3,
        timeout_ms: 60_000,
        state: TxnState::PrepareCommit,
        partitions: [("orders".to_string(), 0), ("orders".to_string(), 5)]
            .into_iter()
            .collect(),
        groups: ["billing".to_string()].into_iter().collect(),
        txn_start_ms: 10,
        last_update_ms: 20,
        tv2: true,
        last_producer_epoch: 2,
        next_producer_id: 43,
        prev_producer_id: 41,
    };
    let (k, v) = encode_record(&r);
    assert_eq!(decode_record(&k, &v), Ok(r));
    for cut in 0..v.len() {
        assert!(decode_record(&k, &v[..cut]).is_err(), "cut at {cut}");
    }
    let mut bad = v.clone();
    bad[2 + 8 + 2 + 4] = 99;
    assert!(decode_record(&k, &bad).is_err(), "unknown state");
}

#[test]
fn version_0_records_still_decode() {
    let r = TxnRecord {
        transactional_id: "old".into(),
        producer_id: 9,
        producer_epoch: 1,
        timeout_ms: 1_000,
        state: TxnState::CompleteCommit,
        partitions: BTreeSet::new(),
        groups: BTreeSet::new(),
        txn_start_ms: -1,
        last_update_ms: 5,
        tv2: false,
        last_producer_epoch: -1,
        next_producer_id: -1,
        prev_producer_id: -1,
    };
    let (k, mut v) = encode_record(&r);
    // A version 0 value is version 1's without the four trailing fields.
    v.truncate(v.len() - (1 + 2 + 8 + 8));
    v[..2].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(decode_record(&k, &v), Ok(r));
    v[..2].copy_from_slice(&7u16.to_be_bytes());
    assert!(
        decode_record(&k, &v).is_err(),
        "a future version is refused"
    );
}

#[test]
fn transaction_version_2_bumps_the_epoch_on_every_end() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let p = init(&mut c, "tv2", 0, 11);
    // KIP-890: a Produce v12+ batch adds its partition implicitly; before that it is not in.
    let part = ("a".to_string(), 0);
    assert_eq!(
        c.check_partition("tv2", 11, 0, &part),
        Ok(PartitionCheck::NotAdded)
    );
    add(&mut c, &p, &[("a", 0)], 1);
    assert_eq!(
        c.check_partition("tv2", 11, 0, &part),
        Ok(PartitionCheck::InTransaction)
    );
    let out = c
        .prepare_end(&end_req("tv2", 11, 0, true, true), 2, || {
            panic!("no new id needed")
        })
        .expect("end");
    assert_eq!((out.producer_id, out.producer_epoch), (11, 1));
    let (prepare, job) = out.prepared.expect("work");
    assert_eq!(
        (job.producer_epoch, prepare.last_producer_epoch),
        (1, 0),
        "markers carry the bumped epoch"
    );
    c.apply(prepare);
    // A late batch of the ended transaction (old epoch) is fenced; the partition is no
    // longer in a transaction for the new epoch.
    assert_eq!(
        c.check_partition("tv2", 11, 0, &part),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        c.check_partition("tv2", 11, 1, &part),
        Err(TxnError::ConcurrentTransactions),
        "markers still being written"
    );
    // The producer retries EndTxn with its old epoch while the markers are written...
    assert_eq!(
        c.prepare_end(&end_req("tv2", 11, 0, true, true), 3, || -1),
        Err(TxnError::ConcurrentTransactions)
    );
    let done = c.markers_written("tv2", 4).expect("complete");
    c.apply(done);
    // ...and after: the same answer as the first time.
    let again = c
        .prepare_end(&end_req("tv2", 11, 0, true, true), 5, || -1)
        .expect("retry");
    assert_eq!(
        (again.prepared, again.producer_id, again.producer_epoch),
        (None, 11, 1)
    );
    assert_eq!(
        c.prepare_end(&end_req("tv2", 11, 0, false, true), 5, || -1),
        Err(TxnError::InvalidTxnState),
        "an abort retry of a commit"
    );
    assert_eq!(
        c.check_partition("tv2", 11, 1, &part),
        Ok(PartitionCheck::NotAdded),
        "the next transaction starts empty"
    );
}

#[test]
fn transaction_version_2_moves_to_a_new_producer_id_at_the_last_epoch() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut p = init(&mut c, "wrap", 0, 20);
    p.producer_epoch = i16::MAX - 1;
    c.apply(p.clone());
    add(&mut c, &p, &[("a", 0)], 1);
    let out = c
        .prepare_end(&end_req("wrap", 20, i16::MAX - 1, false, true), 2, || 21)
        .expect("end");
    assert_eq!((out.producer_id, out.producer_epoch), (21, 0));
    let (prepare, job) = out.prepared.expect("work");
    assert_eq!((job.producer_id, job.producer_epoch), (20, i16::MAX));
    c.apply(prepare);
    let done = c.markers_written("wrap", 3).expect("complete");
    assert_eq!(
        (done.producer_id, done.producer_epoch, done.prev_producer_id),
        (21, 0, 20)
    );
    c.apply(done);
    // A retry with the old id and epoch gets the new id again.
    let again = c
        .prepare_end(&end_req("wrap", 20, i16::MAX - 1, false, true), 4, || -1)
        .expect("retry");
    assert_eq!((again.producer_id, again.producer_epoch), (21, 0));
    // The new id works for the next transaction.
    assert_eq!(
        c.check_partition("wrap", 21, 0, &("a".to_string(), 0)),
        Ok(PartitionCheck::NotAdded)
    );
}
