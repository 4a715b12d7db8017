//! Share-group membership scenarios: joins, heartbeats, leaves, expiry, fencing, limits and
//! the simple assignor, each checked through the heartbeat answers and describe.

use super::membership::*;
use super::record::ShareRecord;
use super::{MAX_MEMBER_ID_BYTES, MAX_SUBSCRIBED_TOPICS};
use crate::error::CoordinatorError;

fn topics() -> TopicPartitionCounts {
    TopicPartitionCounts::from([("orders".to_string(), 3), ("audit".to_string(), 2)])
}

/// A join of member `id` of group g subscribing to `orders`.
fn join_request(id: &str) -> ShareHeartbeat {
    ShareHeartbeat {
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: 0,
        subscribed_topic_names: Some(vec!["orders".into()]),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        ..ShareHeartbeat::default()
    }
}

fn join(g: &mut ShareGroups, id: &str, subscribed: &[&str], now_ms: i64) -> ShareHeartbeatResponse {
    let req = ShareHeartbeat {
        subscribed_topic_names: Some(subscribed.iter().map(|s| s.to_string()).collect()),
        ..join_request(id)
    };
    g.heartbeat(req, "generated", &topics(), now_ms)
        .expect("join")
}

fn beat(
    g: &mut ShareGroups,
    id: &str,
    epoch: i32,
    now_ms: i64,
) -> Result<ShareHeartbeatResponse, CoordinatorError> {
    g.heartbeat(
        ShareHeartbeat {
            group_id: "g".into(),
            member_id: id.into(),
            member_epoch: epoch,
            ..ShareHeartbeat::default()
        },
        "",
        &topics(),
        now_ms,
    )
}

fn parts(list: &[(&str, &[i32])]) -> ShareAssignment {
    list.iter()
        .map(|(t, p)| (t.to_string(), p.iter().copied().collect()))
        .collect()
}

#[test]
fn every_member_gets_every_partition_of_its_topics() {
    let mut g = ShareGroups::new(ShareGroupConfig::default());
    let a = join(&mut g, "a", &["orders"], 0);
    assert_eq!(a.member_epoch, 1);
    assert_eq!(a.heartbeat_interval_ms, 5_000);
    assert_eq!(a.assignment, Some(parts(&[("orders", &[0, 1, 2])])));
    let b = join(&mut g, "b", &["orders", "audit", "missing"], 0);
    assert_eq!(b.member_epoch, 2);
    assert_eq!(
        b.assignment,
        Some(parts(&[("audit", &[0, 1]), ("orders", &[0, 1, 2])]))
    );
    // a's partitions did not change: it takes the new epoch, no assignment is sent.
    let a = beat(&mut g, "a", 1, 10).expect("beat");
    assert_eq!((a.member_epoch, a.assignment), (2, None));
    let d = g.describe("g").expect("group");
    assert_eq!(
        (d.state, d.group_epoch, d.assignment_epoch),
        (ShareGroupState::Stable, 2, 2)
    );
    assert_eq!(d.members.len(), 2);
    assert_eq!(d.members[1].client_id, "client");
    assert_eq!(d.members[1].client_host, "/127.0.0.1");
    assert_eq!(d.members[1].subscribed, ["audit", "missing", "orders"]);
}

#[test]
fn an_empty_member_id_takes_the_callers() {
    let mut g = ShareGroups::new(ShareGroupConfig::default());
    let r = join(&mut g, "", &["orders"], 0);
    assert_eq!(r.member_id, "generated");
    assert!(g.is_member("g", "generated"));
}

#[test]
fn subscription_and_metadata_changes_send_a_new_assignment() {
    let mut g = ShareGroups::new(ShareGroupConfig::default());
    join(&mut g, "a", &["orders"], 0);
    let r = g
        .heartbeat(
            ShareHeartbeat {
                group_id: "g".into(),
                member_id: "a".into(),
                member_epoch: 1,
                subscribed_topic_names: Some(vec!["audit".into()]),
                ..ShareHeartbeat::default()
            },
            "",
            &topics(),
            1,
        )
        .expect("beat");
    assert_eq!(
        r.member_epoch, 2,
        "one bump for the subscription and its topics"
    );
    assert_eq!(r.assignment, Some(parts(&[("audit", &[0, 1])])));
    let mut more = topics();
    more.insert("audit".into(), 4);
    let r = g
        .heartbeat(
            ShareHeartbeat {
                group_id: "g".into(),
                member_id: "a".into(),
                member_epoch: 2,
                ..ShareHeartbeat::default()
            },
            "",
            &more,
            2,
        )
        .expect("beat");
    assert_eq!(r.member_epoch, 3);
    assert_eq!(r.assignment, Some(parts(&[("audit", &[0, 1, 2, 3])])));
}

#[test]
fn stale_and_future_epochs_are_fenced_the_previous_one_is_not() {
    let mut g = ShareGroups::new(ShareGroupConfig::default());
    join(&mut g, "a", &["orders"], 0);
    join(&mut g, "b", &["orders"], 0);
    join(&mut g, "c", &["orders"], 0);
    assert_eq!(beat(&mut g, "a", 1, 1).expect("beat").member_epoch, 3);
    // The answer that moved a from 1 to 3 may have been lost.
    assert_eq!(beat(&mut g, "a", 1, 1).expect("previous").member_epoch, 3);
    assert_eq!(
        beat(&mut g, "a", 2, 1),
        Err(CoordinatorError::FencedMemberEpoch)
    );
    assert_eq!(
        beat(&mut g, "a", 9, 1),
        Err(CoordinatorError::FencedMemberEpoch)
    );
    // A fenced member rejoins with epoch 0 and gets its whole assignment again.
    let r = join(&mut g, "a", &["orders"], 2);
    assert_eq!(r.member_epoch, 3);
    assert_eq!(r.assignment, Some(parts(&[("orders", &[0, 1, 2])])));
    assert_eq!(
        beat(&mut g, "zz", 3, 1),
        Err(CoordinatorError::UnknownMemberId)
    );
}

