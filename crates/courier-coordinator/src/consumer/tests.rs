//! The consumer protocol driven by simulated clients that do what librdkafka does: adopt each
//! assignment they are sent and report what they own.

use std::collections::BTreeMap;

use super::*;

fn topics() -> TopicsView {
    TopicsView::from([("t".to_string(), (42u128, 6))])
}

struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

fn join(g: &mut ConsumerGroups, id: &str, now: i64) -> Client {
    let r = g
        .heartbeat(
            Heartbeat {
                group_id: "g".into(),
                member_id: id.into(),
                member_epoch: 0,
                subscribed_topic_names: Some(vec!["t".into()]),
                rebalance_timeout_ms: 10_000,
                ..Heartbeat::default()
            },
            &topics(),
            now,
        )
        .expect("join");
    Client {
        id: id.into(),
        epoch: r.member_epoch,
        owned: r.assignment.unwrap_or_default(),
    }
}

fn beat(g: &mut ConsumerGroups, c: &mut Client, now: i64) -> Result<(), CoordinatorError> {
    let r = g.heartbeat(
        Heartbeat {
            group_id: "g".into(),
            member_id: c.id.clone(),
            member_epoch: c.epoch,
            owned: Some(c.owned.clone()),
            ..Heartbeat::default()
        },
        &topics(),
        now,
    )?;
    c.epoch = r.member_epoch;
    if let Some(a) = r.assignment {
        c.owned = a;
    }
    Ok(())
}

fn no_partition_has_two_owners(clients: &[&Client]) {
    let mut owner: BTreeMap<(u128, i32), &str> = BTreeMap::new();
    for c in clients {
        for (t, parts) in &c.owned {
            for p in parts {
                if let Some(other) = owner.insert((*t, *p), &c.id) {
                    panic!("partition {p} owned by {other} and {}", c.id);
                }
            }
        }
    }
}

fn count(c: &Client) -> usize {
    c.owned.values().map(|p| p.len()).sum()
}

#[test]
fn members_converge_without_ever_sharing_a_partition() {
    let mut g = ConsumerGroups::new(ConsumerConfig::default(), "inc");
    let mut a = join(&mut g, "a", 0);
    assert_eq!(count(&a), 6, "alone, a gets everything");
    let mut b = join(&mut g, "b", 10);
    assert_eq!(count(&b), 0, "b waits until a releases");
    for step in 0..6 {
        beat(&mut g, &mut a, 20 + step).expect("a");
        no_partition_has_two_owners(&[&a, &b]);
        beat(&mut g, &mut b, 20 + step).expect("b");
        no_partition_has_two_owners(&[&a, &b]);
    }
    assert_eq!((count(&a), count(&b)), (3, 3));
    assert_eq!(a.epoch, b.epoch, "both reached the assignment epoch");
    assert_eq!(g.describe("g").map(|d| d.state), Some("Stable"));
}

#[test]
fn stale_epochs_are_fenced_and_leaving_frees_partitions() {
    let mut g = ConsumerGroups::new(ConsumerConfig::default(), "inc");
    let mut a = join(&mut g, "a", 0);
    let mut b = join(&mut g, "b", 0);
    for t in 1..5 {
        beat(&mut g, &mut a, t).expect("a");
        beat(&mut g, &mut b, t).expect("b");
    }
    let mut stale = Client {
        id: "a".into(),
        epoch: a.epoch - 1,
        owned: a.owned.clone(),
    };
    if stale.epoch >= 0 {
        // The previous epoch is tolerated once (a lost response); older ones are not.
        stale.epoch -= 1;
    }
    assert_eq!(
        beat(&mut g, &mut stale, 6),
        Err(CoordinatorError::FencedMemberEpoch)
    );
    assert_eq!(g.validate_commit("g", "a", a.epoch), Ok(()));
    assert_eq!(
        g.validate_commit("g", "a", a.epoch + 7),
        Err(CoordinatorError::StaleMemberEpoch)
    );
    // a leaves; b takes everything.
    g.heartbeat(
        Heartbeat {
            group_id: "g".into(),
            member_id: "a".into(),
            member_epoch: -1,
            ..Heartbeat::default()
        },
        &topics(),
        7,
    )
    .expect("leave");
    for t in 8..10 {
        beat(&mut g, &mut b, t).expect("b");
    }
    assert_eq!(count(&b), 6);
}

#[test]
fn a_silent_member_expires_and_its_partitions_move() {
    let mut g = ConsumerGroups::new(
        ConsumerConfig {
            session_timeout_ms: 1_000,
            ..ConsumerConfig::default()
        },
        "inc",
    );
    let mut a = join(&mut g, "a", 0);
    let mut b = join(&mut g, "b", 0);
    for t in 1..5 {
        beat(&mut g, &mut a, t).expect("a");
        beat(&mut g, &mut b, t).expect("b");
    }
    assert_eq!(count(&b), 3);
    beat(&mut g, &mut b, 900).expect("b alive");
    g.tick(&topics(), 1_200);
    assert_eq!(
        beat(&mut g, &mut a, 1_300),
        Err(CoordinatorError::UnknownMemberId),
        "a expired"
    );
    beat(&mut g, &mut b, 1_300).expect("b");
    assert_eq!(count(&b), 6);
}

#[test]
fn new_partitions_are_assigned() {
    let mut g = ConsumerGroups::new(ConsumerConfig::default(), "inc");
    let mut a = join(&mut g, "a", 0);
    let more = TopicsView::from([("t".to_string(), (42u128, 9))]);
    let r = g
        .heartbeat(
            Heartbeat {
                group_id: "g".into(),
                member_id: "a".into(),
                member_epoch: a.epoch,
                ..Heartbeat::default()
            },
            &more,
            1,
        )
        .expect("beat");
    a.owned = r.assignment.expect("changed");
    assert_eq!(count(&a), 9);
}

#[test]
fn unknown_assignors_are_refused() {
    let mut g = ConsumerGroups::new(ConsumerConfig::default(), "inc");
    let r = g.heartbeat(
        Heartbeat {
            group_id: "g".into(),
            member_id: "a".into(),
            subscribed_topic_names: Some(vec!["t".into()]),
            server_assignor: Some("sticky-ish".into()),
            ..Heartbeat::default()
        },
        &topics(),
        0,
    );
    assert_eq!(r, Err(CoordinatorError::UnsupportedAssignor));
}
