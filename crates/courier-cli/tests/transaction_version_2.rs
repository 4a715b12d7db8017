//! KIP-890 on the wire. No client on this machine speaks transaction version 2 yet
//! (librdkafka 2.16 and kafka-python 3.0 stop at EndTxn v3/v4), so these tests drive the
//! protocol with the raw client, request by request, the way Kafka 4's Java producer does:
//!
//! - part 2 (transaction version 2): Produce v12+ adds its partition to the transaction
//!   without AddPartitionsToTxn, TxnOffsetCommit v5 adds its group without AddOffsetsToTxn,
//!   and EndTxn v5 bumps the epoch at every end, so a late batch of a finished transaction is
//!   fenced instead of joining the next one; a retried EndTxn gets the first answer again;
//! - part 1 (verification, every version): a transactional batch for a partition that is not
//!   in the producer's ongoing transaction is refused with INVALID_TXN_STATE and leaves nothing
//!   in the log, so no transaction can hang the last stable offset;
//! - `--transaction-version 1` turns part 2 off and says so in ApiVersions.

mod support;

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, ApiVersionsRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProduceRequest, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use support::kafka::*;
use support::{RawClient, TestBroker};

const TOPIC: &str = "tv2";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn init(raw: &mut RawClient, id: &str) -> (i64, i16) {
    let resp = raw.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(resp.error_code, 0, "InitProducerId");
    (resp.producer_id.0, resp.producer_epoch)
}

/// One transactional batch of `values` to partition `p`; returns (error code, base offset).
fn produce(
    raw: &mut RawClient,
    version: i16,
    id: &str,
    p: i32,
    (pid, epoch, seq): (i64, i16, i32),
    values: &[&str],
) -> (i16, i64) {
    let records: Vec<_> = values
        .iter()
        .map(|v| {
            courier_storage::batch_builder::NewRecord::new(1_700_000_000_000, b"k", v.as_bytes())
        })
        .collect();
    let batch = courier_storage::batch_builder::transactional_batch(pid, epoch, seq, &records);
    let resp = raw.call(
        version,
        &ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(batch.into()))])]),
    );
    let r = &resp.responses[0].partition_responses[0];
    (r.error_code, r.base_offset)
}

/// EndTxn; returns (error code, producer id, epoch) — the id and epoch only at v5+.
fn end(
    raw: &mut RawClient,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> (i16, i64, i16) {
    let resp = raw.call(
        version,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit),
    );
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

fn txn_offset_commit(
    raw: &mut RawClient,
    version: i16,
    id: &str,
    group: &str,
    pid: i64,
    epoch: i16,
    offset: i64,
) -> i16 {
    let resp = raw.call(
        version,
        &TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_member_id(s(""))
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)])]),
    );
    resp.topics[0].partitions[0].error_code
}

/// The finalized transaction.version level ApiVersions v3 reports.
fn finalized_transaction_version(raw: &mut RawClient) -> Option<i16> {
    let resp = raw.call(
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(s("raw-test"))
            .with_client_software_version(s("1")),
    );
    let end_txn = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::EndTxn as i16)
        .expect("EndTxn advertised");
    assert!(end_txn.max_version >= 5, "EndTxn v5 served");
    resp.finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| f.max_version_level)
}

fn values_read(bootstrap: &str, isolation: &str, want: usize) -> Vec<String> {
    read_from(
        bootstrap,
        TOPIC,
        2,
        Offset::Beginning,
        want,
        Duration::from_secs(if want == usize::MAX { 3 } else { 15 }),
        &[("isolation.level", isolation)],
    )
    .into_iter()
    .map(|r| String::from_utf8(r.value.unwrap_or_default()).expect("utf-8"))
    .collect()
}

