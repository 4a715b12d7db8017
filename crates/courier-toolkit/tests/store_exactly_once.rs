//! The processed-ID store keeps exactly-once into a database: the effect, the idempotency
//! key and the offset commit together or not at all; a key seen before skips the effect;
//! offsets only move forward; pruning removes only what no redelivery can reach; SQL and its
//! values mean the same on both backends; a batch in one transaction keeps each message's
//! guarantee and is all or nothing.
//!
//! Written once and run against both backends (`store_suite`): `sqlite::*` on a file in a
//! temporary directory, `postgres::*` on a real PostgreSQL server started for the test (see
//! `support/postgres.rs`; the tests fail if PostgreSQL is not installed).

#[macro_use]
#[path = "store_suite/mod.rs"]
mod store_suite;

use std::time::{Duration, SystemTime};

use courier_toolkit::store::{
    Backend, KeyState, Outcome, ProcessRequest, ProcessedStore, SqlValue,
};
use courier_toolkit::ToolkitError;
use store_suite::*;

suite!(
    effect_key_and_offset_commit_together,
    failed_effect_leaves_no_key_no_offset_no_effect,
    failed_statement_dooms_the_transaction,
    duplicate_key_skips_effect_and_returns_stored_result,
    offsets_only_move_forward,
    committed_offsets_are_per_group_topic_and_partition,
    prune_deletes_only_below_committed_offset_and_past_retention,
    placeholders_bind_by_number_and_values_round_trip,
    schema_creation_is_idempotent,
    batch_applies_every_effect_and_moves_each_offset_to_its_max_plus_one,
    batch_skips_keys_completed_before_or_earlier_in_the_batch,
    batch_failing_at_one_message_rolls_back_everything_and_names_it,
);

async fn effect_key_and_offset_commit_together(db: TestDb) {
    let store = db.open().await;
    let out = store
        .process(&req("k1", 0, 5), |tx| insert_effect(tx, "k1", b"r1"))
        .await
        .expect("process");
    assert_eq!(
        out,
        Outcome::Applied {
            result: b"r1".to_vec()
        }
    );
    assert_eq!(effects(&store, "k1").await, 1);
    assert_eq!(offsets(&store).await, [(0, 6)]);
    let record = store
        .key_state(GROUP, "k1")
        .await
        .expect("key")
        .expect("record");
    assert_eq!(record.state, KeyState::Completed);
    assert_eq!(record.result.as_deref(), Some(&b"r1"[..]));
    assert_eq!(
        (record.topic.as_str(), record.partition, record.offset),
        (TOPIC, 0, 5)
    );
    // A new handle (a restarted service) sees the same.
    let reopened = db.open().await;
    assert_eq!(offsets(&reopened).await, [(0, 6)]);
    assert_eq!(effects(&reopened, "k1").await, 1);
}

async fn failed_effect_leaves_no_key_no_offset_no_effect(db: TestDb) {
    let store = db.open().await;
    let err = store
        .process(&req("k1", 0, 5), |tx| async move {
            insert_effect(tx, "k1", b"r1").await?;
            Err(ToolkitError::Handler("payment service down".into()))
        })
        .await
        .expect_err("the effect failed");
    assert!(
        matches!(&err, ToolkitError::Handler(m) if m == "payment service down"),
        "{err}"
    );
    assert_eq!(
        effects(&store, "k1").await,
        0,
        "the effect's row was rolled back"
    );
    assert_eq!(store.key_state(GROUP, "k1").await.expect("key"), None);
    assert_eq!(offsets(&store).await, []);
    // The message is processed again, and this time it sticks.
    let out = store
        .process(&req("k1", 0, 5), |tx| insert_effect(tx, "k1", b"r2"))
        .await
        .expect("retry");
    assert_eq!(
        out,
        Outcome::Applied {
            result: b"r2".to_vec()
        }
    );
    assert_eq!(effects(&store, "k1").await, 1);
    assert_eq!(offsets(&store).await, [(0, 6)]);
}

