//! Share groups (KIP-932) over the raw protocol, for what a client library never sends: share
//! session errors (unknown session, wrong epoch, acknowledgements when opening), an
//! acknowledgement of a record the member does not hold, an unknown topic id, and that every
//! ShareFetch partition carries a non-null record set. Also the advertised versions, the group
//! settings on resource type GROUP, ShareGroupDescribe, ListGroups and DeleteGroups.

mod support;

use kafka_protocol::messages::share_fetch_request::{self, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::share_fetch_response::PartitionData;
use kafka_protocol::messages::{
    share_acknowledge_request, ApiVersionsRequest, DeleteGroupsRequest, GroupId, ListGroupsRequest,
    ShareAcknowledgeRequest, ShareFetchRequest, ShareFetchResponse, ShareGroupDescribeRequest,
    ShareGroupHeartbeatRequest,
};
use kafka_protocol::protocol::StrBytes;
use support::{RawClient, TestBroker};

const GROUP: &str = "raw-share";
const MEMBER: &str = "member-1";
const TOPIC: &str = "sq";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Acknowledgement batches: (first offset, last offset, type).
type Acks = Vec<(i64, i64, i8)>;

/// A ShareFetch of `partitions` (each with its acknowledgement batches) at `epoch`.
fn share_fetch(
    epoch: i32,
    topic_id: uuid::Uuid,
    partitions: Vec<(i32, Acks)>,
    max_records: i32,
) -> ShareFetchRequest {
    let partitions = partitions
        .into_iter()
        .map(|(p, acks)| {
            share_fetch_request::FetchPartition::default()
                .with_partition_index(p)
                .with_acknowledgement_batches(
                    acks.into_iter()
                        .map(|(first, last, t)| {
                            share_fetch_request::AcknowledgementBatch::default()
                                .with_first_offset(first)
                                .with_last_offset(last)
                                .with_acknowledge_types(vec![t])
                        })
                        .collect(),
                )
        })
        .collect();
    ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(GROUP))))
        .with_member_id(Some(s(MEMBER)))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(100)
        .with_max_bytes(1 << 20)
        .with_max_records(max_records)
        .with_batch_size(max_records)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(partitions)])
}

fn share_ack(
    epoch: i32,
    topic_id: uuid::Uuid,
    first: i64,
    last: i64,
    t: i8,
) -> ShareAcknowledgeRequest {
    ShareAcknowledgeRequest::default()
        .with_group_id(Some(GroupId(s(GROUP))))
        .with_member_id(Some(s(MEMBER)))
        .with_share_session_epoch(epoch)
        .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![
                share_acknowledge_request::AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(vec![
                        share_acknowledge_request::AcknowledgementBatch::default()
                            .with_first_offset(first)
                            .with_last_offset(last)
                            .with_acknowledge_types(vec![t]),
                    ]),
            ])])
}

/// Every partition of the response, checking that none has a null record set.
fn partitions(r: &ShareFetchResponse) -> Vec<&PartitionData> {
    let all: Vec<&PartitionData> = r.responses.iter().flat_map(|t| &t.partitions).collect();
    assert!(
        all.iter().all(|p| p.records.is_some()),
        "a null record set: {r:?}"
    );
    all
}

/// (first, last, delivery count) of each acquired range of partition 0.
fn acquired(r: &ShareFetchResponse) -> Vec<(i64, i64, i16)> {
    partitions(r)
        .iter()
        .filter(|p| p.partition_index == 0)
        .flat_map(|p| &p.acquired_records)
        .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
        .collect()
}

fn setup(c: &mut RawClient) -> uuid::Uuid {
    // Auto-created with one partition.
    let topic_id = c.produce_to_new_topic(TOPIC, &["a", "b", "c", "d", "e", "f"]);
    assert_eq!(
        c.set_share_group_config(GROUP, "share.auto.offset.reset", "earliest"),
        0
    );
    assert_eq!(
        c.set_share_group_config(GROUP, "share.delivery.count.limit", "0"),
        40,
        "INVALID_CONFIG"
    );
    topic_id
}

