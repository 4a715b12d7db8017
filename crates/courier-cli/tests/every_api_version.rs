//! Every served API answers at every advertised version with a response that decodes at that
//! version. A field set outside its versions makes the encoder refuse and the connection drop;
//! this caught ListOffsets (leader_epoch) and CreateTopics (v5+ fields) doing that.

mod support;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use support::kafka::*;
use support::{RawClient, TestBroker};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn versions<R: Request>() -> std::ops::RangeInclusive<i16> {
    let key = ApiKey::try_from(R::KEY).expect("key");
    let r = courier_protocol::supported_versions(key).expect("served");
    r.min..=r.max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_version_of_every_api_answers() {
    let broker = TestBroker::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    create_topic(&broker.bootstrap(), "v", 1).await;
    let mut c = RawClient::connect(&broker.addr);
    let md = c.call(12, &MetadataRequest::default().with_topics(None));
    let topic_id = md
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some("v"))
        .expect("v")
        .topic_id;

    for v in versions::<ApiVersionsRequest>() {
        let r = c.call(v, &ApiVersionsRequest::default());
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
    }
    for v in versions::<MetadataRequest>() {
        let t = metadata_request::MetadataRequestTopic::default().with_name(Some(name("v")));
        let r = c.call(v, &MetadataRequest::default().with_topics(Some(vec![t])));
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
    }
    for v in versions::<ProduceRequest>() {
        let mut t = produce_request::TopicProduceData::default().with_partition_data(vec![
            produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Default::default())),
        ]);
        if v >= 13 {
            t.topic_id = topic_id;
        } else {
            t.name = name("v");
        }
        let r = c.call(
            v,
            &ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![t]),
        );
        assert_eq!(r.responses.len(), 1, "Produce v{v}");
    }
    for v in versions::<FetchRequest>() {
        let mut t = fetch_request::FetchTopic::default().with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1024),
        ]);
        if v >= 13 {
            t.topic_id = topic_id;
        } else {
            t.topic = name("v");
        }
        let r = c.call(
            v,
            &FetchRequest::default()
                .with_max_bytes(1024)
                .with_topics(vec![t])
                .with_session_epoch(-1),
        );
        assert_eq!(r.responses[0].partitions[0].error_code, 0, "Fetch v{v}");
    }
    for v in versions::<ListOffsetsRequest>() {
        let t = list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("v"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2)
            ]);
        let r = c.call(v, &ListOffsetsRequest::default().with_topics(vec![t]));
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "ListOffsets v{v}");
    }
    for v in versions::<CreateTopicsRequest>() {
        let t = create_topics_request::CreatableTopic::default()
            .with_name(name(&format!("created-{v}")))
            .with_num_partitions(1)
            .with_replication_factor(1);
        let r = c.call(
            v,
            &CreateTopicsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(5000),
        );
        assert_eq!(
            r.topics[0].error_code, 0,
            "CreateTopics v{v}: {:?}",
            r.topics[0].error_message
        );
    }
    for v in versions::<CreatePartitionsRequest>() {
        let t = create_partitions_request::CreatePartitionsTopic::default()
            .with_name(name(&format!("created-{}", 2 + v)))
            .with_count(2);
        let r = c.call(
            v,
            &CreatePartitionsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(5000),
        );
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in versions::<DescribeConfigsRequest>() {
        let res = describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("v"));
        let r = c.call(
            v,
            &DescribeConfigsRequest::default().with_resources(vec![res]),
        );
        assert_eq!(r.results[0].error_code, 0, "DescribeConfigs v{v}");
        assert!(!r.results[0].configs.is_empty());
    }
    for v in versions::<AlterConfigsRequest>() {
        let res = alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("v"));
        let r = c.call(v, &AlterConfigsRequest::default().with_resources(vec![res]));
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
    }
    for v in versions::<IncrementalAlterConfigsRequest>() {
        let res = incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("v"));
        let r = c.call(
            v,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![res]),
        );
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }
    for v in versions::<DeleteRecordsRequest>() {
        let t = delete_records_request::DeleteRecordsTopic::default()
            .with_name(name("v"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default().with_offset(0),
            ]);
        let r = c.call(
            v,
            &DeleteRecordsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(5000),
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "DeleteRecords v{v}"
        );
    }
    for v in versions::<FindCoordinatorRequest>() {
        let req = if v >= 4 {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
        };
        let r = c.call(v, &req);
        let code = if v >= 4 {
            r.coordinators[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(code, 0, "FindCoordinator v{v}");
    }
    for v in versions::<JoinGroupRequest>() {
        let group = GroupId(StrBytes::from_string(format!("group-v{v}")));
        let protocol = join_group_request::JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(bytes::Bytes::from_static(b"\0\0"));
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(group.clone())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if v >= 1 { 10_000 } else { -1 })
                .with_member_id(StrBytes::from_string(member.to_string()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![protocol.clone()])
        };
        let mut r = c.call(v, &join(""));
        if v >= 4 {
            assert_eq!(r.error_code, 79, "JoinGroup v{v}: MEMBER_ID_REQUIRED first");
            let member = r.member_id.to_string();
            r = c.call(v, &join(&member));
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{v}");
        let member = r.member_id.clone();
        let generation = r.generation_id;
        for sv in versions::<SyncGroupRequest>() {
            let mut req = SyncGroupRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(generation)
                .with_member_id(member.clone())
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(member.clone())
                        .with_assignment(bytes::Bytes::from_static(b"a")),
                ]);
            if sv >= 5 {
                req.protocol_type = Some(StrBytes::from_static_str("consumer"));
                req.protocol_name = Some(StrBytes::from_static_str("range"));
            }
            let r = c.call(sv, &req);
            assert_eq!(r.error_code, 0, "SyncGroup v{sv}");
        }
        for hv in versions::<HeartbeatRequest>() {
            let r = c.call(
                hv,
                &HeartbeatRequest::default()
                    .with_group_id(group.clone())
                    .with_generation_id(generation)
                    .with_member_id(member.clone()),
            );
            assert_eq!(r.error_code, 0, "Heartbeat v{hv}");
        }
        for ov in versions::<OffsetCommitRequest>() {
            let t = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("v"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(i64::from(ov)),
                ]);
            let r = c.call(
                ov,
                &OffsetCommitRequest::default()
                    .with_group_id(group.clone())
                    .with_generation_id_or_member_epoch(generation)
                    .with_member_id(member.clone())
                    .with_topics(vec![t]),
            );
            assert_eq!(
                r.topics[0].partitions[0].error_code, 0,
                "OffsetCommit v{ov}"
            );
        }
        for fv in versions::<OffsetFetchRequest>() {
            let r = if fv >= 8 {
                let g = offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group.clone())
                    .with_topics(None);
                let r = c.call(fv, &OffsetFetchRequest::default().with_groups(vec![g]));
                r.groups[0].topics[0].partitions[0].committed_offset
            } else {
                let t = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name("v"))
                    .with_partition_indexes(vec![0]);
                let r = c.call(
                    fv,
                    &OffsetFetchRequest::default()
                        .with_group_id(group.clone())
                        .with_topics(Some(vec![t])),
                );
                r.topics[0].partitions[0].committed_offset
            };
            assert_eq!(
                r,
                i64::from(versions::<OffsetCommitRequest>().max().unwrap_or(0)),
                "OffsetFetch v{fv}"
            );
        }
        for lv in versions::<ListGroupsRequest>() {
            let r = c.call(lv, &ListGroupsRequest::default());
            assert!(
                r.groups.iter().any(|g| g.group_id == group),
                "ListGroups v{lv}"
            );
        }
        for dv in versions::<DescribeGroupsRequest>() {
            let r = c.call(
                dv,
                &DescribeGroupsRequest::default().with_groups(vec![group.clone()]),
            );
            assert_eq!(r.groups[0].members.len(), 1, "DescribeGroups v{dv}");
        }
        let leave = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(member.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_member_id(member.clone())
        };
        let lv = v.min(*versions::<LeaveGroupRequest>().end());
        let r = c.call(lv, &leave);
        assert_eq!(r.error_code, 0, "LeaveGroup v{lv}");
        let dv = v.min(*versions::<DeleteGroupsRequest>().end());
        let r = c.call(
            dv,
            &DeleteGroupsRequest::default().with_groups_names(vec![group.clone()]),
        );
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{dv}");
        let od = OffsetDeleteRequest::default()
            .with_group_id(group.clone())
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(name("v"))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default(),
                    ]),
            ]);
        let r = c.call(0, &od);
        assert_eq!(
            r.error_code, 69,
            "OffsetDelete on a deleted group: GROUP_ID_NOT_FOUND"
        );
    }
    let mut last_pid = -1;
    for v in versions::<InitProducerIdRequest>() {
        let r = c.call(
            v,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        );
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 > last_pid, "a new producer id each time");
        last_pid = r.producer_id.0;
    }
    for v in versions::<ConsumerGroupHeartbeatRequest>() {
        let r = c.call(
            v,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(format!("cg-v{v}"))))
                .with_member_id(StrBytes::from_string(format!("member-{v}")))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![name("v")])),
        );
        assert_eq!(r.error_code, 0, "ConsumerGroupHeartbeat v{v}");
        let d = c.call(
            v,
            &ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(StrBytes::from_string(format!("cg-v{v}")))]),
        );
        assert_eq!(d.groups[0].members.len(), 1, "ConsumerGroupDescribe v{v}");
    }
    for v in versions::<DeleteTopicsRequest>() {
        let topic = format!("created-{}", 2 + (v - 1) % 6);
        let req = if v >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name(&topic)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        };
        let r = c.call(v, &req.with_timeout_ms(5000));
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v} ({topic})");
    }
}