async fn failed_statement_dooms_the_transaction(db: TestDb) {
    let store = db.open().await;
    // The effect swallows a statement's error and returns Ok: still nothing may commit
    // (PostgreSQL has aborted the transaction; SQLite is held to the same rule).
    let err = store
        .process(&req("k1", 0, 5), |tx| async move {
            tx.execute(
                "INSERT INTO effects (idem, amount) VALUES ($1, 1)",
                &["k1".into()],
            )
            .await?;
            let bad = tx
                .execute("INSERT INTO no_such_table VALUES (1)", &[])
                .await;
            assert!(bad.is_err(), "the table does not exist");
            Ok(b"r".to_vec())
        })
        .await
        .expect_err("a statement failed");
    assert!(err.to_string().contains("no_such_table"), "{err}");
    assert_eq!(effects(&store, "k1").await, 0);
    assert_eq!(store.key_state(GROUP, "k1").await.expect("key"), None);
    assert_eq!(offsets(&store).await, []);
}

async fn duplicate_key_skips_effect_and_returns_stored_result(db: TestDb) {
    let store = db.open().await;
    let first = store
        .process(&req("k1", 0, 1), |tx| insert_effect(tx, "k1", b"receipt-1"))
        .await
        .expect("first");
    assert_eq!(
        first,
        Outcome::Applied {
            result: b"receipt-1".to_vec()
        }
    );
    // The same key again: redelivered, or a producer's retry stored as a new record.
    for offset in [1, 7] {
        let again = store
            .process(&req("k1", 0, offset), must_not_run)
            .await
            .expect("duplicate");
        assert_eq!(
            again,
            Outcome::Duplicate {
                stored_result: b"receipt-1".to_vec()
            }
        );
    }
    assert_eq!(effects(&store, "k1").await, 1);
    // The duplicate at offset 7 was dealt with: the group moves past it.
    assert_eq!(offsets(&store).await, [(0, 8)]);
}

async fn offsets_only_move_forward(db: TestDb) {
    let store = db.open().await;
    store
        .process(&req("k10", 0, 10), |tx| insert_effect(tx, "k10", b""))
        .await
        .expect("10");
    assert_eq!(offsets(&store).await, [(0, 11)]);
    // An older message with a new key (a rebalance race): applied, but the offset stays.
    let out = store
        .process(&req("k4", 0, 4), |tx| insert_effect(tx, "k4", b""))
        .await;
    assert_eq!(out.expect("4"), Outcome::Applied { result: vec![] });
    assert_eq!(offsets(&store).await, [(0, 11)]);
    store
        .process(&req("k11", 0, 11), |tx| insert_effect(tx, "k11", b""))
        .await
        .expect("11");
    assert_eq!(offsets(&store).await, [(0, 12)]);
    // Only an explicit reset goes back.
    store.reset_offset(GROUP, TOPIC, 0, 3).await.expect("reset");
    assert_eq!(offsets(&store).await, [(0, 3)]);
}

async fn committed_offsets_are_per_group_topic_and_partition(db: TestDb) {
    let store = db.open().await;
    for (p, off) in [(0, 3), (2, 9), (1, 0), (2, 4)] {
        let key = format!("a-{p}-{off}");
        store
            .process(&req(&key, p, off), |tx| insert_effect(tx, &key, b""))
            .await
            .expect("a");
    }
    let other_topic = ProcessRequest {
        topic: "refunds",
        ..req("b", 0, 50)
    };
    store
        .process(&other_topic, |tx| insert_effect(tx, "b", b""))
        .await
        .expect("b");
    // Another group seeing the same key applies its own effect.
    let other_group = ProcessRequest {
        group: "shipping",
        ..req("a-0-3", 0, 70)
    };
    let out = store
        .process(&other_group, |tx| insert_effect(tx, "a-0-3", b"s"))
        .await;
    assert_eq!(
        out.expect("shipping"),
        Outcome::Applied {
            result: b"s".to_vec()
        }
    );

    assert_eq!(offsets(&store).await, [(0, 4), (1, 1), (2, 10)]);
    let refunds = store
        .committed_offsets(GROUP, "refunds")
        .await
        .expect("refunds");
    assert_eq!(refunds.into_iter().collect::<Vec<_>>(), [(0, 51)]);
    let shipping = store
        .committed_offsets("shipping", TOPIC)
        .await
        .expect("shipping");
    assert_eq!(shipping.into_iter().collect::<Vec<_>>(), [(0, 71)]);
    assert!(store
        .committed_offsets("nobody", TOPIC)
        .await
        .expect("none")
        .is_empty());
    assert_eq!(effects(&store, "a-0-3").await, 2, "once per group");
}