#[test]
fn share_sessions_acknowledgements_and_errors_over_the_raw_protocol() {
    let mut broker = TestBroker::start();
    let mut c = RawClient::connect(&broker.addr);
    let versions = c.call(3, &ApiVersionsRequest::default());
    for key in [76, 77, 78, 79] {
        let v = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key)
            .unwrap_or_else(|| panic!("API {key} advertised"));
        assert_eq!((v.min_version, v.max_version), (1, 1), "API {key}");
    }
    let topic_id = setup(&mut c);

    let join = c.join_share_group(GROUP, MEMBER, TOPIC);
    assert_eq!(join.error_code, 0, "{join:?}");
    assert!(join.member_epoch > 0 && join.heartbeat_interval_ms > 0);
    let assignment = join.assignment.expect("an assignment on joining");
    assert_eq!(assignment.topic_partitions[0].topic_id, topic_id);
    assert_eq!(assignment.topic_partitions[0].partitions, vec![0]);

    // No session yet, acknowledgements when opening one: whole-request errors.
    let r = c.call(1, &share_fetch(1, topic_id, vec![(0, vec![])], 2));
    assert_eq!(r.error_code, 122, "SHARE_SESSION_NOT_FOUND");
    let r = c.call(1, &share_fetch(0, topic_id, vec![(0, vec![(0, 0, 1)])], 2));
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");

    // Someone not in the group gets a session but no records.
    let mut stranger = share_fetch(0, topic_id, vec![(0, vec![])], 2);
    stranger.member_id = Some(s("stranger"));
    let r = c.call(1, &stranger);
    assert_eq!((r.error_code, acquired(&r)), (0, vec![]));

    // Epoch 0 opens the session and acquires the first two records.
    let r = c.call(1, &share_fetch(0, topic_id, vec![(0, vec![])], 2));
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(acquired(&r), vec![(0, 1, 1)]);
    assert!(partitions(&r)[0]
        .records
        .as_ref()
        .is_some_and(|b| !b.is_empty()));
    assert_eq!(r.acquisition_lock_timeout_ms, 30_000);

    let r = c.call(1, &share_fetch(5, topic_id, vec![], 2));
    assert_eq!(r.error_code, 123, "INVALID_SHARE_SESSION_EPOCH");

    // Acknowledging a record not acquired changes nothing and says so, per partition.
    let a = c.call(1, &share_ack(1, topic_id, 3, 3, 1));
    assert_eq!(a.error_code, 0);
    assert_eq!(
        a.responses[0].partitions[0].error_code, 121,
        "INVALID_RECORD_STATE"
    );

    // Epoch 2: accept 0..1 on the fetch, which acquires 2..3; the acknowledgement is echoed.
    let r = c.call(1, &share_fetch(2, topic_id, vec![(0, vec![(0, 1, 1)])], 2));
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(partitions(&r)[0].acknowledge_error_code, 0);
    assert_eq!(acquired(&r), vec![(2, 3, 1)]);
    // Epoch 3: acknowledging 0 again (already accepted) is refused; 4..5 are acquired.
    let r = c.call(1, &share_fetch(3, topic_id, vec![(0, vec![(0, 0, 1)])], 2));
    assert_eq!(partitions(&r)[0].acknowledge_error_code, 121, "{r:?}");
    assert_eq!(acquired(&r), vec![(4, 5, 1)]);
    // Epoch 4: releasing 2..3 makes them available again, with their delivery counted.
    let r = c.call(1, &share_fetch(4, topic_id, vec![(0, vec![(2, 3, 2)])], 2));
    assert_eq!(partitions(&r)[0].acknowledge_error_code, 0);
    assert_eq!(
        acquired(&r),
        vec![(2, 3, 2)],
        "released records come back, counted"
    );

    // An unknown topic id in the session: that partition's error, still a record set.
    let unknown = uuid::Uuid::from_u128(42);
    let mut req = share_fetch(5, unknown, vec![(0, vec![])], 2);
    req.forgotten_topics_data = vec![ForgottenTopic::default()
        .with_topic_id(topic_id)
        .with_partitions(vec![0])];
    let r = c.call(1, &req);
    assert_eq!(r.error_code, 0);
    let ps = partitions(&r);
    assert_eq!(r.responses[0].topic_id, unknown);
    assert_eq!(ps[0].error_code, 100, "UNKNOWN_TOPIC_ID");

    let described = c.call(
        1,
        &ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]),
    );
    let g = &described.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!(g.members[0].member_id.as_str(), MEMBER);
    let t = &g.members[0].assignment.topic_partitions[0];
    assert_eq!((t.topic_id, t.topic_name.as_str()), (topic_id, TOPIC));

    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(GROUP))]);
    assert_eq!(
        c.call(2, &delete).results[0].error_code,
        68,
        "NON_EMPTY_GROUP"
    );
    let listed = c.call(5, &ListGroupsRequest::default());
    assert!(
        listed.groups.iter().any(|g| g.group_id.as_str() == GROUP
            && (g.group_type.as_str(), g.group_state.as_str()) == ("share", "Stable")),
        "{listed:?}"
    );

    // Epoch -1 closes the session (with its last acknowledgement); it is gone afterwards.
    let a = c.call(1, &share_ack(-1, topic_id, 2, 3, 1));
    assert_eq!(a.error_code, 0);
    let r = c.call(1, &share_fetch(7, topic_id, vec![], 2));
    assert_eq!(r.error_code, 122, "SHARE_SESSION_NOT_FOUND after close");
    let leave = c.call(
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(MEMBER))
            .with_member_epoch(-1),
    );
    assert_eq!((leave.error_code, leave.member_epoch), (0, -1));

    // DeleteGroups drops an empty share group, durably: not even a restart brings it back.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(GROUP))]);
    assert_eq!(c.call(2, &delete).results[0].error_code, 0);
    broker.restart();
    let mut c = RawClient::connect(&broker.addr);
    let describe = ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]);
    assert_eq!(
        c.call(1, &describe).groups[0].error_code,
        69,
        "GROUP_ID_NOT_FOUND"
    );
}

