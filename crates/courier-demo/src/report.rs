//! The final report: what the data says each part of the pipeline did, as a table for people
//! and JSON for scripts (`--report-json`).

use std::fmt::Write as _;

use serde::Serialize;

/// Everything the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run id stamped on every order.
    pub run: String,
    /// What was asked for.
    pub settings: Settings,
    /// What was injected.
    pub faults: FaultSummary,
    /// What the Order API did.
    pub order_api: ApiReport,
    /// What `order-events` holds.
    pub topic: TopicReport,
    /// Each service, from its own data.
    pub services: Vec<ServiceReport>,
    /// True if every part kept the guarantee it claims.
    pub ok: bool,
    /// What broke, one line each (empty when `ok`).
    pub broken: Vec<String>,
}

/// The run's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Target orders per second.
    pub rate: u64,
    /// Seconds of placing orders.
    pub duration_s: f64,
    /// Distinct users.
    pub users: u32,
    /// The broker: `embedded` or the `--bootstrap` address.
    pub broker: String,
    /// Payment's guarantee.
    pub payment_guarantee: String,
    /// Fault kinds switched on.
    pub faults_enabled: Vec<String>,
    /// The seed of the users, products and fault schedule.
    pub seed: u64,
}

/// The faults, as injected.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultSummary {
    /// Each event, in time order.
    pub events: Vec<FaultRecord>,
    /// Services SIGKILLed.
    pub service_kills: u32,
    /// Broker restarts (SIGKILL and start).
    pub broker_restarts: u32,
    /// Produce answers the proxy dropped.
    pub acks_dropped: u64,
    /// Connections the proxy cut.
    pub connections_cut: u64,
}

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// The fault's name.
    pub fault: String,
    /// What it hit (a service's name, `broker`, `proxy`).
    pub target: String,
}

/// The Order API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiReport {
    /// Orders placed.
    pub placed: u64,
    /// Orders the broker acknowledged.
    pub acknowledged: u64,
    /// Sends that failed and were sent again.
    pub resends: u64,
    /// Acknowledged orders a client sent again (each a second record with the same key).
    pub client_retries: u64,
    /// Acknowledged orders per second, first placement to last acknowledgement.
    pub throughput_per_s: f64,
    /// Placement to acknowledgement, median, in ms.
    pub ack_latency_p50_ms: f64,
    /// Placement to acknowledgement, 99th percentile, in ms.
    pub ack_latency_p99_ms: f64,
}

/// `order-events`, read back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TopicReport {
    /// Records of this run.
    pub records: u64,
    /// Distinct orders among them.
    pub distinct_orders: u64,
    /// Records beyond the first of their order (client retries, resends of unknown outcome).
    pub duplicate_records: u64,
    /// Acknowledged orders not in the topic: acks=all broken.
    pub acknowledged_missing: u64,
    /// Orders in the topic that were never acknowledged (a send whose answer was lost).
    pub unacknowledged_present: u64,
    /// Users whose orders are not in placement order in the topic, or span partitions.
    pub users_out_of_order: u64,
}

/// One service, judged from its own data.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    /// Its name.
    pub service: String,
    /// The guarantee it is judged against.
    pub guarantee: String,
    /// Effect rows of this run (ledger rows, reservations, notifications, counted events).
    pub effects: u64,
    /// Orders with exactly one effect.
    pub orders_once: u64,
    /// Orders with two or more effects.
    pub orders_more_than_once: u64,
    /// Orders in the topic with no effect.
    pub orders_never: u64,
    /// Effects beyond the first of their order.
    pub duplicate_effects: u64,
    /// Records of the topic processed twice (same partition and offset).
    pub records_processed_twice: u64,
    /// Records of the topic with no effect, as a percentage of its records: for Analytics the
    /// records lost; for Payment and Inventory the clients' retried orders, skipped as
    /// duplicates.
    pub records_without_effect_percent: f64,
    /// Users whose orders the service first applied out of placement order.
    pub users_out_of_order: u64,
    /// Effects per second, first to last.
    pub throughput_per_s: f64,
    /// Service-specific checks (stock arithmetic, amounts).
    pub checks: Vec<Check>,
    /// True if it kept its guarantee.
    pub ok: bool,
}

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The numbers behind it.
    pub detail: String,
}

impl Report {
    /// The report as a table.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let st = &self.settings;
        let _ = writeln!(
            s,
            "courier demo orders — run {} ({} broker, {} orders/s for {:.0} s, {} users, seed {})",
            self.run, st.broker, st.rate, st.duration_s, st.users, st.seed
        );
        let f = &self.faults;
        if st.faults_enabled.is_empty() {
            let _ = writeln!(s, "faults: none");
        } else {
            let _ = writeln!(
                s,
                "faults: {} ({} events: {} service kills, {} broker restarts, {} acks dropped, \
                 {} connections cut, {} client retries)",
                st.faults_enabled.join(", "),
                f.events.len(),
                f.service_kills,
                f.broker_restarts,
                f.acks_dropped,
                f.connections_cut,
                self.order_api.client_retries
            );
        }
        let a = &self.order_api;
        let _ = writeln!(
            s,
            "\nOrder API (acks=all, idempotent): {} placed, {} acknowledged, {} sends retried; \
             {:.0} orders/s; ack latency p50 {:.1} ms, p99 {:.1} ms",
            a.placed,
            a.acknowledged,
            a.resends,
            a.throughput_per_s,
            a.ack_latency_p50_ms,
            a.ack_latency_p99_ms
        );
        let t = &self.topic;
        let _ = writeln!(
            s,
            "order-events: {} records, {} distinct orders, {} duplicate records; \
             acknowledged but missing: {}; users out of order: {}",
            t.records,
            t.distinct_orders,
            t.duplicate_records,
            t.acknowledged_missing,
            t.users_out_of_order
        );
        let _ = writeln!(
            s,
            "\n{:<13} {:<14} {:>9} {:>9} {:>7} {:>7} {:>8} {:>7} {:>9} {:>9}  verdict",
            "service",
            "guarantee",
            "effects",
            "once",
            "twice+",
            "never",
            "dup.eff",
            "lost",
            "order.err",
            "per s"
        );
        for r in &self.services {
            let _ = writeln!(
                s,
                "{:<13} {:<14} {:>9} {:>9} {:>7} {:>7} {:>8} {:>7} {:>9} {:>9.0}  {}",
                r.service,
                r.guarantee,
                r.effects,
                r.orders_once,
                r.orders_more_than_once,
                r.orders_never,
                r.duplicate_effects,
                // Only at-most-once may lose records; elsewhere a record with no effect is a
                // retried order skipped as a duplicate.
                if r.guarantee == "at-most-once" {
                    format!("{:.2}%", r.records_without_effect_percent)
                } else {
                    "-".to_string()
                },
                r.users_out_of_order,
                r.throughput_per_s,
                if r.ok { "ok" } else { "BROKEN" }
            );
            for c in &r.checks {
                let _ = writeln!(
                    s,
                    "    {} {}: {}",
                    if c.ok { "✓" } else { "✗" },
                    c.name,
                    c.detail
                );
            }
        }
        if self.ok {
            let _ = writeln!(s, "\nEvery service kept its guarantee.");
        } else {
            let _ = writeln!(s, "\nBROKEN:");
            for b in &self.broken {
                let _ = writeln!(s, "  - {b}");
            }
        }
        s
    }
}