/// Runs `key` on handle `a` with an effect that stays in its transaction until released,
async fn prune_deletes_only_below_committed_offset_and_past_retention(db: TestDb) {
    let store = db.open().await;
    for (key, offset) in [("k0", 0), ("k1", 1), ("k2", 2)] {
        store
            .process(&req(key, 0, offset), |tx| insert_effect(tx, key, b""))
            .await
            .expect(key);
    }
    let shipping = ProcessRequest {
        group: "shipping",
        ..req("k0", 0, 0)
    };
    store
        .process(&shipping, |tx| insert_effect(tx, "k0", b""))
        .await
        .expect("shipping");
    // An operator rewinds the group to offset 2: k2 (offset 2) can be redelivered again.
    store
        .reset_offset(GROUP, TOPIC, 0, 2)
        .await
        .expect("rewind");
    let retention = Duration::from_secs(3600);
    let now = SystemTime::now();
    assert_eq!(
        store.prune(GROUP, retention, now).await.expect("prune"),
        0,
        "all too young"
    );
    let later = now + 2 * retention;
    assert_eq!(
        store.prune(GROUP, retention, later).await.expect("prune"),
        2
    );
    assert_eq!(store.key_state(GROUP, "k0").await.expect("k0"), None);
    assert_eq!(store.key_state(GROUP, "k1").await.expect("k1"), None);
    let kept = store.key_state(GROUP, "k2").await.expect("k2");
    assert_eq!(
        kept.map(|r| r.state),
        Some(KeyState::Completed),
        "at the committed offset"
    );
    let other = store
        .key_state("shipping", "k0")
        .await
        .expect("shipping k0");
    assert!(other.is_some(), "another group's records are its own");
    // The replayed k2 is still recognised.
    let out = store.process(&req("k2", 0, 2), must_not_run).await;
    assert_eq!(
        out.expect("replay"),
        Outcome::Duplicate {
            stored_result: vec![]
        }
    );
}

async fn placeholders_bind_by_number_and_values_round_trip(db: TestDb) {
    let store = db.open().await;
    let blob = if store.backend() == Backend::Postgres {
        "BYTEA"
    } else {
        "BLOB"
    };
    exec(
        &store,
        &format!("CREATE TABLE vals (i BIGINT, r DOUBLE PRECISION, t TEXT, b {blob}, n BIGINT)"),
    )
    .await;
    let values = vec![
        SqlValue::Blob(vec![0, 1, 255]),
        SqlValue::Text("héllo".into()),
        SqlValue::Real(2.5),
        SqlValue::Int(-7),
        SqlValue::Null,
    ];
    let inserted = store
        .transaction(|tx| async move {
            // Out of order, and $4 twice.
            tx.execute(
                "INSERT INTO vals (i, r, t, b, n) VALUES ($4, $3, $2, $1, $5)",
                &values,
            )
            .await?;
            tx.execute(
                "INSERT INTO vals (i, r, t, b, n) VALUES ($4, $3, $2, $1, $5)",
                &values,
            )
            .await?;
            tx.execute(
                "UPDATE vals SET i = i + 1 WHERE i = $1 AND $1 < 0",
                &[SqlValue::Int(-7)],
            )
            .await
        })
        .await
        .expect("insert");
    assert_eq!(inserted, 2);
    let rows = query(
        &store,
        "SELECT i, r, t, b, n FROM vals WHERE t = $1",
        &["héllo".into()],
    )
    .await;
    let want = vec![
        SqlValue::Int(-6),
        SqlValue::Real(2.5),
        SqlValue::Text("héllo".into()),
        SqlValue::Blob(vec![0, 1, 255]),
        SqlValue::Null,
    ];
    assert_eq!(rows, [want.clone(), want]);
    // A missing placeholder is an error on both backends, not a silent NULL.
    let err = store
        .transaction(|tx| async move {
            tx.query("SELECT $1, $3", &[1.into(), 2.into(), 3.into()])
                .await
        })
        .await;
    assert!(err.is_err(), "{err:?}");
}

