//! DeleteRecords: move a partition's log start offset forward (durably).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one DeleteRecords request. An offset of -1 means the high watermark.
pub fn handle(ctx: &Arc<Context>, req: DeleteRecordsRequest) -> Reply {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.topics.get(t.name.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        r.error_code = ResponseError::UnknownTopicOrPartition.code();
                        return r;
                    };
                    let hw = partition.high_watermark() as i64;
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        r.error_code = ResponseError::OffsetOutOfRange.code();
                        return r;
                    }
                    match partition.with_log(|log| Ok(log.delete_records_before(target as u64)?)) {
                        Ok(low) => r.low_watermark = low as i64,
                        Err(e) => r.error_code = error_codes::code(&e),
                    }
                    r
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Reply::now(ResponseKind::DeleteRecords(
        DeleteRecordsResponse::default().with_topics(topics),
    ))
}
