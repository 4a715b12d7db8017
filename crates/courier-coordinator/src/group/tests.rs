//! The group coordinator driven through whole protocol conversations, checking both the
//! answers (effects) and the resulting state.

use bytes::Bytes;

use super::*;
use crate::offset_record::OffsetRecord;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn coordinator(initial_delay_ms: i64) -> GroupCoordinator {
    GroupCoordinator::new(
        GroupConfig {
            initial_rebalance_delay_ms: initial_delay_ms,
            ..GroupConfig::default()
        },
        "inc",
    )
}

fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        ..JoinRequest::default()
    }
}

fn joined(effects: &[Effect], token: Token) -> JoinResult {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Join(t, r) if *t == token => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join answer for {token} in {effects:?}"))
}

fn synced(effects: &[Effect], token: Token) -> SyncResult {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Sync(t, r) if *t == token => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sync answer for {token} in {effects:?}"))
}

fn sync_req(member_id: &str, generation_id: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        generation_id,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
        ..SyncRequest::default()
    }
}

/// One member joins an empty group (with the KIP-394 round) and becomes stable.
fn single_stable(c: &mut GroupCoordinator) -> String {
    let mut req = join_req("", &["range"]);
    req.require_known_member_id = true;
    let e = c.join(1, req.clone(), 0);
    let first = joined(&e, 1);
    assert_eq!(first.error, Some(CoordinatorError::MemberIdRequired));
    let id = first.member_id.clone();
    req.member_id = id.clone();
    let e = c.join(2, req, 0);
    let r = joined(&e, 2);
    assert_eq!(r.error, None);
    assert_eq!((r.generation_id, r.leader.as_str()), (1, id.as_str()));
    assert_eq!(r.members.len(), 1, "the leader sees every member");
    let e = c.sync(3, sync_req(&id, 1, &[(&id, "a1")]), 0);
    assert_eq!(synced(&e, 3).assignment, Bytes::from("a1"));
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    id
}

#[test]
fn first_rebalance_waits_for_the_initial_delay() {
    let mut c = coordinator(3_000);
    let e = c.join(1, join_req("", &["range"]), 0);
    assert!(e.is_empty(), "parked until the delay passes: {e:?}");
    assert_eq!(c.next_deadline(), Some(3_000));
    let e = c.join(2, join_req("", &["range"]), 1_000);
    assert!(e.is_empty());
    assert!(c.tick(2_999).is_empty());
    let e = c.tick(3_000);
    let (a, b) = (joined(&e, 1), joined(&e, 2));
    assert_eq!(a.generation_id, 1);
    assert_eq!(a.leader, b.leader);
    let leader_sees = if a.member_id == a.leader { &a } else { &b };
    assert_eq!(leader_sees.members.len(), 2);
}

