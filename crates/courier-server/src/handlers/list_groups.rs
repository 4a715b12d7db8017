//! ListGroups, with the state (v4+) and type (v5+) filters: classic, consumer and share groups.

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
    let consumer: Vec<(String, String, &'static str, &'static str)> = ctx
        .broker
        .groups
        .consumer_groups()
        .into_iter()
        .map(|(id, state)| (id, "consumer".to_string(), state, "consumer"))
        .collect();
    let classic = ctx
        .broker
        .groups
        .read(|c| c.list_groups())
        .into_iter()
        .filter(|g| !consumer.iter().any(|(id, ..)| *id == g.group_id))
        .map(|g| (g.group_id, g.protocol_type, g.state, "classic"));
    let share = ctx
        .broker
        .shares
        .group_ids()
        .into_iter()
        .map(|(id, state)| (id, "share".to_string(), state.name(), "share"));
    let groups = classic
        .chain(consumer.clone())
        .chain(share)
        .filter(|g| states.is_empty() || states.contains(&g.2.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.contains(&g.3.to_string()))
        .map(|(id, protocol_type, state, group_type)| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type));
            if version >= 4 {
                listed.group_state = StrBytes::from_static_str(state);
            }
            if version >= 5 {
                listed.group_type = StrBytes::from_static_str(group_type);
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
