//! `courier demo orders` end to end: the real binary starts a Courier broker behind its fault
//! proxy, the Order API and the four services as separate processes, injects every fault, and
//! audits the data.
//!
//! - Under service SIGKILLs, lost acks, cut connections, a broker restart and client retries,
//!   Payment and Inventory apply every order exactly once, Notification tells every order at
//!   least once (and the duplicates are counted), Analytics never counts a record twice, every
//!   acknowledged order is in the topic and every user's orders stay in order: exit 0.
//! - The audit is not blind: Payment on the at-least-once runner, with no idempotency key,
//!   charges the clients' retried orders twice, and the run fails (exit 1) naming it.
//! - Against a broker given with `--bootstrap` the same pipeline and audit run (the fault
//!   proxy still sits in every connection).
//! - Bad flags get a clear message and exit status 2.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn demo(dir: &Path, args: &[&str]) -> (Output, Value) {
    let json = dir.join("report.json");
    let run_dir = dir.join("run");
    let mut all = vec!["demo", "orders", "--no-progress", "--drain-timeout", "240s"];
    all.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(&all)
        .arg("--report-json")
        .arg(&json)
        .arg("--dir")
        .arg(&run_dir)
        .output()
        .expect("run courier demo orders");
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (out, report)
}

fn describe(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
    format!(
        "exit {:?}\nstdout:\n{}\nstderr tail:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == name))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The checks every passing run must satisfy, from the JSON report.
fn assert_every_guarantee(report: &Value, ctx: &str) {
    assert_eq!(report["ok"], true, "{ctx}");
    let topic = &report["topic"];
    let orders = n(&topic["distinct_orders"]);
    assert_eq!(orders, n(&report["order_api"]["acknowledged"]), "{ctx}");
    assert_eq!(n(&topic["acknowledged_missing"]), 0, "{ctx}");
    assert_eq!(n(&topic["users_out_of_order"]), 0, "{ctx}");
    for name in ["payment", "inventory"] {
        let s = service(report, name);
        assert_eq!(
            n(&s["orders_once"]),
            orders,
            "{name} applies every order once: {ctx}"
        );
        assert_eq!(n(&s["orders_more_than_once"]), 0, "{name}: {ctx}");
        assert_eq!(n(&s["orders_never"]), 0, "{name}: {ctx}");
        assert_eq!(n(&s["users_out_of_order"]), 0, "{name}: {ctx}");
        assert!(
            s["checks"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["ok"] == true)),
            "{name}: {ctx}"
        );
    }
    let notification = service(report, "notification");
    assert_eq!(n(&notification["orders_never"]), 0, "{ctx}");
    // Every retried order is a second record, notified again: duplicates at least those.
    assert!(
        n(&notification["duplicate_effects"]) >= n(&topic["duplicate_records"]),
        "{ctx}"
    );
    let analytics = service(report, "analytics");
    assert_eq!(n(&analytics["records_processed_twice"]), 0, "{ctx}");
    assert!(n(&analytics["effects"]) <= n(&topic["records"]), "{ctx}");
}

#[test]
fn every_guarantee_holds_under_every_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, report) = demo(
        dir.path(),
        &[
            "--rate",
            "2000",
            "--duration",
            "20",
            "--users",
            "500",
            "--seed",
            "11",
        ],
    );
    let ctx = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert_every_guarantee(&report, &ctx);
    let faults = &report["faults"];
    assert!(n(&faults["service_kills"]) >= 1, "{ctx}");
    assert_eq!(n(&faults["broker_restarts"]), 1, "{ctx}");
    assert!(n(&faults["acks_dropped"]) >= 1, "{ctx}");
    assert!(n(&faults["connections_cut"]) >= 1, "{ctx}");
    // The clients' retries put real duplicates in the topic, which the exactly-once services
    // had to recognise by their idempotency keys.
    assert!(n(&report["topic"]["duplicate_records"]) >= 20, "{ctx}");
    assert_eq!(n(&report["order_api"]["placed"]), 40_000, "{ctx}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Every service kept its guarantee."),
        "{ctx}"
    );
    // Inventory's scarce products sold out, and never below zero.
    let inventory = service(&report, "inventory");
    let stock = inventory["checks"]
        .as_array()
        .and_then(|c| {
            c.iter().find(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|s| s.contains("never negative"))
            })
        })
        .expect("the stock check");
    assert!(
        stock["detail"]
            .as_str()
            .is_some_and(|d| !d.starts_with("0 orders refused")),
        "{ctx}"
    );
}

#[test]
fn at_least_once_payment_double_charges_and_the_audit_fails_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, report) = demo(
        dir.path(),
        &[
            "--rate",
            "1000",
            "--duration",
            "8",
            "--users",
            "200",
            "--seed",
            "12",
            "--faults",
            "producer-retry",
            "--payment-guarantee",
            "at-least-once",
        ],
    );
    let ctx = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    assert_eq!(report["ok"], false, "{ctx}");
    let payment = service(&report, "payment");
    let retried = n(&report["topic"]["duplicate_records"]);
    assert!(retried >= 10, "{ctx}");
    // Without the idempotency key every retried order is charged again.
    assert_eq!(n(&payment["orders_more_than_once"]), retried, "{ctx}");
    assert!(
        report["broken"]
            .as_array()
            .is_some_and(|b| b.iter().any(|l| l
                .as_str()
                .is_some_and(|l| l.starts_with("payment:") && l.contains("more than once")))),
        "{ctx}"
    );
    // Inventory, still exactly-once, skipped the same duplicates.
    assert_eq!(
        n(&service(&report, "inventory")["orders_more_than_once"]),
        0,
        "{ctx}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BROKEN"),
        "{ctx}"
    );
}

#[test]
fn runs_against_a_broker_given_with_bootstrap() {
    let broker = support::TestBroker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let bootstrap = broker.bootstrap();
    let (out, report) = demo(
        dir.path(),
        &[
            "--bootstrap",
            &bootstrap,
            "--rate",
            "1000",
            "--duration",
            "10",
            "--users",
            "200",
            "--seed",
            "13",
        ],
    );
    let ctx = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert_every_guarantee(&report, &ctx);
    assert_eq!(report["settings"]["broker"], bootstrap.as_str(), "{ctx}");
    // The default fault list minus the broker restart, which is not the demo's to do.
    let enabled: Vec<&str> = report["settings"]["faults_enabled"]
        .as_array()
        .expect("faults_enabled")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !enabled.contains(&"broker-restart") && enabled.contains(&"lost-ack"),
        "{ctx}"
    );
    assert!(n(&report["faults"]["acks_dropped"]) >= 1, "{ctx}");
}

#[test]
fn bad_flags_get_a_message_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, expect) in [
        (vec!["--rate", "0"], "--rate"),
        (vec!["--users", "0"], "--users"),
        (vec!["--faults", "kill-everything"], "kill-everything"),
        (
            vec!["--bootstrap", "127.0.0.1:1", "--faults", "broker-restart"],
            "broker-restart",
        ),
    ] {
        let (out, _) = demo(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}
