//! Topic administration through librdkafka's admin client and the raw protocol:
//! CreateTopics (RF up to 3, reported truthfully), CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs, DeleteTopics; configs survive a restart.

mod support;

use std::time::Duration;

use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::types::RDKafkaErrorCode;
use support::kafka::*;
use support::{RawClient, TestBroker};

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

async fn config_value(bootstrap: &str, topic: &str, key: &str) -> (String, bool) {
    let r = admin(bootstrap)
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts())
        .await
        .expect("describe_configs");
    let resource = r.into_iter().next().expect("one").expect("ok");
    let entry = resource
        .get(key)
        .unwrap_or_else(|| panic!("{key} described"));
    (entry.value.clone().unwrap_or_default(), entry.is_default)
}

fn incremental(name: &str, ops: &[(&str, i8, Option<&str>)]) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configs(
            ops.iter()
                .map(|(k, op, v)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_config_operation(*op)
                        .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_accepts_rf_up_to_three_and_reports_one_replica() {
    let broker = TestBroker::start();
    let a = admin(&broker.bootstrap());
    let r = a
        .create_topics(
            &[
                NewTopic::new("rf3", 4, TopicReplication::Fixed(3)),
                NewTopic::new("rf4", 1, TopicReplication::Fixed(4)),
                NewTopic::new("zero", 0, TopicReplication::Fixed(1)),
                NewTopic::new("bad name", 1, TopicReplication::Fixed(1)),
            ],
            &opts(),
        )
        .await
        .expect("create_topics");
    assert_eq!(r[0], Ok("rf3".to_string()));
    assert_eq!(
        r[1],
        Err((
            "rf4".to_string(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))
    );
    assert_eq!(
        r[2],
        Err(("zero".to_string(), RDKafkaErrorCode::InvalidPartitions))
    );
    assert_eq!(
        r[3],
        Err(("bad name".to_string(), RDKafkaErrorCode::InvalidTopic))
    );
    let again = a
        .create_topics(
            &[NewTopic::new("rf3", 1, TopicReplication::Fixed(1))],
            &opts(),
        )
        .await
        .expect("create");
    assert_eq!(
        again[0],
        Err(("rf3".to_string(), RDKafkaErrorCode::TopicAlreadyExists))
    );

    let c = consumer(&broker.bootstrap(), &[]);
    let md = rdkafka::consumer::Consumer::fetch_metadata(&c, Some("rf3"), Duration::from_secs(10))
        .expect("metadata");
    let t = &md.topics()[0];
    assert_eq!(t.partitions().len(), 4);
    for p in t.partitions() {
        assert_eq!(p.replicas(), &[0], "one node, one replica: the truth");
        assert_eq!(p.isr(), &[0]);
        assert_eq!(p.leader(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_grow_and_never_shrink() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "grow", 1).await;
    let a = admin(&broker.bootstrap());
    let r = a
        .create_partitions(&[NewPartitions::new("grow", 4)], &opts())
        .await
        .expect("create_partitions");
    assert_eq!(r[0], Ok("grow".to_string()));
    let r = a
        .create_partitions(&[NewPartitions::new("grow", 2)], &opts())
        .await
        .expect("create_partitions");
    assert_eq!(
        r[0],
        Err(("grow".to_string(), RDKafkaErrorCode::InvalidPartitions))
    );
    let r = a
        .create_partitions(&[NewPartitions::new("nope", 2)], &opts())
        .await
        .expect("create_partitions");
    assert_eq!(
        r[0],
        Err((
            "nope".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );
    // The new partitions take writes.
    let p = producer(&broker.bootstrap(), &[("acks", "all")]);
    for partition in 0..4 {
        p.send(
            rdkafka::producer::FutureRecord::<str, str>::to("grow")
                .payload("x")
                .partition(partition),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered to new partition");
    }
    let reads = read_all(&broker.bootstrap(), "grow", 4, 4, Duration::from_secs(20));
    assert_eq!(reads.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_describe_alter_and_survive_restart() {
    let mut broker = TestBroker::start();
    let b = broker.bootstrap();
    let a = admin(&b);
    let created = a
        .create_topics(
            &[NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "3600000")],
            &opts(),
        )
        .await
        .expect("create");
    assert_eq!(created[0], Ok("cfg".to_string()));
    assert_eq!(
        config_value(&b, "cfg", "retention.ms").await,
        ("3600000".into(), false)
    );
    assert_eq!(
        config_value(&b, "cfg", "segment.bytes").await,
        ("1073741824".into(), true)
    );

    // Legacy AlterConfigs replaces the whole set: retention.ms returns to its default.
    let r = a
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("segment.bytes", "1048576")],
            &opts(),
        )
        .await
        .expect("alter");
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(
        config_value(&b, "cfg", "segment.bytes").await,
        ("1048576".into(), false)
    );
    assert_eq!(
        config_value(&b, "cfg", "retention.ms").await,
        ("604800000".into(), true)
    );
    let mut raw = RawClient::connect(&broker.addr);
    let legacy = kafka_protocol::messages::AlterConfigsRequest::default().with_resources(vec![
        kafka_protocol::messages::alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("cfg"))
            .with_configs(vec![
                kafka_protocol::messages::alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("no.such.key"))
                    .with_value(Some(StrBytes::from_static_str("1"))),
            ]),
    ]);
    let resp = raw.call(1, &legacy);
    assert_eq!(
        resp.responses[0].error_code, 40,
        "unknown key refused with INVALID_CONFIG"
    );
    // (rust-rdkafka 0.39's alter_configs reports Ok for a resource-level error, so the check above
    // uses the raw protocol.)

    // IncrementalAlterConfigs: SET, DELETE, APPEND; a bad value refuses the whole resource.
    let resp = raw.call(
        1,
        &incremental(
            "cfg",
            &[
                ("retention.ms", 0, Some("1000")),
                ("segment.bytes", 1, None),
            ],
        ),
    );
    assert_eq!(
        resp.responses[0].error_code, 0,
        "{:?}",
        resp.responses[0].error_message
    );
    let resp = raw.call(
        1,
        &incremental("cfg", &[("cleanup.policy", 2, Some("delete"))]),
    );
    assert_eq!(resp.responses[0].error_code, 0);
    let resp = raw.call(
        1,
        &incremental(
            "cfg",
            &[
                ("retention.ms", 0, Some("5")),
                ("retention.bytes", 0, Some("lots")),
            ],
        ),
    );
    assert_eq!(resp.responses[0].error_code, 40, "INVALID_CONFIG");
    let resp = raw.call(
        1,
        &incremental("cfg", &[("cleanup.policy", 0, Some("compact"))]),
    );
    assert_eq!(
        resp.responses[0].error_code, 40,
        "compaction is not implemented and says so"
    );
    let resp = raw.call(
        1,
        &incremental("missing", &[("retention.ms", 0, Some("5"))]),
    );
    assert_eq!(
        resp.responses[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        config_value(&b, "cfg", "retention.ms").await,
        ("1000".into(), false),
        "the failed request changed nothing"
    );
    assert!(
        config_value(&b, "cfg", "segment.bytes").await.1,
        "DELETE restored the default"
    );

    broker.restart();
    let b = broker.bootstrap();
    assert_eq!(
        config_value(&b, "cfg", "retention.ms").await,
        ("1000".into(), false),
        "persisted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_topics_are_gone_and_recreated_ones_start_empty() {
    let mut broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "doomed", 2).await;
    let p = producer(&b, &[("acks", "all")]);
    produce_keyed(&p, "doomed", &[("k".into(), b"old".to_vec())]).await;
    let a = admin(&b);
    let r = a.delete_topics(&["doomed"], &opts()).await.expect("delete");
    assert_eq!(r[0], Ok("doomed".to_string()));
    let r = a.delete_topics(&["doomed"], &opts()).await.expect("delete");
    assert_eq!(
        r[0],
        Err((
            "doomed".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );
    assert!(
        !broker.data_dir().join("doomed-0").exists(),
        "partition data removed"
    );
    broker.restart();
    let b = broker.bootstrap();
    let r = admin(&b)
        .create_topics(
            &[NewTopic::new("doomed", 1, TopicReplication::Fixed(1))],
            &opts(),
        )
        .await
        .expect("create");
    assert_eq!(r[0], Ok("doomed".to_string()));
    let c = consumer(&b, &[]);
    let wm =
        rdkafka::consumer::Consumer::fetch_watermarks(&c, "doomed", 0, Duration::from_secs(10))
            .expect("wm");
    assert_eq!(wm, (0, 0), "the new topic does not see the old data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creation_follows_the_setting() {
    let on = TestBroker::start_with(&["--num-partitions", "3"]);
    let p = producer(&on.bootstrap(), &[("acks", "all")]);
    produce_keyed(&p, "auto-made", &[("k".into(), b"v".to_vec())]).await;
    let c = consumer(&on.bootstrap(), &[]);
    let md =
        rdkafka::consumer::Consumer::fetch_metadata(&c, Some("auto-made"), Duration::from_secs(10))
            .expect("md");
    assert_eq!(
        md.topics()[0].partitions().len(),
        3,
        "auto-created with --num-partitions"
    );

    let off = TestBroker::start_with(&["--auto-create-topics", "false"]);
    let c = consumer(&off.bootstrap(), &[]);
    let md = rdkafka::consumer::Consumer::fetch_metadata(
        &c,
        Some("never-made"),
        Duration::from_secs(10),
    )
    .expect("md");
    assert_eq!(
        md.topics()[0].error(),
        Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
}
