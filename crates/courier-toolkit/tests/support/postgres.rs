//! A real PostgreSQL server for tests: `initdb` a cluster in a temporary directory, start it
//! on a free loopback port (unix sockets in the same directory), hand out a fresh database
//! per test, stop it when the last user drops it.
//!
//! The server binaries (`initdb`, `pg_ctl`) are looked up on `PATH`, then in
//! `/usr/lib/postgresql/<version>/bin` (Debian's place; the newest version wins);
//! `$COURIER_PG_BIN` overrides both. `initdb` refuses to run as root, so as root the server
//! runs as the `postgres` OS user (through `runuser`), which owns the temporary directory.
//! Without PostgreSQL the tests **fail** with a message saying how to install it
//! (`scripts/test.sh` does).
//!
//! Include it with `#[path = "support/postgres.rs"] mod postgres_server;`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// A running PostgreSQL server, stopped on drop.
pub struct PgServer {
    /// Holds the cluster, the socket and the log; removed on drop.
    dir: tempfile::TempDir,
    /// Where `initdb` and `pg_ctl` are.
    bin: PathBuf,
    /// The TCP port on 127.0.0.1.
    port: u16,
    /// Run the server binaries as this OS user (when we are root).
    run_as: Option<String>,
}

/// The server shared by the tests of one test binary that run at the same time.
static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());

/// Numbers the databases handed out by this process.
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl PgServer {
    /// The running shared server, started if no test holds it.
    pub fn shared() -> Arc<PgServer> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(server) = shared.upgrade() {
            return server;
        }
        let server = Arc::new(PgServer::start());
        *shared = Arc::downgrade(&server);
        server
    }

    /// Initialises a cluster and starts a server on it; panics with the reason if it cannot.
    pub fn start() -> PgServer {
        let t0 = Instant::now();
        let bin = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in \
                 /usr/lib/postgresql/*/bin; install them (`apt-get install postgresql`, as \
                 scripts/test.sh does) or set COURIER_PG_BIN to their directory"
            )
        });
        let run_as = if is_root() {
            assert!(
                user_exists("postgres"),
                "running as root, and initdb refuses root: need the `postgres` OS user \
                 (created by `apt-get install postgresql`)"
            );
            Some("postgres".to_owned())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("courier-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            run_as,
        };
        if let Some(user) = &server.run_as {
            let out = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(server.dir.path())
                .output()
                .expect("run chown");
            check(&out, "chown the PostgreSQL directory");
        }
        let data = server.data_dir();
        let out = server
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .output()
            .expect("run initdb");
        check(&out, "initdb");
        // A port that was free a moment ago can be taken before the server binds it: retry.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = free_port();
            let options = format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
                 -c fsync=off -c max_connections=200",
                server.port,
                server.dir.path().display()
            );
            let out = server
                .command("pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(server.dir.path().join("server.log"))
                .args(["-o", &options])
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                eprintln!(
                    "PostgreSQL started on 127.0.0.1:{} in {:?}",
                    server.port,
                    t0.elapsed()
                );
                return server;
            }
            last_error = format!(
                "{}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
            );
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection string of database `db`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=10",
            self.port
        )
    }

    /// Creates a new, empty database; its name.
    pub async fn create_database(&self) -> String {
        let name = format!(
            "courier_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let (client, conn) =
            tokio_postgres::connect(&self.conninfo("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect to the test PostgreSQL server");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = task.await;
        name
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` from the server's bin directory, as the server's OS user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let out = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(self.data_dir())
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("pg_ctl stop failed: {e}"),
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("COURIER_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_tools(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has_tools(d)) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| has_tools(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
