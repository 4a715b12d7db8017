//! Stale members cannot commit: over the raw protocol, commits from an unknown member, an old
//! generation, a replaced static member, or a stale KIP-848 member epoch are refused with
//! Kafka's error codes, and the committed offset stays what the live member wrote.

mod support;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use support::kafka::*;
use support::{RawClient, TestBroker};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(c: &mut RawClient, group: &str, member: &str, instance: Option<&str>) -> JoinGroupResponse {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(bytes::Bytes::from_static(b"\0\0"))]);
    let r = c.call(9, &req);
    if r.error_code == 79 {
        return join(c, group, r.member_id.as_str(), instance);
    }
    r
}

fn commit(c: &mut RawClient, group: &str, member: &str, generation: i32, offset: i64) -> i16 {
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s("f")))
        .with_partitions(vec![
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_committed_offset(offset),
        ]);
    let r = c.call(
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![t]),
    );
    r.topics[0].partitions[0].error_code
}

fn committed(c: &mut RawClient, group: &str) -> i64 {
    let t = offset_fetch_request::OffsetFetchRequestTopic::default()
        .with_name(TopicName(s("f")))
        .with_partition_indexes(vec![0]);
    let r = c.call(
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![t])),
    );
    r.topics[0].partitions[0].committed_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_members_cannot_commit() {
    let broker = TestBroker::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    create_topic(&broker.bootstrap(), "f", 1).await;
    let mut c = RawClient::connect(&broker.addr);

    let j = join(&mut c, "fenced", "", None);
    assert_eq!(j.error_code, 0);
    let (member, generation) = (j.member_id.to_string(), j.generation_id);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("fenced")))
        .with_generation_id(generation)
        .with_member_id(s(&member));
    assert_eq!(c.call(5, &sync).error_code, 0);
    assert_eq!(commit(&mut c, "fenced", &member, generation, 10), 0);
    assert_eq!(
        commit(&mut c, "fenced", &member, generation - 1, 99),
        22,
        "ILLEGAL_GENERATION"
    );
    assert_eq!(
        commit(&mut c, "fenced", "intruder", generation, 99),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(
        commit(&mut c, "fenced", "", -1, 99),
        25,
        "a simple commit to a group with members"
    );
    assert_eq!(
        committed(&mut c, "fenced"),
        10,
        "only the live member's commit stands"
    );

    // Static membership: a new process with the same instance id fences the old one.
    let old = join(&mut c, "static", "", Some("host-a"));
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("static")))
        .with_generation_id(old.generation_id)
        .with_member_id(old.member_id.clone())
        .with_group_instance_id(Some(s("host-a")));
    assert_eq!(c.call(5, &sync).error_code, 0);
    let new = join(&mut c, "static", "", Some("host-a"));
    assert_eq!(new.error_code, 0);
    assert_ne!(new.member_id, old.member_id);
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("static")))
        .with_generation_id(old.generation_id)
        .with_member_id(old.member_id.clone())
        .with_group_instance_id(Some(s("host-a")));
    assert_eq!(c.call(4, &hb).error_code, 82, "FENCED_INSTANCE_ID");

    // KIP-848: a commit with a stale member epoch.
    let hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("kip848")))
        .with_member_id(s("m-1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("f"))]));
    let r = c.call(1, &hb);
    assert_eq!(r.error_code, 0);
    let epoch = r.member_epoch;
    assert!(epoch > 0);
    assert_eq!(commit(&mut c, "kip848", "m-1", epoch, 5), 0);
    assert_eq!(
        commit(&mut c, "kip848", "m-1", epoch - 1, 6),
        113,
        "STALE_MEMBER_EPOCH"
    );
    let stale_hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("kip848")))
        .with_member_id(s("m-1"))
        .with_member_epoch(epoch + 5);
    assert_eq!(c.call(1, &stale_hb).error_code, 110, "FENCED_MEMBER_EPOCH");
    assert_eq!(committed(&mut c, "kip848"), 5);
}
