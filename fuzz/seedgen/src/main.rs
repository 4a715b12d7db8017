//! Writes the starting corpora for the fuzz targets: valid request frames (without the length
//! prefix) for every API and version Courier serves, and valid v2 record batches.
//!
//! Usage (from `fuzz/`): `cargo run -p courier-fuzz-seedgen [-- OUT_DIR]`; OUT_DIR defaults to
//! `corpus`, and files go to `OUT_DIR/<target>/`.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use courier_protocol::{decode_request, supported_apis};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource as LegacyAlterConfigsResource, AlterableConfig as LegacyAlterableConfig,
};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn s(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

fn topic(v: &'static str) -> TopicName {
    TopicName(s(v))
}

/// Encodes `body` behind a request header at `version`, or `None` if this body cannot be
/// written at that version (a field set that the version lacks).
fn frame(api_key: ApiKey, version: i16, body: &dyn Fn(&mut BytesMut) -> anyhow_free::R) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(s("fuzz-seed")))
        .encode(&mut buf, api_key.request_header_version(version))
        .ok()?;
    body(&mut buf).ok()?;
    Some(buf.freeze())
}

mod anyhow_free {
    pub type R = Result<(), ()>;
}

fn enc<T: Encodable>(msg: &T, version: i16) -> impl Fn(&mut BytesMut) -> anyhow_free::R + '_ {
    move |buf| msg.encode(buf, version).map_err(|_| ())
}

fn batch(compression: Compression, n: usize, with_headers: bool) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut headers = IndexMap::new();
            if with_headers {
                headers.insert(s("h"), Some(Bytes::from_static(b"hv")));
                headers.insert(s("null"), None);
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: 1_700_000_000_000 + i as i64,
                key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}"))),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

struct Out {
    dir: PathBuf,
    count: usize,
}

impl Out {
    fn new(root: &Path, target: &str) -> Out {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        Out { dir, count: 0 }
    }

    fn write(&mut self, name: &str, data: &[u8]) {
        std::fs::write(self.dir.join(format!("seed-{name}")), data).expect("write seed");
        self.count += 1;
    }
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));

    // Record batches: uncompressed (one and several records, with headers), each codec, and
    // two batches back to back.
    let mut batches = vec![
        ("none-1", batch(Compression::None, 1, false)),
        ("none-3-headers", batch(Compression::None, 3, true)),
        ("gzip-2", batch(Compression::Gzip, 2, false)),
        ("snappy-2", batch(Compression::Snappy, 2, false)),
        ("lz4-2", batch(Compression::Lz4, 2, false)),
        ("zstd-2", batch(Compression::Zstd, 2, true)),
    ];
    let mut two = BytesMut::new();
    two.extend_from_slice(&batches[0].1);
    two.extend_from_slice(&batches[1].1);
    batches.push(("two-batches", two.freeze()));
    for target in ["validate_batches", "log_roundtrip"] {
        let mut out = Out::new(&root, target);
        for (name, b) in &batches {
            out.write(name, b);
        }
        println!("{}: {} seeds", out.dir.display(), out.count);
    }

    // Requests: a populated and a default body for every served API at every served version.
    let records = batch(Compression::None, 2, true);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.clone()))])]);
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("t"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(5)
                .with_partition_max_bytes(1 << 20)])]);
    let list_offsets = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic("t")))]));
    let api_versions = ApiVersionsRequest::default()
        .with_client_software_name(s("librdkafka"))
        .with_client_software_version(s("2.3.0"));
    let create_topics = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("t"))
            .with_num_partitions(3)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("1000")))])]);
    let delete_topics_v = DeleteTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topic_names(vec![topic("t")]);
    let delete_topics_n = DeleteTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteTopicState::default().with_name(Some(topic("t")))]);
    let delete_records = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(3)])]);
    let describe_configs = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_configuration_keys(Some(vec![s("retention.ms")])),
    ]);
    let alter_configs = AlterConfigsRequest::default().with_resources(vec![
        LegacyAlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_configs(vec![LegacyAlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("1000")))]),
    ]);
    let create_partitions = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic("t"))
            .with_count(4)]);
    let incremental = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(s("1000")))]),
    ]);

    let mut out = Out::new(&root, "decode_request");
    for (api_key, range) in supported_apis() {
        for v in range.min..=range.max {
            // Each populated variant, then the default body as a fallback.
            let bodies: Vec<Box<dyn Fn(&mut BytesMut) -> anyhow_free::R + '_>> = match api_key {
                ApiKey::Produce => vec![Box::new(enc(&produce, v))],
                ApiKey::Fetch => vec![Box::new(enc(&fetch, v))],
                ApiKey::ListOffsets => vec![Box::new(enc(&list_offsets, v))],
                ApiKey::Metadata => vec![Box::new(enc(&metadata, v))],
                ApiKey::ApiVersions => vec![Box::new(enc(&api_versions, v))],
                ApiKey::CreateTopics => vec![Box::new(enc(&create_topics, v))],
                ApiKey::DeleteTopics => vec![
                    Box::new(enc(&delete_topics_v, v)),
                    Box::new(enc(&delete_topics_n, v)),
                ],
                ApiKey::DeleteRecords => vec![Box::new(enc(&delete_records, v))],
                ApiKey::DescribeConfigs => vec![Box::new(enc(&describe_configs, v))],
                ApiKey::AlterConfigs => vec![Box::new(enc(&alter_configs, v))],
                ApiKey::CreatePartitions => vec![Box::new(enc(&create_partitions, v))],
                ApiKey::IncrementalAlterConfigs => vec![Box::new(enc(&incremental, v))],
                _ => vec![],
            };
            let mut written = 0;
            for (i, body) in bodies.iter().enumerate() {
                if let Some(f) = frame(api_key, v, body.as_ref()) {
                    assert!(
                        decode_request(f.clone()).is_ok(),
                        "seed {api_key:?} v{v} does not decode"
                    );
                    out.write(&format!("{api_key:?}-v{v}-{i}"), &f);
                    written += 1;
                }
            }
            if written == 0 {
                // An API added to `supported_apis` that this generator does not know yet: a
                // header alone still gives the fuzzer the right key and version to mutate from.
                eprintln!("note: no body for {api_key:?} v{v}; writing the header only");
                if let Some(f) = frame(api_key, v, &|_| Ok(())) {
                    out.write(&format!("{api_key:?}-v{v}-header"), &f);
                }
            }
        }
    }
    println!("{}: {} seeds", out.dir.display(), out.count);
}
