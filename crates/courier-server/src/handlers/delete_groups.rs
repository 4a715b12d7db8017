//! DeleteGroups: only empty groups; their offsets are deleted durably.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one DeleteGroups request.
pub fn handle(ctx: &Arc<Context>, req: DeleteGroupsRequest) -> Reply {
    let groups = Arc::clone(&ctx.broker.groups);
    Reply::later(async move {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for id in req.groups_names {
            let code = match groups.delete_group(id.as_str()).await {
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
