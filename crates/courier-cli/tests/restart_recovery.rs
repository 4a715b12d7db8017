//! Restarts: a SIGTERM shuts down cleanly and the next start skips recovery; after a SIGKILL
//! only the tail (active segment) is scanned, however large the log; retention deletes old
//! segments on its own schedule.

mod support;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use support::kafka::*;
use support::TestBroker;

fn scanned_bytes(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("recovered partition"))
        .filter_map(|l| {
            let plain: String = l.chars().filter(|c| !c.is_control()).collect();
            let at = plain.find("scanned_bytes")?;
            let digits: String = plain[at..]
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_a_clean_shutdown_and_data_survives() {
    let mut broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "kept", 2).await;
    let p = producer(&broker.bootstrap(), &[("acks", "all")]);
    let records: Vec<(String, Vec<u8>)> = (0..500)
        .map(|i| (format!("k{i}"), format!("v{i}").into_bytes()))
        .collect();
    produce_keyed(&p, "kept", &records).await;
    drop(p);
    let status = broker.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(broker.log().contains("storage closed cleanly"));
    let before = broker.log().len();
    broker.restart();
    let reads = read_all(&broker.bootstrap(), "kept", 2, 500, Duration::from_secs(20));
    assert_eq!(reads.len(), 500);
    let after = &broker.log()[before..];
    assert!(
        !after.contains("recovered partition"),
        "no recovery scan after a clean shutdown:\n{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_only_the_active_segment_is_scanned() {
    let segment = 64 * 1024;
    let mut broker = TestBroker::start_with(&["--segment-bytes", &segment.to_string()]);
    create_topic(&broker.bootstrap(), "big", 1).await;
    let p = producer(
        &broker.bootstrap(),
        &[("acks", "all"), ("batch.size", "16000")],
    );
    let value = vec![7u8; 1000];
    let records: Vec<(String, Vec<u8>)> = (0..3000)
        .map(|i| (format!("k{i}"), value.clone()))
        .collect();
    produce_keyed(&p, "big", &records).await;
    drop(p);
    let segments = std::fs::read_dir(broker.data_dir().join("big-0"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.path().extension().is_some_and(|x| x == "log"))
                .unwrap_or(false)
        })
        .count();
    assert!(segments > 20, "the log spans many segments ({segments})");
    broker.kill();
    broker.restart();
    let scanned = scanned_bytes(&broker.log());
    assert!(
        !scanned.is_empty(),
        "recovery logged what it scanned:\n{}",
        broker.log()
    );
    for s in &scanned {
        assert!(
            *s <= segment as u64 + 20_000,
            "scanned {s} bytes: only the tail, not the ~3 MB log"
        );
    }
    let reads = read_all(&broker.bootstrap(), "big", 1, 3000, Duration::from_secs(30));
    assert_eq!(reads.len(), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_deletes_old_segments() {
    let broker = TestBroker::start_with(&["--retention-check-interval-ms", "200"]);
    let a = admin(&broker.bootstrap());
    let topic = NewTopic::new("bounded", 1, TopicReplication::Fixed(1))
        .set("segment.bytes", "16384")
        .set("retention.bytes", "65536");
    let r = a
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create");
    assert!(r[0].is_ok(), "{r:?}");
    let p = producer(
        &broker.bootstrap(),
        &[("acks", "all"), ("batch.size", "4000")],
    );
    let value = vec![1u8; 500];
    let records: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|i| (format!("k{i}"), value.clone()))
        .collect();
    produce_keyed(&p, "bounded", &records).await;
    let c = consumer(&broker.bootstrap(), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Retention may run mid-produce and then again; wait until the low watermark has settled
    // (unchanged across several retention passes) before reading from it.
    let mut last = (-1, -1);
    let (low, high) = loop {
        let wm =
            rdkafka::consumer::Consumer::fetch_watermarks(&c, "bounded", 0, Duration::from_secs(5))
                .expect("wm");
        if (wm.0 > 700 && wm == last) || Instant::now() > deadline {
            break wm;
        }
        last = wm;
        std::thread::sleep(Duration::from_millis(700));
    };
    assert_eq!(high, 1000);
    assert!(
        low > 700,
        "retention kept roughly the newest 64 KiB: low watermark {low}"
    );
    let reads = read_all(
        &broker.bootstrap(),
        "bounded",
        1,
        (high - low) as usize,
        Duration::from_secs(20),
    );
    assert_eq!(reads.first().map(|r| r.offset), Some(low));
    assert!(broker.log().contains("retention deleted segments"));
}
