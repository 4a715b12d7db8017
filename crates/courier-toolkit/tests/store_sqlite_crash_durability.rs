//! A SQLite store killed with SIGKILL keeps every transaction that had committed, whole, and
//! nothing of the one in flight: after reopening, each effect row has its completed key and
//! the offset is exactly past the last committed message.
//!
//! The writer is this test binary run again as a child process (selected by an environment
//! variable): it processes messages one after another, printing each offset once its commit
//! returned; the parent SIGKILLs it mid-stream and reopens the database.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use courier_toolkit::store::{KeyState, Outcome, ProcessRequest, ProcessedStore, SqlValue};

/// Set in the child: the database it writes.
const CHILD_DB: &str = "COURIER_STORE_CRASH_CHILD_DB";
const GROUP: &str = "billing";
const TOPIC: &str = "orders";
/// Commits the parent waits to see before the kill.
const COMMITS_BEFORE_KILL: i64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_effects_survive_sigkill() {
    if let Some(db) = std::env::var_os(CHILD_DB) {
        return child(Path::new(&db)).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "committed_effects_survive_sigkill",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_committed = -1;
    while last_committed + 1 < COMMITS_BEFORE_KILL {
        assert!(Instant::now() < deadline, "the writer is too slow");
        let line = lines
            .next()
            .expect("the writer exited early")
            .expect("read");
        // libtest may print "test ... " on the same line.
        if let Some(rest) = line.split("COMMITTED=").nth(1) {
            last_committed = rest.trim().parse().expect("offset");
        }
    }
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");

    let store = ProcessedStore::open_sqlite(&db).await.expect("reopen");
    let offsets = store
        .committed_offsets(GROUP, TOPIC)
        .await
        .expect("offsets");
    let next = offsets[&0];
    eprintln!("killed after offset {last_committed} was reported; stored next offset: {next}");
    assert!(
        next > last_committed,
        "offset {last_committed} was reported committed; stored next offset is {next}"
    );
    // Everything below the stored offset is complete, with its effect; nothing above.
    let rows = store
        .transaction(|tx| async move {
            tx.query(
                "SELECT idem, COUNT(*) FROM effects GROUP BY idem ORDER BY idem",
                &[],
            )
            .await
        })
        .await
        .expect("effects");
    assert_eq!(rows.len() as i64, next, "one effect per committed message");
    for row in &rows {
        assert_eq!(row[1], SqlValue::Int(1), "effect applied once: {row:?}");
    }
    for offset in 0..next {
        let key = format!("k{offset}");
        let record = store
            .key_state(GROUP, &key)
            .await
            .expect("key")
            .expect(&key);
        assert_eq!(record.state, KeyState::Completed);
        assert_eq!(record.offset, offset);
    }
    assert_eq!(
        store
            .key_state(GROUP, &format!("k{next}"))
            .await
            .expect("key"),
        None
    );
    // Processing resumes where the store says, and the effect is not repeated.
    let out = store
        .process(&req(&format!("k{}", next - 1), next - 1), |_tx| async {
            Err(courier_toolkit::ToolkitError::Handler("ran twice".into()))
        })
        .await
        .expect("duplicate");
    assert!(matches!(out, Outcome::Duplicate { .. }), "{out:?}");
}

fn req(key: &str, offset: i64) -> ProcessRequest<'_> {
    ProcessRequest {
        group: GROUP,
        topic: TOPIC,
        partition: 0,
        offset,
        idempotency_key: key.as_bytes(),
    }
}

/// The writer: processes offsets 0, 1, 2, ... until killed (or until the parent is gone and
/// printing fails).
async fn child(db: &Path) {
    let store = ProcessedStore::open_sqlite(db).await.expect("open");
    store
        .transaction(|tx| async move {
            tx.execute(
                "CREATE TABLE effects (idem TEXT NOT NULL, amount BIGINT NOT NULL)",
                &[],
            )
            .await
        })
        .await
        .expect("effects table");
    for offset in 0..100_000i64 {
        let key = format!("k{offset}");
        let key_ref = key.as_str();
        store
            .process(&req(key_ref, offset), |tx| async move {
                tx.execute(
                    "INSERT INTO effects (idem, amount) VALUES ($1, $2)",
                    &[key_ref.into(), offset.into()],
                )
                .await?;
                Ok(Vec::new())
            })
            .await
            .expect("process");
        println!("COMMITTED={offset}");
    }
}
