//! The text, JSON and HTML reports say what the checker found, with examples and faults.

use std::path::PathBuf;

use courier_verify::history::parse_file;
use courier_verify::{check, html, report, CheckOptions, CheckResult, History};

fn load(name: &str) -> (History, CheckResult) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/histories")
        .join(name);
    let h = parse_file(&path).unwrap();
    let r = check(&h, CheckOptions::default());
    (h, r)
}

#[test]
fn the_text_report_counts_judges_and_shows_examples_with_faults() {
    let (_, r) = load("duplicate.jsonl");
    let text = report::text(&r, "duplicate.jsonl", 5);
    println!("{text}");
    for want in [
        "courier verify check: duplicate.jsonl",
        "run: guarantee exactly-once, isolation read_committed, producer idempotent, seed 104",
        "judged as: exactly-once at read_committed\n",
        "  sends   ok 2       fail 0       info 0",
        "  values  sent 2, read 3, over 1 keys",
        "  faults  1 windows: cut-connections [0.003s, 0.010s]",
        "  duplicate                    1  FORBIDDEN: found",
        "  lost-write                   0  forbidden",
        "  G0                           0  allowed",
        "duplicate: 1 found, FORBIDDEN under exactly-once (a record stored twice",
        "  1. t=0.012s key k1 offsets [1, 2] values [2] ops [4, 7]",
        "     value 2 of key k1 is stored at offsets 1, 2",
        "     faults: cut-connections [0.003s, 0.010s]",
        "  at-most-once   INVALID: duplicate",
        "  at-least-once  valid",
        "  exactly-once   INVALID: duplicate",
        "RESULT: INVALID: exactly-once forbids duplicate (1)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn examples_are_capped_and_the_rest_counted() {
    let (_, r) = load("unseen.jsonl");
    let text = report::text(&r, "unseen.jsonl", 1);
    assert!(text.contains("  1. t=0.006s key k1 offsets [1] values [2] ops [5]"));
    assert!(text.contains("     faults: none"));
    assert!(text.contains("  ... and 1 more"));
    assert!(!text.contains("  2. "));
}

#[test]
fn a_clean_history_reports_valid_and_read_uncommitted_skips_aborted_reads() {
    let (h, _) = load("clean_exactly_once_txn.jsonl");
    let r = check(
        &h,
        CheckOptions {
            isolation: Some(courier_verify::Isolation::ReadUncommitted),
            ..CheckOptions::default()
        },
    );
    let text = report::text(&r, "clean", 5);
    assert!(text.contains("judged as: exactly-once at read_uncommitted (overriding the header)"));
    assert!(text.contains("  aborted-read                 0  not checked at read_uncommitted"));
    assert!(text.ends_with("RESULT: VALID: nothing exactly-once forbids was found\n"));
}

#[test]
fn the_json_report_holds_the_same_findings() {
    let (_, r) = load("lost_write.jsonl");
    let json: serde_json::Value = serde_json::from_str(&report::json(&r, 5).unwrap()).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["guarantee"], "at-least-once");
    assert_eq!(json["forbidden"], serde_json::json!(["lost-write"]));
    assert_eq!(
        json["verdicts"],
        serde_json::json!({"at-most-once": true, "at-least-once": false, "exactly-once": false})
    );
    let kinds = json["anomalies"].as_array().unwrap();
    assert_eq!(kinds.len(), 16);
    let lost = kinds.iter().find(|k| k["kind"] == "lost-write").unwrap();
    assert_eq!(lost["count"], 1);
    assert_eq!(lost["forbidden"], true);
    let example = &lost["examples"][0];
    assert_eq!(example["key"], "k1");
    assert_eq!(example["offsets"], serde_json::json!([1, 2]));
    assert_eq!(example["ops"], serde_json::json!([3, 12]));
    assert_eq!(example["faults"][0]["kind"], "kill-broker");
    assert_eq!(example["faults"][0]["stop"], 9_000_000);
    assert_eq!(json["stats"]["sends"]["ok"], 3);
}

#[test]
fn the_html_page_is_self_contained_with_plots_and_fault_bands() {
    let (h, r) = load("poll_skip.jsonl");
    let text = report::text(&r, "poll_skip.jsonl", 5);
    let page = html::page(&h, &r, &text);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
    assert_eq!(page.matches("<svg").count(), 3);
    assert_eq!(page.matches("</svg>").count(), 3);
    assert!(page.contains("<h1 class=\"bad\">INVALID under at-least-once at read_committed</h1>"));
    assert!(page.contains("<title>pause-broker [0.007s, 0.010s]</title>"));
    assert!(page.contains("ok sends/s"));
    assert!(page.contains("<title>poll-skip: from op 5"));
    for external in ["<script", "http://", "https://", "<link", "src="] {
        let allowed_xmlns = external == "http://";
        let hits = page.matches(external).count();
        let xmlns = page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
        assert_eq!(hits, if allowed_xmlns { xmlns } else { 0 }, "{external}");
    }
    // Text from the history is escaped.
    assert!(page.contains("&quot;") || !text.contains('"'));
}
