//! `courier verify check` runs the checker on a history file: exit 0 when the run kept its
//! guarantee, 1 when a forbidden anomaly is found, 2 when the history cannot be read; the
//! report goes to stdout, errors to stderr, and `--html`/`--json` write their files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn history(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../courier-verify/tests/histories")
        .join(name)
}

fn courier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .output()
        .expect("run courier")
}

fn verify(name: &str, extra: &[&str]) -> (i32, String, String) {
    let path = history(name);
    let mut args = vec!["verify", "check", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = courier(&args);
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_clean_history_exits_0() {
    let (code, stdout, stderr) = verify("clean_exactly_once_txn.jsonl", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("judged as: exactly-once at read_committed"));
    assert!(stdout.contains("  exactly-once   valid"));
    assert!(stdout.ends_with("RESULT: VALID: nothing exactly-once forbids was found\n"));
    assert_eq!(stderr, "");
}

#[test]
fn a_forbidden_anomaly_exits_1_with_its_examples() {
    let (code, stdout, _) = verify("lost_write.jsonl", &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("  lost-write                   1  FORBIDDEN: found"));
    assert!(stdout.contains("  1. t=0.013s key k1 offsets [1, 2] values [2] ops [3, 12]"));
    assert!(stdout.contains("     faults: kill-broker [0.005s, 0.009s]"));
    assert!(stdout.contains("RESULT: INVALID: at-least-once forbids lost-write (1)"));
}

#[test]
fn the_guarantee_flag_overrides_the_header() {
    // Lost writes are allowed at most once.
    let (code, stdout, _) = verify("lost_write.jsonl", &["--guarantee", "at-most-once"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("judged as: at-most-once at read_committed (overriding the header)"));
    // Aborted reads are not looked for at read_uncommitted.
    let (code, _, _) = verify("aborted_read.jsonl", &[]);
    assert_eq!(code, 1);
    let (code, stdout, _) = verify("aborted_read.jsonl", &["--isolation", "read_uncommitted"]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn examples_flag_caps_the_examples() {
    let (code, stdout, _) = verify("unseen.jsonl", &["--examples", "1"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("  ... and 1 more"));
}

#[test]
fn unreadable_input_exits_2_with_a_clear_message() {
    let (code, stdout, stderr) = verify("malformed.jsonl", &[]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(
        stderr.ends_with(
            "malformed.jsonl: line 3: not a valid operation: EOF while parsing a list (column 89)\n"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = verify("no_such_history.jsonl", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("courier verify: cannot read "),
        "{stderr}"
    );
    let (code, _, stderr) = verify("duplicate.jsonl", &["--guarantee", "twice"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown guarantee \"twice\""), "{stderr}");
}

#[test]
fn html_and_json_reports_are_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("report.html");
    let json = dir.path().join("report.json");
    let (code, _, stderr) = verify(
        "duplicate.jsonl",
        &[
            "--html",
            html.to_str().expect("utf-8"),
            "--json",
            json.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg"));
    assert!(page.contains("cut-connections"));
    let report = std::fs::read_to_string(&json).expect("json written");
    assert!(report.contains("\"valid\": false"));
    assert!(report.contains("\"forbidden\": [\n    \"duplicate\"\n  ]"));

    let (code, _, stderr) = verify(
        "duplicate.jsonl",
        &[
            "--html",
            dir.path().join("missing/dir.html").to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("courier verify: cannot write "),
        "{stderr}"
    );
}