async fn schema_creation_is_idempotent(db: TestDb) {
    // Several handles opening (and migrating) at once, then again.
    let (a, b, c) = tokio::join!(db.open(), db.open(), db.open());
    let again = db.open().await;
    let versions = query(&again, "SELECT version FROM courier_schema_version", &[]).await;
    assert_eq!(versions, [[SqlValue::Int(1)]]);
    for store in [&a, &b, &c] {
        let key = "k";
        let out = store
            .process(&req(key, 0, 0), |tx| insert_effect(tx, key, b"x"))
            .await;
        assert!(matches!(
            out,
            Ok(Outcome::Applied { .. } | Outcome::Duplicate { .. })
        ));
    }
    assert_eq!(effects(&again, "k").await, 1);
}

/// A batch of `(request, result)`: the effect of a request with a result inserts one row for
/// its key and returns the result; one without must not run (a duplicate).
async fn planned_batch(
    store: &ProcessedStore,
    plan: &[(ProcessRequest<'_>, Option<&'static [u8]>)],
) -> Vec<Outcome> {
    let reqs: Vec<ProcessRequest<'_>> = plan.iter().map(|(r, _)| *r).collect();
    let effect = |i: usize, tx| {
        let (req, result) = plan[i];
        let key = std::str::from_utf8(req.idempotency_key).expect("a text key");
        async move {
            match result {
                Some(result) => insert_effect(tx, key, result).await,
                None => must_not_run(tx).await,
            }
        }
    };
    store.process_batch(&reqs, effect).await.expect("batch")
}

fn applied(result: &[u8]) -> Outcome {
    Outcome::Applied {
        result: result.to_vec(),
    }
}

fn duplicate(stored_result: &[u8]) -> Outcome {
    Outcome::Duplicate {
        stored_result: stored_result.to_vec(),
    }
}

async fn batch_applies_every_effect_and_moves_each_offset_to_its_max_plus_one(db: TestDb) {
    let store = db.open().await;
    // Partition 1 is at 21 already: the batch's lower offsets there must not move it back.
    store
        .process(&req("before", 1, 20), |tx| insert_effect(tx, "before", b""))
        .await
        .expect("before");
    let outcomes = planned_batch(
        &store,
        &[
            (req("a", 0, 5), Some(b"ra")),
            (req("b", 0, 3), Some(b"rb")),
            (req("c", 1, 2), Some(b"rc")),
            (req("d", 0, 9), Some(b"rd")),
            (req("e", 2, 0), Some(b"")),
        ],
    )
    .await;
    let want = [b"ra", b"rb", b"rc", b"rd", &b""[..]].map(applied);
    assert_eq!(outcomes, want);
    for key in ["a", "b", "c", "d", "e"] {
        assert_eq!(effects(&store, key).await, 1, "{key}");
    }
    assert_eq!(offsets(&store).await, [(0, 10), (1, 21), (2, 1)]);
    let d = record(&store, "d").await;
    assert_eq!(d.state, KeyState::Completed);
    assert_eq!(d.result.as_deref(), Some(&b"rd"[..]));
    assert_eq!((d.topic.as_str(), d.partition, d.offset), (TOPIC, 0, 9));
    // Nothing to do is nothing done.
    assert_eq!(planned_batch(&store, &[]).await, []);
    assert_eq!(offsets(&db.open().await).await, [(0, 10), (1, 21), (2, 1)]);
}

