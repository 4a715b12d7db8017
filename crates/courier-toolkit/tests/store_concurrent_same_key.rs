//! Two service instances processing the same idempotency key at once apply the effect once:
//! the second waits for the first's transaction (PostgreSQL: on the key's row; SQLite: on
//! `BEGIN IMMEDIATE`), then finds the key completed, or claims it if the first rolled back.
//! Run against SQLite and a real PostgreSQL server (`store_suite`).

#[macro_use]
#[path = "store_suite/mod.rs"]
mod store_suite;

use std::time::{Duration, Instant};

use courier_toolkit::store::{Backend, Outcome, SqlValue};
use courier_toolkit::ToolkitError;
use store_suite::*;
use tokio::sync::oneshot;

suite!(
    concurrent_same_key_applies_effect_once,
    concurrent_same_key_after_rollback_applies_once,
);

/// starts the same key on handle `b`, checks that `b` waits, then ends `a`'s effect with
/// `a_result` (`Err` rolls `a` back). Returns both outcomes.
async fn race(
    db: &TestDb,
    key: &'static str,
    a_result: Result<(), ()>,
) -> (Result<Outcome, ToolkitError>, Result<Outcome, ToolkitError>) {
    let (a, b, probe) = (db.open().await, db.open().await, db.open().await);
    let (inside_tx, inside_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let task_a = tokio::spawn(async move {
        a.process(&req(key, 0, 1), |tx| async move {
            insert_effect(tx, key, b"A").await?;
            let _ = inside_tx.send(());
            let _ = release_rx.await;
            a_result
                .map(|()| b"A".to_vec())
                .map_err(|()| ToolkitError::Handler("A failed".into()))
        })
        .await
    });
    inside_rx.await.expect("A's effect started");
    let task_b = tokio::spawn(async move {
        b.process(&req(key, 0, 1), |tx| insert_effect(tx, key, b"B"))
            .await
    });
    if probe.backend() == Backend::Postgres {
        // Proof that B is blocked on A's uncommitted key row, not merely slow.
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiting = "SELECT COUNT(*) FROM pg_stat_activity \
                       WHERE wait_event_type = 'Lock' AND datname = current_database()";
        while query(&probe, waiting, &[]).await[0][0] != SqlValue::Int(1) {
            assert!(Instant::now() < deadline, "B never waited for A's lock");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !task_b.is_finished(),
        "B must wait while A's transaction is open"
    );
    release_tx.send(()).expect("A still waiting");
    let a = task_a.await.expect("task A");
    let b = task_b.await.expect("task B");
    (a, b)
}

async fn concurrent_same_key_applies_effect_once(db: TestDb) {
    let (a, b) = race(&db, "k-race", Ok(())).await;
    assert_eq!(
        a.expect("A"),
        Outcome::Applied {
            result: b"A".to_vec()
        }
    );
    assert_eq!(
        b.expect("B"),
        Outcome::Duplicate {
            stored_result: b"A".to_vec()
        }
    );
    let store = db.open().await;
    assert_eq!(
        effects(&store, "k-race").await,
        1,
        "the effect applied exactly once"
    );
}

async fn concurrent_same_key_after_rollback_applies_once(db: TestDb) {
    let (a, b) = race(&db, "k-race", Err(())).await;
    assert!(matches!(a, Err(ToolkitError::Handler(_))), "{a:?}");
    assert_eq!(
        b.expect("B"),
        Outcome::Applied {
            result: b"B".to_vec()
        }
    );
    let store = db.open().await;
    assert_eq!(effects(&store, "k-race").await, 1, "only B's effect");
    let record = store
        .key_state(GROUP, "k-race")
        .await
        .expect("key")
        .expect("record");
    assert_eq!(record.result.as_deref(), Some(&b"B"[..]));
}
