//! The outbox publishes exactly the rows whose transaction committed, in order per key, each
//! with its row id in the `idempotency-key` header, to a real Courier broker; a row is marked
//! published only after the broker acknowledged it, so rows the broker never took are sent
//! by a later pass. Run against SQLite and PostgreSQL.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/postgres.rs"]
mod postgres_server;

use std::collections::BTreeMap;
use std::sync::Arc;

use courier_toolkit::outbox::{outbox_insert, OutboxPublisher, IDEMPOTENCY_KEY_HEADER};
use courier_toolkit::store::{ProcessedStore, SqlValue, Tx};
use courier_toolkit::ToolkitError;
use postgres_server::PgServer;
use rdkafka::config::ClientConfig;

/// A store and what keeps its database alive.
struct Db {
    store: ProcessedStore,
    _sqlite_dir: Option<tempfile::TempDir>,
    _pg: Option<Arc<PgServer>>,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ProcessedStore::open_sqlite(dir.path().join("app.db")).await;
    with_orders(store.expect("open"), Some(dir), None).await
}

async fn postgres() -> Db {
    let server = tokio::task::spawn_blocking(PgServer::shared)
        .await
        .expect("start PostgreSQL");
    let name = server.create_database().await;
    let store = ProcessedStore::connect_postgres(&server.conninfo(&name)).await;
    with_orders(store.expect("connect"), None, Some(server)).await
}

