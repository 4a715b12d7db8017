//! Where the demo's broker is: an embedded Courier (a `courier serve` child process on a
//! temporary data directory, restartable by the fault loop) or the `--bootstrap` broker, in
//! both cases behind courier-verify's fault proxy, through which every client connects, so
//! that connections can be cut and acknowledgements lost.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use courier_verify::nemesis::{free_port, BrokerOptions, BrokerProcess, FaultProxy};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::DemoError;

/// How long admin and metadata calls wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The broker and the proxy in front of it.
pub struct Environment {
    /// The embedded broker; `None` with `--bootstrap`.
    broker: Option<BrokerProcess>,
    /// Every client connects through it.
    pub proxy: FaultProxy,
}

impl Environment {
    /// Starts the embedded broker on `data_dir` (unless `bootstrap` names one) and the proxy.
    pub fn start(
        bootstrap: Option<&str>,
        courier_bin: &Path,
        run_dir: &Path,
    ) -> Result<Self, DemoError> {
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        if let Some(bootstrap) = bootstrap {
            let upstream = bootstrap
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    DemoError::BadArgument(format!("--bootstrap {bootstrap}: not a host:port"))
                })?;
            let proxy = FaultProxy::start(loopback(0), upstream)?;
            proxy.rewrite_advertised(true);
            return Ok(Self {
                broker: None,
                proxy,
            });
        }
        let port = free_port()?;
        let proxy = FaultProxy::start(loopback(0), loopback(port))?;
        let options = BrokerOptions {
            bin: courier_bin.to_path_buf(),
            data_dir: run_dir.join("broker-data"),
            listen_port: port,
            advertised: proxy.local_addr().to_string(),
            extra_args: Vec::new(),
            log_path: run_dir.join("broker.log"),
        };
        let broker = tokio::task::block_in_place(|| BrokerProcess::start(options))?;
        Ok(Self {
            broker: Some(broker),
            proxy,
        })
    }

    /// Where clients connect: the proxy.
    pub fn bootstrap(&self) -> String {
        self.proxy.local_addr().to_string()
    }

    /// True if the demo owns the broker (and may restart it).
    pub fn owns_broker(&self) -> bool {
        self.broker.is_some()
    }

    /// SIGKILLs the embedded broker and starts it again on the same data; waits until it
    /// answers. Blocks.
    pub fn restart_broker(&self) -> Result<(), DemoError> {
        if let Some(b) = &self.broker {
            b.kill()?;
            b.restart()?;
        }
        Ok(())
    }

    /// Undoes the network faults and makes sure the broker runs.
    pub fn heal(&self) -> Result<(), DemoError> {
        self.proxy.set_partitioned(false);
        self.proxy.set_delay(None);
        if let Some(b) = &self.broker {
            if !b.is_running() {
                b.restart()?;
            }
        }
        Ok(())
    }

    /// Stops the embedded broker cleanly.
    pub fn shutdown(&self) {
        if let Some(b) = &self.broker {
            if let Err(e) = b.stop() {
                tracing::warn!(error = %e, "stopping the broker");
            }
        }
    }
}

/// The (low, high) watermarks of every partition of `topic`. Blocks.
pub fn watermarks(bootstrap: &str, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>, DemoError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), CALL_TIMEOUT)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| DemoError::Run(format!("topic {topic} has no metadata")))?;
    let mut out = BTreeMap::new();
    for p in t.partitions() {
        let marks = consumer.fetch_watermarks(topic, p.id(), CALL_TIMEOUT)?;
        out.insert(p.id(), marks);
    }
    Ok(out)
}

/// The offsets `group` committed in Kafka for `partitions` of `topic` (absent: none).
/// Blocks.
pub fn kafka_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: impl Iterator<Item = i32>,
) -> Result<BTreeMap<i32, i64>, DemoError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, CALL_TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}
