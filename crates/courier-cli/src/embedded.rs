//! A Courier broker inside this process, in a temporary directory, for benchmarks and demos
//! run without `--bootstrap`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use courier_broker::{Broker, BrokerConfig};
use courier_server::{Context, ServerConfig};
use tokio::sync::oneshot;

/// A running embedded broker; dropping it shuts the broker down and removes its data.
pub struct EmbeddedBroker {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl EmbeddedBroker {
    /// Starts a broker on 127.0.0.1 with an ephemeral port.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("courier-")
            .tempdir()
            .context("creating a temp dir")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("courier-embedded")
            .build()
            .context("starting the broker runtime")?;
        let data_dir = dir.path().to_path_buf();
        let (addr, broker, stop, served) = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding")?;
            let addr = listener.local_addr().context("local addr")?;
            let config = BrokerConfig {
                data_dir,
                advertised_port: i32::from(addr.port()),
                ..BrokerConfig::default()
            };
            let broker = Broker::open(config).context("opening the embedded broker")?;
            broker.start_background_tasks();
            let ctx = Arc::new(Context::new(Arc::clone(&broker), ServerConfig::default()));
            let (stop, stopped) = oneshot::channel::<()>();
            let served = tokio::spawn(courier_server::serve(listener, ctx, async move {
                let _ = stopped.await;
            }));
            anyhow::Ok((addr, broker, stop, served))
        })?;
        Ok(Self {
            runtime,
            addr,
            broker,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        })
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = self.runtime.block_on(served);
        }
        self.broker.shutdown();
    }
}
