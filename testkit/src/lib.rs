//! The test harness both test suites share: real services on loopback, started per test when
//! `make test` did not pass shared ones in (`AUREN_TEST_KAFKA`, `AUREN_TEST_DATABASE_URL`).
//! `AUREN_TEST_SERVICE_HOST` moves private services off loopback onto an address of this
//! machine that containers can reach (the real node's pod bridge, 10.244.0.1).
//! A dev-dependency only; no product crate links it.
// A harness fails loudly: panics carry the reason into the failing test's output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

pub mod stored;
pub mod witness;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A name no other test of this run uses (valid as a database, topic or namespace suffix).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}_{:x}_{}_{n}",
        nanos % 0xffff_ffff,
        std::process::id()
    )
}

/// A fresh folder under the temp dir.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The address private services listen on and advertise: 127.0.0.1 unless
/// `AUREN_TEST_SERVICE_HOST` names another address of this machine.
pub fn service_host() -> String {
    std::env::var("AUREN_TEST_SERVICE_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned())
}

/// Blocks until something accepts connections on `host:port`.
pub fn wait_for_port(host: &str, port: u16, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {host}:{port} after {timeout:?}");
}

// ---------------------------------------------------------------- broker

/// A Kafka broker: Apache Kafka, one KRaft node (`AUREN_KAFKA_SERVER` and `KAFKA_LIBS`, exported
/// by scripts/lib.sh). A private one keeps its log in a scratch folder, so a broker stopped with
/// [`Broker::stop`] and started again with [`Broker::start`] still holds every acknowledged
/// record, as a real broker's disk does.
pub struct Broker {
    pub addr: String,
    child: Option<Child>,
    port: u16,
    controller_port: u16,
    dir: Option<PathBuf>,
}

impl Broker {
    /// The shared broker of `make test`, or a private one when none was given.
    pub fn shared() -> Broker {
        match std::env::var("AUREN_TEST_KAFKA") {
            Ok(addr) => Broker {
                addr,
                child: None,
                port: 0,
                controller_port: 0,
                dir: None,
            },
            Err(_) => Broker::private(),
        }
    }

    /// A broker of this test's own, stopped (and its log removed) when dropped.
    pub fn private() -> Broker {
        let port = free_port();
        let mut b = Broker {
            addr: format!("{}:{port}", service_host()),
            child: None,
            port,
            controller_port: free_port(),
            dir: Some(scratch_dir("kafka")),
        };
        b.start();
        b
    }

    /// Starts the private broker (again), on the same ports and the same log.
    pub fn start(&mut self) {
        let dir = self
            .dir
            .as_ref()
            .expect("only a private broker can be started");
        let script = std::env::var("AUREN_KAFKA_SERVER")
            .expect("AUREN_KAFKA_SERVER not set: run the tests through `make test`");
        let child = Command::new("bash")
            .arg(script)
            .arg(dir)
            .arg(service_host())
            .arg(self.port.to_string())
            .arg(self.controller_port.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("start the Kafka broker");
        self.child = Some(child);
        wait_for_port(&service_host(), self.port, Duration::from_secs(60));
        self.wait_serving(Duration::from_secs(60));
    }

    /// Blocks until the broker answers a metadata request with itself in it and a leader for
    /// every partition it knows: a listening port is not yet a serving broker (a restarted
    /// one accepts connections while it still recovers its log and registers with its
    /// controller).
    fn wait_serving(&self, timeout: Duration) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .expect("Kafka client");
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match client.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(m) if m.brokers().is_empty() => last = "no broker in the metadata".into(),
                Ok(m) => {
                    let leaderless: Vec<String> = m
                        .topics()
                        .iter()
                        .flat_map(|t| {
                            t.partitions()
                                .iter()
                                .filter(|p| p.leader() < 0)
                                .map(move |p| format!("{}-{}", t.name(), p.id()))
                        })
                        .collect();
                    if leaderless.is_empty() {
                        return;
                    }
                    last = format!("no leader for {leaderless:?}");
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the broker at {} is not serving after {timeout:?}: {last}",
            self.addr
        );
    }

    /// Stops the broker at once (SIGKILL): a crash, not a drain.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes a private broker (SIGSTOP): it keeps its listener and its connections but
    /// answers nothing until [`Broker::resume`]: a partition or a long pause, where
    /// [`Broker::stop`] is a crash. Panics for the shared broker (it is not ours to stop).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a broker frozen by [`Broker::pause`] run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self
            .child
            .as_ref()
            .expect("only a private broker can be paused");
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -{signal} {} failed", child.id());
    }

    /// Creates a topic of three partitions, retrying while the broker finishes starting.
    pub fn create_topic(&self, topic: &str) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::config::ClientConfig;
        use rdkafka::error::RDKafkaErrorCode;

        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .expect("Kafka admin client");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let new = NewTopic::new(topic, 3, TopicReplication::Fixed(1));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = futures::executor::block_on(admin.create_topics([&new], &options));
            let last = match answer.as_deref() {
                Ok([Ok(_)]) | Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) => return,
                other => format!("{other:?}"),
            };
            assert!(Instant::now() < deadline, "creating topic {topic}: {last}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir.join("data"));
        }
    }
}