async fn batch_skips_keys_completed_before_or_earlier_in_the_batch(db: TestDb) {
    let store = db.open().await;
    store
        .process(&req("old", 0, 0), |tx| insert_effect(tx, "old", b"r-old"))
        .await
        .expect("old");
    // "new" twice (a producer's retry stored as a new record), and "old" redelivered.
    let outcomes = planned_batch(
        &store,
        &[
            (req("new", 0, 1), Some(b"r-new")),
            (req("old", 0, 2), None),
            (req("new", 0, 3), None),
            (req("other", 0, 4), Some(b"r-other")),
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        [
            applied(b"r-new"),
            duplicate(b"r-old"),
            duplicate(b"r-new"),
            applied(b"r-other")
        ]
    );
    for key in ["old", "new", "other"] {
        assert_eq!(effects(&store, key).await, 1, "{key}");
    }
    let new = record(&store, "new").await;
    assert_eq!(new.offset, 1, "the record is the first appearance's");
    assert_eq!(offsets(&store).await, [(0, 5)]);
}

async fn batch_failing_at_one_message_rolls_back_everything_and_names_it(db: TestDb) {
    let store = db.open().await;
    store
        .process(&req("k1", 0, 1), |tx| insert_effect(tx, "k1", b"r1"))
        .await
        .expect("k1");
    let keys = ["k2", "k3", "k4", "k5", "k6"];
    let reqs: Vec<ProcessRequest<'_>> = keys
        .iter()
        .zip(2..)
        .map(|(key, offset)| req(key, 0, offset))
        .collect();
    let assert_nothing_kept = |what: &'static str| {
        let store = store.clone();
        async move {
            for key in keys {
                assert_eq!(effects(&store, key).await, 0, "{what}: {key}'s effect");
                let record = store.key_state(GROUP, key).await.expect("key");
                assert_eq!(record, None, "{what}: {key}");
            }
            assert_eq!(offsets(&store).await, [(0, 2)], "{what}: offsets unchanged");
        }
    };

    // The effect of message 3 (k5) fails after its insert.
    let err = store
        .process_batch(&reqs, |i, tx| async move {
            insert_effect(tx, keys[i], b"r").await?;
            match i {
                3 => Err(ToolkitError::Handler("ledger down".into())),
                _ => Ok(b"r".to_vec()),
            }
        })
        .await
        .expect_err("message 3 failed");
    let ToolkitError::BatchRolledBack { index, source } = &err else {
        panic!("not a batch error: {err}");
    };
    assert_eq!(*index, Some(3));
    assert!(
        matches!(&**source, ToolkitError::Handler(m) if m == "ledger down"),
        "{source}"
    );
    assert_eq!(
        err.to_string(),
        "batch rolled back at message 3: handler: ledger down"
    );
    assert_nothing_kept("a failed effect").await;

    // The effect of message 1 (k3) swallows a failed statement: the batch still fails there.
    let err = store
        .process_batch(&reqs, |i, tx| async move {
            if i == 1 {
                let bad = tx
                    .execute("INSERT INTO no_such_table VALUES (1)", &[])
                    .await;
                assert!(bad.is_err(), "the table does not exist");
            }
            insert_effect(tx, keys[i], b"r").await
        })
        .await
        .expect_err("message 1's statement failed");
    assert!(
        matches!(err, ToolkitError::BatchRolledBack { index: Some(1), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no_such_table"), "{err}");
    assert_nothing_kept("a failed statement").await;

    // The same batch again, with effects that work: it is applied once.
    let outcomes = store
        .process_batch(&reqs, |i, tx| insert_effect(tx, keys[i], b"ok"))
        .await
        .expect("the batch again");
    assert_eq!(outcomes, [b"ok"; 5].map(|r| applied(r)));
    for key in keys {
        assert_eq!(effects(&store, key).await, 1, "{key}");
    }
    assert_eq!(offsets(&store).await, [(0, 7)]);
}
