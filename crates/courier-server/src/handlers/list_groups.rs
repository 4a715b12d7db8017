//! ListGroups, with the state (v4+) and type (v5+) filters.

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

/// Handles one ListGroups request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let groups = ctx
        .broker
        .groups
        .read(|c| c.list_groups())
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
        .filter(|_| types.is_empty() || types.contains(&"classic".to_string()))
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if version >= 4 {
                listed.group_state = StrBytes::from_static_str(g.state);
            }
            if version >= 5 {
                listed.group_type = StrBytes::from_static_str("classic");
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
