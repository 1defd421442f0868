//! A PostgreSQL server of the tests' own: `initdb` and `pg_ctl` on a
//! temporary directory, listening on a free loopback port, so that no test
//! needs (or touches) a PostgreSQL service of the machine.
//!
//! The binaries come from `$CONCLAVE_PG_BIN` or the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql` package). As
//! root, they run as the `postgres` user (`initdb` refuses root).
//!
//! A watchdog shell holds the read end of a pipe from the test process and
//! stops the server and removes its directory when that pipe closes: when the
//! [`Postgres`] is dropped, or when the test process exits however it exits,
//! so a shared server (see [`Postgres::shared`]) never outlives its tests.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// A running PostgreSQL server; stopped when dropped.
pub struct Postgres {
    pub port: u16,
    root: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// Stops the server when its stdin closes (see the module's doc).
    watchdog: Option<Child>,
    databases: AtomicU32,
    /// Started with [`Postgres::start_tls`]: `ssl = on`.
    ssl: bool,
}

impl Postgres {
    /// The test process's server, started on first use. Each test takes its
    /// own database from it with [`Postgres::fresh_database`].
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// Starts a server of its own (for a test that stops or restarts it).
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// Starts a server of its own that also takes TLS, serving this
    /// certificate and key (PEM); plain connections are still taken.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Postgres {
        let bin = bin_dir();
        let root = tempfile::Builder::new()
            .prefix("conclave-pg-")
            .tempdir()
            .expect("temporary directory")
            .keep();
        let as_postgres = running_as_root();
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&root)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {} to postgres", root.display());
        }
        let mut pg = Postgres {
            port: 0,
            root,
            bin,
            as_postgres,
            watchdog: None,
            databases: AtomicU32::new(0),
            ssl: tls.is_some(),
        };
        let out = pg
            .tool("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        if let Some((cert, key)) = tls {
            // server.crt and server.key in the data directory, where `ssl =
            // on` looks; the key readable by its owner only, as PostgreSQL
            // demands.
            let (crt_path, key_path) = (pg.data().join("server.crt"), pg.data().join("server.key"));
            std::fs::write(&crt_path, cert).expect("write server.crt");
            std::fs::write(&key_path, key).expect("write server.key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod server.key");
            if as_postgres {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&crt_path)
                    .arg(&key_path)
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown the TLS files to postgres");
            }
        }
        // The port is free when asked, not necessarily when the server binds
        // it: another process may take it in between, so try a few.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.pg_ctl_start() {
                break;
            }
            pg.port = 0;
        }
        if pg.port == 0 {
            let log = std::fs::read_to_string(pg.root.join("server.log")).unwrap_or_default();
            panic!("PostgreSQL did not start:\n{log}");
        }

        let stop = pg.pg_ctl_stop_command();
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf "$PG_ROOT""#)
            .arg("sh")
            .arg(stop.get_program())
            .args(stop.get_args())
            .env("PG_ROOT", &pg.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog starts");
        pg.watchdog = Some(watchdog);
        pg
    }

    /// Stops the server (fast shutdown: connections are cut), keeping its data.
    pub fn stop(&self) {
        let status = self
            .pg_ctl_stop_command()
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl stop");
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn start_again(&self) {
        assert!(self.pg_ctl_start(), "PostgreSQL starts again");
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// A PostgreSQL program, run as the `postgres` user when we are root.
    fn tool(&self, name: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    fn pg_ctl_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off{}",
            self.port,
            self.root.display(),
            if self.ssl { " -c ssl=on" } else { "" },
        );
        self.tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-o", &options, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pg_ctl_stop_command(&self) -> Command {
        let mut stop = self.tool("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"]);
        stop
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database: its URL.
    pub async fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let _ = admin.close().await;
        self.url(&name)
    }

    /// The server's directory (data, log, socket).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing the pipe tells the watchdog to stop the server.
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        } else {
            // It never started: only its directory is left.
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONCLAVE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian: apt-get install postgresql)")
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/<version>/bin/initdb")
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