fn committed_offset(bootstrap: &str, group: &str) -> Offset {
    let c = consumer(bootstrap, &[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(TOPIC, 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("OffsetFetch");
    got.find_partition(TOPIC, 0).expect("partition").offset()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_version_2_adds_partitions_implicitly_and_bumps_the_epoch() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), TOPIC, 2).await;
    let mut raw = RawClient::connect(&broker.addr);
    assert_eq!(finalized_transaction_version(&mut raw), Some(2));
    let (pid, e0) = init(&mut raw, "tv2-a");

    // Transaction 1: Produce v12 with no AddPartitionsToTxn, offsets with no AddOffsetsToTxn.
    assert_eq!(
        produce(&mut raw, 12, "tv2-a", 0, (pid, e0, 0), &["c1", "c2"]).0,
        0
    );
    assert_eq!(
        produce(&mut raw, 12, "tv2-a", 1, (pid, e0, 0), &["c3"]).0,
        0
    );
    assert_eq!(
        txn_offset_commit(&mut raw, 5, "tv2-a", "tv2-g", pid, e0, 42),
        0
    );
    let (code, pid1, e1) = end(&mut raw, 5, "tv2-a", pid, e0, true);
    assert_eq!(
        (code, pid1, e1),
        (0, pid, e0 + 1),
        "the end bumps the epoch"
    );
    // A retry of that EndTxn (the producer lost the answer, so it still has the old epoch)
    // gets the same answer.
    assert_eq!(end(&mut raw, 5, "tv2-a", pid, e0, true), (0, pid, e0 + 1));
    assert_eq!(
        end(&mut raw, 5, "tv2-a", pid, e0, false).0,
        ResponseError::InvalidTxnState.code(),
        "an abort retry of a commit is refused"
    );

    // A late batch of transaction 1 (old epoch) cannot join transaction 2.
    let (code, _) = produce(&mut raw, 12, "tv2-a", 0, (pid, e0, 1), &["late"]);
    assert_eq!(code, ResponseError::InvalidProducerEpoch.code());

    // Transaction 2 at the new epoch (sequences restart at 0), aborted.
    assert_eq!(
        produce(&mut raw, 12, "tv2-a", 0, (pid, e1, 0), &["a1"]).0,
        0
    );
    let (code, _, e2) = end(&mut raw, 5, "tv2-a", pid, e1, false);
    assert_eq!((code, e2), (0, e1 + 1));

    // Transaction 3, committed.
    assert_eq!(
        produce(&mut raw, 12, "tv2-a", 1, (pid, e2, 0), &["c4"]).0,
        0
    );
    assert_eq!(end(&mut raw, 5, "tv2-a", pid, e2, true), (0, pid, e2 + 1));

    let bootstrap = broker.bootstrap();
    let mut committed = values_read(&bootstrap, "read_committed", usize::MAX);
    committed.sort();
    assert_eq!(committed, ["c1", "c2", "c3", "c4"]);
    let mut all = values_read(&bootstrap, "read_uncommitted", usize::MAX);
    all.sort();
    assert_eq!(
        all,
        ["a1", "c1", "c2", "c3", "c4"],
        "no late batch in the log"
    );
    assert_eq!(committed_offset(&bootstrap, "tv2-g"), Offset::Offset(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_a_partition_outside_the_transaction_is_refused() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), TOPIC, 2).await;
    let mut raw = RawClient::connect(&broker.addr);
    let (pid, epoch) = init(&mut raw, "tv1-a");

    // The classic protocol (Produce v11): the partition must be added first.
    let (code, _) = produce(&mut raw, 11, "tv1-a", 0, (pid, epoch, 0), &["orphan"]);
    assert_eq!(code, ResponseError::InvalidTxnState.code());
    let added = raw.call(
        3,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("tv1-a")))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(vec![0])]),
    );
    assert_eq!(added.error_code, 0);
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    assert_eq!(
        produce(&mut raw, 11, "tv1-a", 0, (pid, epoch, 0), &["in"]).0,
        0
    );
    // Partition 1 is still outside.
    let (code, _) = produce(&mut raw, 11, "tv1-a", 1, (pid, epoch, 0), &["orphan2"]);
    assert_eq!(code, ResponseError::InvalidTxnState.code());
    // EndTxn v4: no epoch bump.
    assert_eq!(end(&mut raw, 4, "tv1-a", pid, epoch, true).0, 0);
    // After the end, the same epoch cannot write transactionally without a new add.
    let (code, _) = produce(&mut raw, 11, "tv1-a", 0, (pid, epoch, 1), &["after"]);
    assert_eq!(code, ResponseError::InvalidTxnState.code());

    // Nothing refused reached the log, and no transaction hangs: read_committed reaches the
    // end of both partitions.
    let bootstrap = broker.bootstrap();
    let all = values_read(&bootstrap, "read_uncommitted", usize::MAX);
    assert_eq!(all, ["in"]);
    let committed = values_read(&bootstrap, "read_committed", usize::MAX);
    assert_eq!(committed, ["in"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_version_1_turns_the_implicit_add_and_the_bump_off() {
    let broker = TestBroker::start_with(&["--transaction-version", "1"]);
    create_topic(&broker.bootstrap(), TOPIC, 2).await;
    let mut raw = RawClient::connect(&broker.addr);
    assert_eq!(finalized_transaction_version(&mut raw), Some(1));
    let (pid, epoch) = init(&mut raw, "tv1-b");
    let (code, _) = produce(&mut raw, 12, "tv1-b", 0, (pid, epoch, 0), &["x"]);
    assert_eq!(
        code,
        ResponseError::InvalidTxnState.code(),
        "no implicit add"
    );
    let code = txn_offset_commit(&mut raw, 5, "tv1-b", "g", pid, epoch, 1);
    assert_eq!(
        code,
        ResponseError::InvalidTxnState.code(),
        "no implicit group add"
    );
}

#[test]
fn a_transaction_version_other_than_1_or_2_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["serve", "--transaction-version", "3", "--data-dir"])
        .arg(tempfile::tempdir().expect("tmp").path())
        .output()
        .expect("run courier");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--transaction-version must be 1 or 2"),
        "stderr: {stderr}"
    );
}
