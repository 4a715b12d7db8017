//! The API keys and versions Courier advertises in ApiVersions and accepts in requests.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

/// The intersection of three ranges: what Courier implements for an API, what the crate decodes
/// for its request type, and what it encodes for its response type.
fn range<Req: Message, Resp: Message>(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
        .intersect(&Req::VERSIONS)
        .intersect(&Resp::VERSIONS)
}

/// Every API Courier serves, with its version range, in API key order.
pub fn supported_apis() -> Vec<(ApiKey, VersionRange)> {
    let mut apis = vec![
        (
            ApiKey::DescribeProducers,
            range::<DescribeProducersRequest, DescribeProducersResponse>(0, i16::MAX),
        ),
        (
            ApiKey::AddPartitionsToTxn,
            // v4+ are broker-to-broker (KIP-890 verification); clients use 0-3.
            range::<AddPartitionsToTxnRequest, AddPartitionsToTxnResponse>(0, 3),
        ),
        (
            ApiKey::AddOffsetsToTxn,
            range::<AddOffsetsToTxnRequest, AddOffsetsToTxnResponse>(0, i16::MAX),
        ),
        (
            // v5 bumps the epoch on every EndTxn (KIP-890 part 2, transaction version 2).
            ApiKey::EndTxn,
            range::<EndTxnRequest, EndTxnResponse>(0, i16::MAX),
        ),
        (
            // v5 adds the group to the transaction implicitly (transaction version 2).
            ApiKey::TxnOffsetCommit,
            range::<TxnOffsetCommitRequest, TxnOffsetCommitResponse>(0, i16::MAX),
        ),
        (
            ApiKey::DescribeTransactions,
            range::<DescribeTransactionsRequest, DescribeTransactionsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::ListTransactions,
            range::<ListTransactionsRequest, ListTransactionsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::InitProducerId,
            range::<InitProducerIdRequest, InitProducerIdResponse>(0, i16::MAX),
        ),
        (
            ApiKey::ConsumerGroupHeartbeat,
            range::<ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse>(0, i16::MAX),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            range::<ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse>(0, i16::MAX),
        ),
        (
            // Share groups (KIP-932): librdkafka 2.16 sends v1 of these four only.
            ApiKey::ShareGroupHeartbeat,
            range::<ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse>(1, 1),
        ),
        (
            ApiKey::ShareGroupDescribe,
            range::<ShareGroupDescribeRequest, ShareGroupDescribeResponse>(1, 1),
        ),
        (
            ApiKey::ShareFetch,
            range::<ShareFetchRequest, ShareFetchResponse>(1, 1),
        ),
        (
            ApiKey::ShareAcknowledge,
            range::<ShareAcknowledgeRequest, ShareAcknowledgeResponse>(1, 1),
        ),
        (
            // The start offset of each share-partition; v0 is the crate's only version.
            ApiKey::DescribeShareGroupOffsets,
            range::<DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse>(
                0,
                i16::MAX,
            ),
        ),
        (
            ApiKey::OffsetCommit,
            range::<OffsetCommitRequest, OffsetCommitResponse>(2, i16::MAX),
        ),
        (
            ApiKey::OffsetFetch,
            range::<OffsetFetchRequest, OffsetFetchResponse>(1, i16::MAX),
        ),
        (
            ApiKey::FindCoordinator,
            range::<FindCoordinatorRequest, FindCoordinatorResponse>(0, i16::MAX),
        ),
        (
            ApiKey::JoinGroup,
            range::<JoinGroupRequest, JoinGroupResponse>(0, i16::MAX),
        ),
        (
            ApiKey::Heartbeat,
            range::<HeartbeatRequest, HeartbeatResponse>(0, i16::MAX),
        ),
        (
            ApiKey::LeaveGroup,
            range::<LeaveGroupRequest, LeaveGroupResponse>(0, i16::MAX),
        ),
        (
            ApiKey::SyncGroup,
            range::<SyncGroupRequest, SyncGroupResponse>(0, i16::MAX),
        ),
        (
            ApiKey::DescribeGroups,
            range::<DescribeGroupsRequest, DescribeGroupsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::ListGroups,
            range::<ListGroupsRequest, ListGroupsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::DeleteGroups,
            range::<DeleteGroupsRequest, DeleteGroupsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::OffsetDelete,
            range::<OffsetDeleteRequest, OffsetDeleteResponse>(0, i16::MAX),
        ),
        (
            ApiKey::Produce,
            range::<ProduceRequest, ProduceResponse>(3, i16::MAX),
        ),
        (
            ApiKey::Fetch,
            range::<FetchRequest, FetchResponse>(4, i16::MAX),
        ),
        (
            ApiKey::ListOffsets,
            range::<ListOffsetsRequest, ListOffsetsResponse>(1, i16::MAX),
        ),
        (
            ApiKey::Metadata,
            range::<MetadataRequest, MetadataResponse>(0, i16::MAX),
        ),
        (
            ApiKey::ApiVersions,
            range::<ApiVersionsRequest, ApiVersionsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::CreateTopics,
            range::<CreateTopicsRequest, CreateTopicsResponse>(2, i16::MAX),
        ),
        (
            ApiKey::DeleteTopics,
            range::<DeleteTopicsRequest, DeleteTopicsResponse>(1, i16::MAX),
        ),
        (
            ApiKey::DeleteRecords,
            range::<DeleteRecordsRequest, DeleteRecordsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::DescribeConfigs,
            range::<DescribeConfigsRequest, DescribeConfigsResponse>(1, i16::MAX),
        ),
        (
            ApiKey::AlterConfigs,
            range::<AlterConfigsRequest, AlterConfigsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::CreatePartitions,
            range::<CreatePartitionsRequest, CreatePartitionsResponse>(0, i16::MAX),
        ),
        (
            ApiKey::IncrementalAlterConfigs,
            range::<IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse>(0, i16::MAX),
        ),
    ];
    apis.sort_by_key(|(key, _)| *key as i16);
    apis
}

/// The version range served for `api_key`, or `None` when Courier does not serve it.
pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
    supported_apis()
        .into_iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_is_non_empty_and_within_the_crates_types() {
        for (key, r) in supported_apis() {
            assert!(!r.is_empty(), "{key:?} has an empty range {r}");
            assert!(r.max <= key.valid_versions().max, "{key:?}");
        }
    }

    #[test]
    fn init_producer_id_style_mismatch_is_clamped_to_the_response() {
        // ApiVersions' request and response ranges agree; the intersection must equal them.
        let r = supported_versions(ApiKey::ApiVersions).expect("served");
        assert_eq!(
            r,
            ApiVersionsResponse::VERSIONS.intersect(&ApiVersionsRequest::VERSIONS)
        );
        assert!(supported_versions(ApiKey::SaslHandshake).is_none());
    }
}