// ---------------------------------------------------------------- postgres

/// PostgreSQL 15: the shared instance of `make test`, or a private cluster (initdb into a
/// scratch folder, run as the postgres user when we are root).
pub struct Postgres {
    /// URL of the maintenance database; [`Postgres::database`] makes one per test.
    pub admin_url: String,
    data: Option<PathBuf>,
    port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn pg_tool(tool: &str) -> Command {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let path = format!("{dir}/{tool}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

impl Postgres {
    pub fn shared() -> Postgres {
        match std::env::var("AUREN_TEST_DATABASE_URL") {
            Ok(url) => Postgres {
                admin_url: url,
                data: None,
                port: 0,
            },
            Err(_) => Postgres::private(),
        }
    }

    pub fn private() -> Postgres {
        let root = scratch_dir("auren-pg");
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).expect("pg dir");
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&root)
                .status();
        }
        let ok = pg_tool("initdb")
            .arg("-D")
            .arg(&dir)
            .args(["-U", "postgres", "--auth=trust"])
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(ok.success(), "initdb failed");
        let port = free_port();
        let mut pg = Postgres {
            admin_url: format!("postgres://postgres@{}:{port}/postgres", service_host()),
            data: Some(dir),
            port,
        };
        pg.start();
        pg
    }

    /// Starts a private cluster again after [`Postgres::stop`] (no-op for the shared one).
    pub fn start(&mut self) {
        let Some(dir) = &self.data else { return };
        // Off loopback, clients come from the host's own subnets (pods on the bridge).
        let host = service_host();
        let hba = dir.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap_or_default();
        let samenet = "host all all samenet trust";
        if host != "127.0.0.1" && !rules.lines().any(|l| l.trim() == samenet) {
            let rules = format!("{rules}\n{samenet}\n");
            std::fs::write(&hba, rules).expect("write pg_hba.conf");
        }
        let listen = if host == "127.0.0.1" {
            host
        } else {
            format!("127.0.0.1,{host}")
        };
        let opts = format!(
            "-p {} -k {} -c listen_addresses={listen} -c fsync=off -c max_connections=200",
            self.port,
            dir.display()
        );
        let ok = pg_tool("pg_ctl")
            .arg("-D")
            .arg(dir)
            .args([
                "-l",
                &format!("{}/server.log", dir.display()),
                "-w",
                "-o",
                &opts,
                "start",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(ok.success(), "postgres start failed");
    }

    /// Stops a private cluster at once (no-op for the shared one).
    pub fn stop(&mut self) {
        let Some(dir) = &self.data else { return };
        let _ = pg_tool("pg_ctl")
            .arg("-D")
            .arg(dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }

    /// A fresh database for one test; returns its URL.
    pub async fn database(&self) -> String {
        let name = unique("t");
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .expect("connect postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let (base, _) = self.admin_url.rsplit_once('/').expect("url has a database");
        format!("{base}/{name}")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.data.as_ref().and_then(|d| d.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ---------------------------------------------------------------- fuzzing

/// The proptest settings of every `tests/fuzz_*.rs`: `cases` per property (bounded so a file
/// stays well under 30 s in debug builds; `PROPTEST_CASES=N` runs N instead, for a longer
/// local session), failures kept in `regressions` (a path relative to the crate, e.g.
/// `proptest-regressions/fuzz_auth.txt`) and replayed first on every run.
pub fn fuzz_config(cases: u32, regressions: &'static str) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(regressions),
        )),
        ..proptest::test_runner::Config::default()
    }
}
