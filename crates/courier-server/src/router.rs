//! The router: a `match` on the request type, one handler file per Kafka API.

use std::sync::Arc;

use courier_protocol::DecodedRequest;
use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

use crate::handlers::*;
use crate::listener::Context;
use crate::reply::Reply;

/// The request header's client id, empty when absent.
fn client_id(header: &RequestHeader) -> String {
    header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// Sends a decoded request to its handler.
pub async fn route(ctx: &Arc<Context>, req: DecodedRequest, peer: std::net::SocketAddr) -> Reply {
    let version = req.header.request_api_version;
    match req.body {
        RequestKind::ApiVersions(r) => {
            Reply::now(ResponseKind::ApiVersions(api_versions::handle(ctx, r)))
        }
        RequestKind::Metadata(r) => {
            Reply::now(ResponseKind::Metadata(metadata::handle(ctx, version, r)))
        }
        RequestKind::Produce(r) => produce::handle(ctx, version, r).await,
        RequestKind::Fetch(r) => fetch::handle(ctx, version, r),
        RequestKind::ListOffsets(r) => Reply::now(ResponseKind::ListOffsets(list_offsets::handle(
            ctx, version, r,
        ))),
        RequestKind::CreateTopics(r) => Reply::now(ResponseKind::CreateTopics(
            create_topics::handle(ctx, version, r),
        )),
        RequestKind::DeleteTopics(r) => Reply::now(ResponseKind::DeleteTopics(
            delete_topics::handle(ctx, version, r),
        )),
        RequestKind::CreatePartitions(r) => Reply::now(ResponseKind::CreatePartitions(
            create_partitions::handle(ctx, r),
        )),
        RequestKind::DescribeConfigs(r) => Reply::now(ResponseKind::DescribeConfigs(
            describe_configs::handle(ctx, version, r),
        )),
        // Awaited before the next request is read: a later request sees the change.
        RequestKind::IncrementalAlterConfigs(r) => Reply::now(
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(ctx, r).await),
        ),
        RequestKind::AlterConfigs(r) => {
            Reply::now(ResponseKind::AlterConfigs(alter_configs::handle(ctx, r)))
        }
        RequestKind::DeleteRecords(r) => delete_records::handle(ctx, r),
        RequestKind::InitProducerId(r) => init_producer_id::handle(ctx, r),
        RequestKind::AddPartitionsToTxn(r) => add_partitions_to_txn::handle(ctx, version, r),
        RequestKind::AddOffsetsToTxn(r) => add_offsets_to_txn::handle(ctx, version, r),
        RequestKind::EndTxn(r) => end_txn::handle(ctx, version, r),
        RequestKind::TxnOffsetCommit(r) => txn_offset_commit::handle(ctx, version, r),
        RequestKind::DescribeTransactions(r) => Reply::now(ResponseKind::DescribeTransactions(
            describe_transactions::handle(ctx, r),
        )),
        RequestKind::DescribeProducers(r) => Reply::now(ResponseKind::DescribeProducers(
            describe_producers::handle(ctx, r),
        )),
        RequestKind::ListTransactions(r) => Reply::now(ResponseKind::ListTransactions(
            list_transactions::handle(ctx, r),
        )),
        RequestKind::FindCoordinator(r) => Reply::now(ResponseKind::FindCoordinator(
            find_coordinator::handle(ctx, version, r),
        )),
        RequestKind::JoinGroup(r) => {
            let client_id = client_id(&req.header);
            join_group::handle(ctx, version, client_id, peer, r)
        }
        RequestKind::SyncGroup(r) => sync_group::handle(ctx, version, r),
        RequestKind::Heartbeat(r) => Reply::now(ResponseKind::Heartbeat(heartbeat::handle(ctx, r))),
        RequestKind::LeaveGroup(r) => Reply::now(ResponseKind::LeaveGroup(leave_group::handle(
            ctx, version, r,
        ))),
        RequestKind::OffsetCommit(r) => offset_commit::handle(ctx, r),
        RequestKind::OffsetFetch(r) => Reply::now(ResponseKind::OffsetFetch(offset_fetch::handle(
            ctx, version, r,
        ))),
        RequestKind::ListGroups(r) => Reply::now(ResponseKind::ListGroups(list_groups::handle(
            ctx, version, r,
        ))),
        RequestKind::DescribeGroups(r) => Reply::now(ResponseKind::DescribeGroups(
            describe_groups::handle(ctx, version, r),
        )),
        RequestKind::DeleteGroups(r) => delete_groups::handle(ctx, r),
        RequestKind::OffsetDelete(r) => offset_delete::handle(ctx, r),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let client_id = client_id(&req.header);
            Reply::now(ResponseKind::ConsumerGroupHeartbeat(
                consumer_group_heartbeat::handle(ctx, client_id, peer, r),
            ))
        }
        RequestKind::ConsumerGroupDescribe(r) => Reply::now(ResponseKind::ConsumerGroupDescribe(
            consumer_group_describe::handle(ctx, r),
        )),
        RequestKind::ShareGroupHeartbeat(r) => {
            let client_id = client_id(&req.header);
            let ctx = Arc::clone(ctx);
            Reply::later(async move {
                ResponseKind::ShareGroupHeartbeat(
                    share_group_heartbeat::handle(ctx, client_id, peer, r).await,
                )
            })
        }
        RequestKind::ShareGroupDescribe(r) => Reply::now(ResponseKind::ShareGroupDescribe(
            share_group_describe::handle(ctx, r),
        )),
        RequestKind::DescribeShareGroupOffsets(r) => Reply::now(
            ResponseKind::DescribeShareGroupOffsets(describe_share_group_offsets::handle(ctx, r)),
        ),
        RequestKind::ShareFetch(r) => share_fetch::handle(ctx, r),
        RequestKind::ShareAcknowledge(r) => {
            let ctx = Arc::clone(ctx);
            Reply::later(async move {
                ResponseKind::ShareAcknowledge(share_acknowledge::handle(ctx, r).await)
            })
        }
        other => {
            // decode_request only yields the APIs listed in courier_protocol::versions, each of
            // which has an arm above; reaching this is a bug, reported instead of panicking, and
            // the connection is closed so the client fails fast instead of waiting forever.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a served API");
            Reply::Close
        }
    }
}