async fn with_orders(
    store: ProcessedStore,
    dir: Option<tempfile::TempDir>,
    pg: Option<Arc<PgServer>>,
) -> Db {
    store
        .transaction(|tx| async move {
            tx.execute(
                "CREATE TABLE orders (id BIGINT PRIMARY KEY, status TEXT NOT NULL)",
                &[],
            )
            .await
        })
        .await
        .expect("orders table");
    Db {
        store,
        _sqlite_dir: dir,
        _pg: pg,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_committed_rows_publish_in_order_and_rolled_back_rows_never() {
    committed_rows_publish_in_order_and_rolled_back_rows_never(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_committed_rows_publish_in_order_and_rolled_back_rows_never() {
    committed_rows_publish_in_order_and_rolled_back_rows_never(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unacknowledged_rows_stay_pending_until_a_broker_takes_them() {
    unacknowledged_rows_stay_pending_until_a_broker_takes_them(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unacknowledged_rows_stay_pending_until_a_broker_takes_them() {
    unacknowledged_rows_stay_pending_until_a_broker_takes_them(postgres().await).await;
}

const TOPIC: &str = "order-events";

/// The business change: an order's new status, and its event in the outbox.
async fn set_status(tx: &Tx, order: i64, status: &str) -> Result<i64, ToolkitError> {
    let changed = tx
        .execute(
            "UPDATE orders SET status = $2 WHERE id = $1",
            &[order.into(), status.into()],
        )
        .await?;
    if changed == 0 {
        tx.execute(
            "INSERT INTO orders (id, status) VALUES ($1, $2)",
            &[order.into(), status.into()],
        )
        .await?;
    }
    let key = format!("order-{order}");
    let headers: &[(&str, &[u8])] = &[("event", status.as_bytes())];
    outbox_insert(
        tx,
        TOPIC,
        Some(key.as_bytes()),
        Some(status.as_bytes()),
        headers,
    )
    .await
}

async fn start_broker() -> broker::Broker {
    let b = tokio::task::spawn_blocking(broker::Broker::start)
        .await
        .expect("start courier");
    broker::create_topic(&b.bootstrap(), TOPIC, 3).await;
    b
}

async fn read_topic(bootstrap: &str) -> Vec<broker::Read> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || broker::read_all(&bootstrap, TOPIC))
        .await
        .expect("read")
}

async fn unpublished(store: &ProcessedStore) -> i64 {
    let rows = store
        .transaction(|tx| async move {
            tx.query(
                "SELECT COUNT(*) FROM courier_outbox WHERE published_at_ms IS NULL",
                &[],
            )
            .await
        })
        .await
        .expect("count");
    rows[0][0].as_i64().expect("count")
}

async fn committed_rows_publish_in_order_and_rolled_back_rows_never(db: Db) {
    let broker = start_broker().await;
    let store = &db.store;
    let ids = store
        .transaction(|tx| async move {
            let a = set_status(&tx, 1, "created").await?;
            let b = set_status(&tx, 1, "paid").await?;
            let c = set_status(&tx, 2, "created").await?;
            Ok(vec![a, b, c])
        })
        .await
        .expect("first change");
    let err = store
        .transaction(|tx| async move {
            set_status(&tx, 3, "created").await?;
            Err::<(), _>(ToolkitError::Handler("stock check failed".into()))
        })
        .await;
    assert!(matches!(err, Err(ToolkitError::Handler(_))), "{err:?}");
    let last = store
        .transaction(|tx| async move { set_status(&tx, 1, "shipped").await })
        .await
        .expect("last change");
    assert_eq!(
        unpublished(store).await,
        4,
        "the rolled-back row was never written"
    );

    // Two rows per pass: order across passes is kept too.
    let publisher = OutboxPublisher::new(store.clone(), &broker.bootstrap())
        .expect("publisher")
        .batch_size(2);
    assert_eq!(publisher.publish_pending().await.expect("pass 1"), 2);
    assert_eq!(publisher.publish_pending().await.expect("pass 2"), 2);
    assert_eq!(publisher.publish_pending().await.expect("pass 3"), 0);
    assert_eq!(unpublished(store).await, 0);

    let records = read_topic(&broker.bootstrap()).await;
    let mut by_key: BTreeMap<String, Vec<(i32, String, String)>> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().expect("key")).expect("utf8");
        let idem = r
            .header(IDEMPOTENCY_KEY_HEADER)
            .expect("idempotency-key header");
        assert_eq!(
            r.header("event").as_deref(),
            Some(r.text().as_str()),
            "user header kept"
        );
        by_key
            .entry(key)
            .or_default()
            .push((r.partition, r.text(), idem));
    }
    let id = |i: i64| i.to_string();
    let order1 = &by_key["order-1"];
    assert_eq!(
        order1
            .iter()
            .map(|(_, v, k)| (v.as_str(), k.clone()))
            .collect::<Vec<_>>(),
        [
            ("created", id(ids[0])),
            ("paid", id(ids[1])),
            ("shipped", id(last))
        ],
        "one key, one partition, row order"
    );
    assert!(order1.iter().all(|(p, _, _)| *p == order1[0].0));
    assert_eq!(
        by_key["order-2"]
            .iter()
            .map(|(_, v, k)| (v.as_str(), k.clone()))
            .collect::<Vec<_>>(),
        [("created", id(ids[2]))]
    );
    assert!(
        !by_key.contains_key("order-3"),
        "a rolled-back change publishes nothing"
    );
    assert_eq!(records.len(), 4);
}

async fn unacknowledged_rows_stay_pending_until_a_broker_takes_them(db: Db) {
    let store = &db.store;
    store
        .transaction(|tx| async move {
            set_status(&tx, 1, "created").await?;
            set_status(&tx, 1, "paid").await
        })
        .await
        .expect("change");
    // No broker behind this address: delivery times out, nothing may be marked.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let dead_addr = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &dead_addr)
        .set("message.timeout.ms", "1500");
    let stranded = OutboxPublisher::with_config(store.clone(), config).expect("publisher");
    let err = stranded.publish_pending().await.expect_err("no broker");
    assert!(matches!(err, ToolkitError::Kafka(_)), "{err}");
    assert_eq!(
        unpublished(store).await,
        2,
        "unacknowledged rows stay pending"
    );

    let broker = start_broker().await;
    let publisher = OutboxPublisher::new(store.clone(), &broker.bootstrap())
        .expect("publisher")
        .key_prefix("orders-db/");
    assert_eq!(publisher.publish_pending().await.expect("pass"), 2);
    assert_eq!(unpublished(store).await, 0);
    let records = read_topic(&broker.bootstrap()).await;
    let got: Vec<(String, String)> = records
        .iter()
        .map(|r| (r.text(), r.header(IDEMPOTENCY_KEY_HEADER).expect("header")))
        .collect();
    let rows = store
        .transaction(|tx| async move {
            tx.query("SELECT id FROM courier_outbox ORDER BY id", &[])
                .await
        })
        .await
        .expect("ids");
    let want: Vec<(String, String)> = ["created", "paid"]
        .iter()
        .zip(&rows)
        .map(|(v, r)| match r[0] {
            SqlValue::Int(id) => (v.to_string(), format!("orders-db/{id}")),
            ref other => panic!("id {other:?}"),
        })
        .collect();
    assert_eq!(got, want);
}