#[test]
fn a_new_member_triggers_a_rebalance_that_completes_when_all_rejoin() {
    let mut c = coordinator(0);
    let a = single_stable(&mut c);
    let e = c.join(10, join_req("", &["range"]), 100);
    assert!(e.is_empty(), "b waits for a to rejoin");
    assert_eq!(
        c.heartbeat("g", &a, None, 1, 200),
        Err(CoordinatorError::RebalanceInProgress)
    );
    let e = c.join(11, join_req(&a, &["range"]), 300);
    let (ra, rb) = (joined(&e, 11), joined(&e, 10));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader, a, "the leader stays the leader");
    assert_eq!(ra.members.len(), 2);
    assert!(
        rb.members.is_empty(),
        "followers do not see the member list"
    );
    let b = rb.member_id;
    // The follower's SyncGroup waits for the leader's.
    let e = c.sync(12, sync_req(&b, 2, &[]), 400);
    assert!(e.is_empty());
    let e = c.sync(13, sync_req(&a, 2, &[(&a, "pa"), (&b, "pb")]), 500);
    assert_eq!(synced(&e, 12).assignment, Bytes::from("pb"));
    assert_eq!(synced(&e, 13).assignment, Bytes::from("pa"));
    assert_eq!(c.heartbeat("g", &b, None, 2, 600), Ok(()));
    assert_eq!(
        c.heartbeat("g", &b, None, 1, 600),
        Err(CoordinatorError::IllegalGeneration)
    );
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance() {
    let mut c = coordinator(0);
    let a = single_stable(&mut c);
    let e = c.join(10, join_req("", &["range"]), 0);
    assert!(e.is_empty());
    let e = c.join(11, join_req(&a, &["range"]), 0);
    let b = joined(&e, 10).member_id;
    let e = c.sync(12, sync_req(&a, 2, &[(&a, "pa"), (&b, "pb")]), 0);
    synced(&e, 12);
    // a keeps heartbeating, b goes silent.
    for t in (1_000..SESSION as i64).step_by(1_000) {
        assert_eq!(c.heartbeat("g", &a, None, 2, t), Ok(()));
        assert!(c.tick(t).is_empty());
    }
    c.tick(SESSION as i64 + 500);
    assert_eq!(
        c.heartbeat("g", &b, None, 2, 11_500),
        Err(CoordinatorError::UnknownMemberId),
        "b expired"
    );
    assert_eq!(
        c.heartbeat("g", &a, None, 2, 11_500),
        Err(CoordinatorError::RebalanceInProgress)
    );
    let e = c.join(20, join_req(&a, &["range"]), 11_600);
    let r = joined(&e, 20);
    assert_eq!((r.generation_id, r.members.len()), (3, 1));
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_dropped() {
    let mut c = coordinator(0);
    let a = single_stable(&mut c);
    c.join(10, join_req("", &["range"]), 0);
    let e = c.join(11, join_req(&a, &["range"]), 0);
    let b = joined(&e, 10).member_id;
    c.sync(12, sync_req(&a, 2, &[(&a, "pa"), (&b, "pb")]), 0);
    // A third member starts a rebalance; b never rejoins (its poll loop is stuck).
    let e = c.join(20, join_req("", &["range"]), 1_000);
    assert!(e.is_empty());
    c.join(21, join_req(&a, &["range"]), 1_100);
    let e = c.tick(1_000 + REBALANCE as i64);
    let r = joined(&e, 21);
    assert_eq!(
        r.members.len(),
        2,
        "b was dropped at the rebalance deadline"
    );
    assert!(r.members.iter().all(|m| m.member_id != b));
}

#[test]
fn leaving_rebalances_the_rest_and_the_last_leaves_an_empty_group() {
    let mut c = coordinator(0);
    let a = single_stable(&mut c);
    let (results, _) = c.leave(
        "g",
        &[LeavingMember {
            member_id: a.clone(),
            group_instance_id: None,
        }],
        10,
    );
    assert_eq!(results, Ok(vec![Ok(a.clone())]));
    assert_eq!(c.group_state("g"), Some(GroupState::Empty));
    let (results, _) = c.leave(
        "g",
        &[LeavingMember {
            member_id: a,
            group_instance_id: None,
        }],
        20,
    );
    assert_eq!(results, Ok(vec![Err(CoordinatorError::UnknownMemberId)]));
}

#[test]
fn commits_are_fenced_by_member_and_generation_and_visible_only_when_applied() {
    let mut c = coordinator(0);
    let a = single_stable(&mut c);
    let commit = |member: &str, generation: i32| CommitRequest {
        group_id: "g".into(),
        member_id: member.into(),
        generation_id: generation,
        offsets: vec![("t".into(), 0, 42, -1, "m".into())],
        ..CommitRequest::default()
    };
    assert_eq!(
        c.prepare_commit(&commit(&a, 0), 1),
        Err(CoordinatorError::IllegalGeneration)
    );
    assert_eq!(
        c.prepare_commit(&commit("stranger", 1), 1),
        Err(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(
        c.prepare_commit(&commit("", -1), 1),
        Err(CoordinatorError::UnknownMemberId),
        "group has members"
    );
    let plan = c.prepare_commit(&commit(&a, 1), 5).expect("accepted");
    assert_eq!(plan.results, vec![("t".to_string(), 0, None)]);
    assert_eq!(
        c.fetch_offsets("g", None),
        vec![],
        "not visible before it is durable"
    );
    c.apply(&plan.records);
    let fetched = c.fetch_offsets("g", Some(&[("t".into(), 0), ("t".into(), 1)]));
    assert_eq!(
        fetched[0]
            .2
            .as_ref()
            .map(|o| (o.offset, o.metadata.as_str(), o.commit_timestamp_ms)),
        Some((42, "m", 5))
    );
    assert_eq!(fetched[1].2, None);
    // During CompletingRebalance commits are refused.
    c.join(10, join_req("", &["range"]), 10);
    c.join(11, join_req(&a, &["range"]), 10);
    assert_eq!(
        c.prepare_commit(&commit(&a, 2), 11),
        Err(CoordinatorError::RebalanceInProgress)
    );
}

#[test]
fn simple_consumers_commit_to_memberless_groups_and_deletion_needs_an_empty_group() {
    let mut c = coordinator(0);
    let req = CommitRequest {
        group_id: "simple".into(),
        generation_id: -1,
        offsets: vec![("t".into(), 3, 7, 0, String::new())],
        ..CommitRequest::default()
    };
    let plan = c.prepare_commit(&req, 0).expect("simple commit");
    c.apply(&plan.records);
    assert_eq!(
        c.list_groups()
            .iter()
            .map(|g| (g.group_id.as_str(), g.state))
            .collect::<Vec<_>>(),
        vec![("simple", "Empty")]
    );
    let tombstones = c.prepare_delete_group("simple").expect("empty group");
    assert_eq!(
        tombstones,
        vec![OffsetRecord::Delete {
            group: "simple".into(),
            topic: "t".into(),
            partition: 3
        }]
    );
    c.apply(&tombstones);
    c.forget_group("simple");
    assert!(c.list_groups().is_empty());
    single_stable(&mut c);
    assert_eq!(
        c.prepare_delete_group("g"),
        Err(CoordinatorError::NonEmptyGroup)
    );
    assert_eq!(
        c.prepare_delete_group("nope"),
        Err(CoordinatorError::GroupIdNotFound)
    );
}

#[test]
fn a_static_member_rejoining_a_stable_group_keeps_its_assignment_and_fences_the_old_id() {
    let mut c = coordinator(0);
    let mut req = join_req("", &["range"]);
    req.group_instance_id = Some("host-1".into());
    let e = c.join(1, req.clone(), 0);
    let old = joined(&e, 1).member_id;
    c.sync(
        2,
        SyncRequest {
            group_instance_id: Some("host-1".into()),
            ..sync_req(&old, 1, &[(&old, "mine")])
        },
        0,
    );
    // The process restarts and joins again with no member id.
    let e = c.join(3, req, 1_000);
    let r = joined(&e, 3);
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert!(r.skip_assignment, "the static leader need not assign again");
    assert_ne!(r.member_id, old);
    let e = c.sync(
        4,
        SyncRequest {
            group_instance_id: Some("host-1".into()),
            ..sync_req(&r.member_id, 1, &[])
        },
        1_000,
    );
    assert_eq!(synced(&e, 4).assignment, Bytes::from("mine"));
    assert_eq!(
        c.heartbeat("g", &old, Some("host-1"), 1, 1_100),
        Err(CoordinatorError::FencedInstanceId)
    );
}

#[test]
fn protocols_are_chosen_by_vote_among_the_common_ones() {
    let mut c = coordinator(1_000);
    assert!(c
        .join(1, join_req("", &["cooperative-sticky", "range"]), 0)
        .is_empty());
    assert!(c
        .join(2, join_req("", &["range", "roundrobin"]), 0)
        .is_empty());
    assert!(c
        .join(3, join_req("", &["roundrobin", "range"]), 0)
        .is_empty());
    let e = c.tick(1_000);
    let all: Vec<JoinResult> = [1, 2, 3].iter().map(|t| joined(&e, *t)).collect();
    assert!(
        all.iter()
            .all(|r| r.protocol_name.as_deref() == Some("range")),
        "{all:?}"
    );
    let mut odd = join_req("", &["sticky"]);
    odd.protocol_type = "consumer".into();
    assert_eq!(
        joined(&c.join(4, odd, 1), 4).error,
        Some(CoordinatorError::InconsistentGroupProtocol)
    );
    let mut other_type = join_req("", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        joined(&c.join(5, other_type, 1), 5).error,
        Some(CoordinatorError::InconsistentGroupProtocol)
    );
}

#[test]
fn bad_join_requests_are_refused() {
    let mut c = coordinator(0);
    let mut r = join_req("", &["range"]);
    r.session_timeout_ms = 10;
    assert_eq!(
        joined(&c.join(1, r, 0), 1).error,
        Some(CoordinatorError::InvalidSessionTimeout)
    );
    let mut r = join_req("", &["range"]);
    r.group_id = String::new();
    assert_eq!(
        joined(&c.join(2, r, 0), 2).error,
        Some(CoordinatorError::InvalidGroupId)
    );
    assert_eq!(
        joined(&c.join(3, join_req("ghost", &["range"]), 0), 3).error,
        Some(CoordinatorError::UnknownMemberId)
    );
}

#[test]
fn transactional_offsets_apply_on_commit_and_vanish_on_abort() {
    let mut c = coordinator(0);
    let offsets = vec![("t".to_string(), 0, 100, -1, String::new())];
    let (records, results) = c.prepare_txn_commit("g", 9, &offsets, 1);
    assert_eq!(results, vec![("t".to_string(), 0, None)]);
    c.apply(&records);
    assert!(
        c.has_pending_txn_offset("g", "t", 0),
        "pending while the transaction is open"
    );
    assert_eq!(
        c.fetch_offsets("g", Some(&[("t".into(), 0)]))[0].2,
        None,
        "not visible yet"
    );
    c.apply(&[OffsetRecord::TxnEnd {
        group: "g".into(),
        producer_id: 9,
        commit: true,
    }]);
    assert!(!c.has_pending_txn_offset("g", "t", 0));
    assert_eq!(
        c.fetch_offsets("g", Some(&[("t".into(), 0)]))[0]
            .2
            .as_ref()
            .map(|o| o.offset),
        Some(100)
    );
    let (records, _) =
        c.prepare_txn_commit("g", 9, &[("t".to_string(), 0, 200, -1, String::new())], 2);
    c.apply(&records);
    c.apply(&[OffsetRecord::TxnEnd {
        group: "g".into(),
        producer_id: 9,
        commit: false,
    }]);
    assert_eq!(
        c.fetch_offsets("g", Some(&[("t".into(), 0)]))[0]
            .2
            .as_ref()
            .map(|o| o.offset),
        Some(100),
        "abort kept the old offset"
    );
}
