//! `courier serve` settings: flags, env vars and the TOML file (in that precedence), `--help`,
//! and clear errors with a non-zero exit for bad settings.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::kafka::*;
use support::TestBroker;

fn courier() -> Command {
    Command::new(env!("CARGO_BIN_EXE_courier"))
}

#[test]
fn help_documents_every_setting() {
    let out = courier().args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--config",
        "--max-frame-bytes",
        "--max-connections",
        "--flush-ms",
        "--retention-ms",
        "--auto-create-topics",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
    assert!(help.contains("COURIER_LISTEN"), "env vars are documented");
}

#[test]
fn bad_settings_fail_with_a_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--listen".into(), "not-an-address".into()],
            "binding not-an-address",
        ),
        (
            vec!["--num-partitions".into(), "0".into()],
            "--num-partitions must be at least 1",
        ),
        (
            vec![
                "--config".into(),
                tmp.path().join("missing.toml").display().to_string(),
            ],
            "reading config file",
        ),
    ];
    for (args, expect) in cases {
        let out = courier()
            .arg("serve")
            .arg("--data-dir")
            .arg(tmp.path().join("d"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expect),
            "{args:?}: stderr should say {expect:?}:\n{err}"
        );
    }
    let file = tmp.path().join("typo.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").expect("write");
    let out = courier()
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen"), "an unknown key is named:\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_beats_env_beats_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("courier.toml");
    std::fs::write(
        &file,
        "num-partitions = 2\nauto-create-topics = true\nmax-connections = 50\n",
    )
    .expect("write");
    let cfg = file.display().to_string();

    // File only.
    let b = TestBroker::start_with(&["--config", &cfg]);
    assert_eq!(partitions_of_new_topic(&b.bootstrap()).await, 2);
    drop(b);
    // Env beats the file.
    std::env::set_var("COURIER_NUM_PARTITIONS", "5");
    let b = TestBroker::start_with(&["--config", &cfg]);
    assert_eq!(partitions_of_new_topic(&b.bootstrap()).await, 5);
    drop(b);
    // The flag beats both.
    let b = TestBroker::start_with(&["--config", &cfg, "--num-partitions", "7"]);
    std::env::remove_var("COURIER_NUM_PARTITIONS");
    assert_eq!(partitions_of_new_topic(&b.bootstrap()).await, 7);
}

async fn partitions_of_new_topic(bootstrap: &str) -> usize {
    let p = producer(bootstrap, &[("acks", "all")]);
    produce_keyed(&p, "auto", &[("k".into(), b"v".to_vec())]).await;
    let c = consumer(bootstrap, &[]);
    let md = rdkafka::consumer::Consumer::fetch_metadata(&c, Some("auto"), Duration::from_secs(10))
        .expect("md");
    md.topics()[0].partitions().len()
}

#[test]
fn a_data_dir_serves_one_broker_at_a_time() {
    let first = TestBroker::start();
    let out = courier()
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(first.data_dir())
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "a second broker on the same data dir is refused"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another broker"), "{err}");
}

#[test]
fn bench_produce_reports_its_numbers() {
    // Not a performance check: the benchmark runs end to end and says what it measured.
    let out = courier()
        .args([
            "--log-level",
            "warn",
            "bench",
            "produce",
            "--messages",
            "20000",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("delivered 20000  failed 0"), "{text}");
    assert!(text.contains("p99"), "{text}");
    let out = courier()
        .args([
            "--log-level",
            "warn",
            "bench",
            "produce",
            "--transactional",
            "--messages",
            "2000",
            "--txn-messages",
            "100",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2000 msgs of 100 B in 20 transactions of 100"),
        "{text}"
    );
}