/// RENEW (acknowledgement type 4, which librdkafka 2.16 does not send) extends a held
/// record's acquisition lock: past the original deadline another member still cannot take it,
/// and the holder can still accept it.
#[test]
fn renew_extends_the_acquisition_lock() {
    let broker = TestBroker::start();
    let mut c = RawClient::connect(&broker.addr);
    let topic_id = setup(&mut c);
    assert_eq!(
        c.set_share_group_config(GROUP, "share.record.lock.duration.ms", "4000"),
        0
    );
    assert_eq!(c.join_share_group(GROUP, MEMBER, TOPIC).error_code, 0);
    assert_eq!(c.join_share_group(GROUP, "member-2", TOPIC).error_code, 0);

    let r = c.call(1, &share_fetch(0, topic_id, vec![(0, vec![])], 2));
    assert_eq!(acquired(&r), vec![(0, 1, 1)], "{r:?}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let a = c.call(1, &share_ack(1, topic_id, 0, 1, 4));
    assert_eq!(
        (a.error_code, a.responses[0].partitions[0].error_code),
        (0, 0),
        "{a:?}"
    );
    // Past the first lock's deadline (4 s), within the renewed one (about 6.5 s).
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut other = share_fetch(0, topic_id, vec![(0, vec![])], 10);
    other.member_id = Some(s("member-2"));
    let r = c.call(1, &other);
    assert_eq!(
        acquired(&r),
        vec![(2, 5, 1)],
        "the renewed records stay held: {r:?}"
    );
    let a = c.call(1, &share_ack(2, topic_id, 0, 1, 1));
    assert_eq!(
        a.responses[0].partitions[0].error_code, 0,
        "still the holder's to accept"
    );
}

/// `--group-share-max-groups` and `--group-share-max-size` bound what clients can create:
/// past either, a join gets GROUP_MAX_SIZE_REACHED and nothing is created.
#[test]
fn share_group_limits_are_settings() {
    let broker = TestBroker::start_with(&[
        "--group-share-max-groups",
        "2",
        "--group-share-max-size",
        "1",
    ]);
    let mut c = RawClient::connect(&broker.addr);
    setup(&mut c);
    assert_eq!(c.join_share_group("g1", "m1", TOPIC).error_code, 0);
    assert_eq!(
        c.join_share_group("g1", "m2", TOPIC).error_code,
        81,
        "one member per group"
    );
    assert_eq!(c.join_share_group("g2", "m1", TOPIC).error_code, 0);
    // setup's group settings created no group: g1 and g2 are the two.
    assert_eq!(
        c.join_share_group("g3", "m1", TOPIC).error_code,
        81,
        "two groups at most"
    );
}