#[test]
fn leave_and_expiry_remove_members_and_bump_the_epoch() {
    let mut g = ShareGroups::new(ShareGroupConfig::default());
    join(&mut g, "a", &["orders"], 0);
    join(&mut g, "b", &["orders"], 1_000);
    let left = beat(&mut g, "a", -1, 2_000).expect("leave");
    assert_eq!((left.member_id.as_str(), left.member_epoch), ("a", -1));
    assert_eq!(
        beat(&mut g, "a", -1, 2_000),
        Err(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(g.describe("g").expect("group").group_epoch, 3);
    assert_eq!(g.next_deadline(), Some(46_000));
    assert!(g.expire(&topics(), 45_999).is_empty());
    assert_eq!(
        g.expire(&topics(), 46_000),
        vec![ExpiredMember {
            group_id: "g".into(),
            member_id: "b".into()
        }]
    );
    let d = g.describe("g").expect("an empty group stays");
    assert_eq!(
        (d.state, d.group_epoch, d.assignment_epoch),
        (ShareGroupState::Empty, 4, 4)
    );
    assert_eq!(
        beat(&mut g, "b", 2, 46_001),
        Err(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(g.next_deadline(), None);
    assert_eq!(
        g.group_ids(),
        vec![("g".to_string(), ShareGroupState::Empty)]
    );
    assert_eq!(
        g.delete_group("g"),
        Ok(ShareRecord::DeleteGroup { group: "g".into() })
    );
    assert_eq!(g.delete_group("g"), Err(CoordinatorError::GroupIdNotFound));
}

#[test]
fn a_heartbeat_keeps_the_session_alive() {
    let mut g = ShareGroups::new(ShareGroupConfig::default());
    join(&mut g, "a", &["orders"], 0);
    beat(&mut g, "a", 1, 40_000).expect("beat");
    assert!(g.expire(&topics(), 50_000).is_empty());
    assert_eq!(g.expire(&topics(), 85_000).len(), 1);
}

#[test]
fn groups_and_members_are_bounded() {
    let mut g = ShareGroups::new(ShareGroupConfig {
        max_size: 2,
        max_groups: 1,
        ..ShareGroupConfig::default()
    });
    join(&mut g, "a", &["orders"], 0);
    join(&mut g, "b", &["orders"], 0);
    let third = join_request("c");
    assert_eq!(
        g.heartbeat(third.clone(), "", &topics(), 0),
        Err(CoordinatorError::GroupMaxSizeReached)
    );
    // A member already in the full group may rejoin.
    join(&mut g, "b", &["orders"], 0);
    let other_group = ShareHeartbeat {
        group_id: "h".into(),
        ..third
    };
    assert_eq!(
        g.heartbeat(other_group, "", &topics(), 0),
        Err(CoordinatorError::GroupMaxSizeReached)
    );
    assert_eq!(g.delete_group("g"), Err(CoordinatorError::NonEmptyGroup));
}

#[test]
fn malformed_heartbeats_are_invalid() {
    let mut g = ShareGroups::new(ShareGroupConfig::default());
    let ok = join_request("a");
    let bad = [
        ShareHeartbeat {
            member_epoch: -2,
            ..ok.clone()
        },
        ShareHeartbeat {
            subscribed_topic_names: None,
            ..ok.clone()
        },
        ShareHeartbeat {
            subscribed_topic_names: Some(vec![]),
            ..ok.clone()
        },
        ShareHeartbeat {
            subscribed_topic_names: Some(vec!["".into()]),
            ..ok.clone()
        },
        ShareHeartbeat {
            subscribed_topic_names: Some(vec!["t".into(); MAX_SUBSCRIBED_TOPICS + 1]),
            ..ok.clone()
        },
        ShareHeartbeat {
            member_id: "x".repeat(MAX_MEMBER_ID_BYTES + 1),
            ..ok.clone()
        },
        ShareHeartbeat {
            rack_id: Some(String::new()),
            ..ok.clone()
        },
        ShareHeartbeat {
            member_id: String::new(),
            member_epoch: 3,
            ..ok.clone()
        },
    ];
    for req in bad {
        assert_eq!(
            g.heartbeat(req.clone(), "gen", &topics(), 0),
            Err(CoordinatorError::InvalidRequest),
            "{req:?}"
        );
    }
    let no_id = ShareHeartbeat {
        member_id: String::new(),
        ..ok.clone()
    };
    assert_eq!(
        g.heartbeat(no_id, "", &topics(), 0),
        Err(CoordinatorError::InvalidRequest)
    );
    let no_group = ShareHeartbeat {
        group_id: String::new(),
        ..ok
    };
    assert_eq!(
        g.heartbeat(no_group, "", &topics(), 0),
        Err(CoordinatorError::InvalidGroupId)
    );
    assert!(g.group_ids().is_empty(), "nothing was created");
}

#[test]
fn a_restored_group_is_empty_and_outside_the_group_limit() {
    let mut g = ShareGroups::new(ShareGroupConfig {
        max_groups: 0,
        ..ShareGroupConfig::default()
    });
    g.restore_group("g");
    assert_eq!(
        g.describe("g").expect("group").state,
        ShareGroupState::Empty
    );
    let r = join(&mut g, "a", &["orders"], 0);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(
        g.assignment("g", "a"),
        Some(&parts(&[("orders", &[0, 1, 2])]))
    );
}
