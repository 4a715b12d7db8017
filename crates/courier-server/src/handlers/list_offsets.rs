//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or by timestamp.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::error_codes;
use crate::handlers::metadata::LEADER_EPOCH;
use crate::listener::Context;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// Handles one ListOffsets request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let isolation_level = req.isolation_level;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.topics.get(t.name.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        // leader_epoch exists from v4; older versions must leave the default.
                        .with_leader_epoch(if version >= 4 { LEADER_EPOCH } else { -1 });
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        r.error_code = ResponseError::UnknownTopicOrPartition.code();
                        return r;
                    };
                    if p.current_leader_epoch > LEADER_EPOCH {
                        r.error_code = ResponseError::UnknownLeaderEpoch.code();
                        return r;
                    }
                    // Consumers see only offsets below the high watermark, and read_committed
                    // ones only below the last stable offset.
                    let hw = if isolation_level == 1 {
                        partition.last_stable_offset() as i64
                    } else {
                        partition.high_watermark() as i64
                    };
                    let found = match p.timestamp {
                        LATEST | LATEST_TIERED => Ok(Some((hw, -1))),
                        EARLIEST | EARLIEST_LOCAL => {
                            Ok(Some((partition.log_start_offset() as i64, -1)))
                        }
                        MAX_TIMESTAMP => partition
                            .with_log(|log| Ok(log.max_timestamp_offset()?))
                            .map(|o| {
                                o.map(|(off, ts)| (off as i64, ts))
                                    .filter(|(off, _)| *off < hw)
                            }),
                        ts if ts >= 0 => partition
                            .with_log(|log| Ok(log.offset_for_timestamp(ts)?))
                            .map(|o| {
                                o.map(|(off, ts)| (off as i64, ts))
                                    .filter(|(off, _)| *off < hw)
                            }),
                        _ => {
                            r.error_code = ResponseError::InvalidRequest.code();
                            return r;
                        }
                    };
                    match found {
                        Ok(Some((offset, ts))) => {
                            r.offset = offset;
                            r.timestamp = ts;
                        }
                        Ok(None) => {}
                        Err(e) => r.error_code = error_codes::code(&e),
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
