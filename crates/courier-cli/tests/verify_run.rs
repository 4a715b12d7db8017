//! `courier verify run` end to end: the real binary starts a Courier broker behind its fault
//! proxy, runs librdkafka producers and consumers while the nemesis injects faults, records
//! the history and checks it.
//!
//! - Courier keeps exactly-once under broker SIGKILLs, pauses, lost acks, cut connections,
//!   delays, network partitions and client crashes — for the idempotent producer, for
//!   transactions and for read-process-write transactions that commit consumer offsets (the
//!   CI verification; `VERIFY_SEED` picks another schedule).
//! - The verifier is not blind: the same lost acks make a non-idempotent acks=all producer
//!   store values twice, and the run is judged invalid under exactly-once (exit 1) and
//!   valid under at-least-once, from the same history.
//! - Against a broker given with `--bootstrap` (one the tool did not start) the proxy still
//!   sits in every connection: the lost acks reach it too.
//! - A full disk (a tmpfs under the data dir, filled to ENOSPC) stalls writes without losing
//!   anything, and they resume once there is room — no restart needed.
//! - Bad arguments get a clear message and exit status 2.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn courier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run courier")
}

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// `courier verify run` with these arguments, the run's seed, output into `out_dir` and no
/// progress bar.
fn verify_run(out_dir: &Path, args: &[&str]) -> Output {
    let seed = seed();
    let out = out_dir.to_str().expect("utf-8");
    let mut all = vec!["verify", "run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--seed", &seed, "--out", out, "--no-progress"]);
    courier(&all)
}

fn seed() -> String {
    std::env::var("VERIFY_SEED").unwrap_or_else(|_| "20261127".into())
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr tail:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn count(report: &Value, section: &str, outcome: &str) -> u64 {
    report["stats"][section][outcome].as_u64().unwrap_or(0)
}

#[test]
fn idempotent_producers_keep_exactly_once_under_faults() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("run");
    let out = verify_run(
        &out_dir,
        &[
            "--duration",
            "45s",
            "--mode",
            "idempotent",
            "--faults",
            "kill-broker,pause-broker,lost-ack,cut-connections,delay,partition,client-crash",
            "--fault-interval",
            "3s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = report(&out_dir);
    assert_eq!(r["valid"], Value::Bool(true));
    assert!(count(&r, "sends", "ok") > 1000, "{}", describe(&out));
    assert!(r["stats"]["values_read"].as_u64().unwrap_or(0) > 1000);
    let faults = r["faults"].as_array().map_or(0, Vec::len);
    assert!(faults >= 3, "the schedule injected only {faults} faults");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RESULT: VALID"), "{text}");
    for file in ["history.jsonl", "report.txt", "report.html"] {
        assert!(out_dir.join(file).is_file(), "{file} written");
    }
}

#[test]
fn transactions_keep_exactly_once_under_broker_kills() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("run");
    let out = verify_run(
        &out_dir,
        &[
            "--duration",
            "20s",
            "--mode",
            "transactional",
            "--abort-rate",
            "0.2",
            "--schedule",
            "kill-broker@4s+2s,lost-ack@9s+3s,pause-broker@13s+1s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = report(&out_dir);
    assert_eq!(r["valid"], Value::Bool(true));
    assert!(count(&r, "txns", "ok") > 100, "{}", describe(&out));
    assert!(
        count(&r, "txns", "fail") > 10,
        "deliberate aborts are recorded as failed transactions"
    );
}

#[test]
fn read_process_write_transactions_keep_exactly_once_under_faults() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("run");
    let out = verify_run(
        &out_dir,
        &[
            "--duration",
            "20s",
            "--mode",
            "rpw",
            "--schedule",
            "kill-broker@4s+2s,lost-ack@8s+3s,client-crash@12s+1s,pause-broker@14s+1s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = report(&out_dir);
    assert_eq!(r["valid"], Value::Bool(true));
    assert!(count(&r, "txns", "ok") > 100, "{}", describe(&out));
    assert!(count(&r, "sends", "ok") > 100, "the idempotent feeders ran");
}

#[test]
fn lost_acks_duplicate_a_plain_producer_and_the_verifier_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("run");
    let out = verify_run(
        &out_dir,
        &[
            "--duration",
            "12s",
            "--mode",
            "acks-all",
            "--guarantee",
            "exactly-once",
            "--schedule",
            "lost-ack@3s+5s",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = report(&out_dir);
    assert_eq!(r["valid"], Value::Bool(false));
    assert_eq!(r["forbidden"], serde_json::json!(["duplicate"]), "{r}");
    // The same history is fine for what a retrying acks=all producer promises.
    let history = out_dir.join("history.jsonl");
    let again = courier(&[
        "verify",
        "check",
        history.to_str().expect("utf-8"),
        "--guarantee",
        "at-least-once",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
}

#[test]
fn network_faults_reach_a_broker_given_with_bootstrap() {
    // A broker this tool did not start advertises its own address; the proxy rewrites it in
    // Metadata answers, so the producers' connections (and their lost acks) go through it.
    let broker = support::TestBroker::start();
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("run");
    let out = verify_run(
        &out_dir,
        &[
            "--bootstrap",
            &broker.addr,
            "--duration",
            "12s",
            "--mode",
            "acks-all",
            "--guarantee",
            "exactly-once",
            "--schedule",
            "lost-ack@3s+5s,cut-connections@9s+1s",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = report(&out_dir);
    assert_eq!(r["forbidden"], serde_json::json!(["duplicate"]), "{r}");
}

#[test]
fn a_full_disk_stalls_writes_and_they_resume_once_there_is_room() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("run");
    let out = verify_run(
        &out_dir,
        &[
            "--duration",
            "16s",
            "--mode",
            "idempotent",
            "--schedule",
            "disk-full@4s+4s",
        ],
    );
    if out.status.code() == Some(2) && String::from_utf8_lossy(&out.stderr).contains("root") {
        eprintln!(
            "skipping: the disk-full fault needs root: {}",
            describe(&out)
        );
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Acknowledged sends after the disk had room again: the partitions stayed writable.
    let history = std::fs::read_to_string(out_dir.join("history.jsonl")).expect("history");
    let ops: Vec<Value> = history
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let healed = ops
        .iter()
        .find(|o| o["f"] == "fault" && o["value"]["phase"] == "stop")
        .and_then(|o| o["time"].as_u64())
        .expect("the disk-full window ended");
    let after = ops
        .iter()
        .filter(|o| o["f"] == "send" && o["type"] == "ok")
        .filter(|o| o["time"].as_u64().unwrap_or(0) > healed)
        .count();
    assert!(
        after > 200,
        "only {after} sends acknowledged after the disk had room"
    );
    let log = std::fs::read_to_string(out_dir.join("broker.log")).expect("broker log");
    assert!(
        log.contains("no space left"),
        "the fault really filled the disk"
    );
    assert!(!log.contains("poisoned"), "no log was taken out of service");
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let out = courier(&[
        "verify",
        "run",
        "--faults",
        "meteor-strike",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("meteor-strike") && err.contains("kill-broker"),
        "{err}"
    );

    let out = courier(&[
        "verify",
        "run",
        "--bootstrap",
        "127.0.0.1:1",
        "--faults",
        "kill-broker",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not this tool's to kill"), "{err}");

    let out = courier(&["verify", "run", "--duration", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
}
