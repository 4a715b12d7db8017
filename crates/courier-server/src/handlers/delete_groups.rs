//! DeleteGroups: only empty groups; their offsets (or a share group's delivery state) are
//! deleted durably.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one DeleteGroups request.
pub fn handle(ctx: &Arc<Context>, req: DeleteGroupsRequest) -> Reply {
    let ctx = Arc::clone(ctx);
    Reply::later(async move {
        let broker = &ctx.broker;
        let mut results = Vec::with_capacity(req.groups_names.len());
        for id in req.groups_names {
            let outcome = match broker
                .shares
                .delete_group(&broker.topics, id.as_str())
                .await
            {
                Ok(Some(share)) => Ok(share),
                Ok(None) => broker.groups.delete_group(id.as_str()).await,
                Err(e) => Err(e),
            };
            let code = match outcome {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => error_codes::coordinator(&e),
                Err(e) => error_codes::code(&e),
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code),
            );
        }
        ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
    })
}
