//! A Redis server of the test's own: Debian's `redis-server` on a free
//! loopback port, its directory a temporary one, no persistence, so that no
//! test needs (or touches) a Redis service of the machine.
//!
//! The server runs under a watchdog shell that holds the read end of a pipe
//! from the test process and kills the server when that pipe closes: when
//! the [`Redis`] is stopped or dropped, or when the test process exits
//! however it exits.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running Redis server; killed when dropped.
pub struct Redis {
    pub port: u16,
    /// With [`Redis::start_tls`]: the TLS port, beside the plain one the
    /// test itself uses.
    pub tls_port: Option<u16>,
    /// The certificate and key files TLS serves.
    tls_files: Option<(PathBuf, PathBuf)>,
    dir: tempfile::TempDir,
    watchdog: Mutex<Option<Child>>,
}

impl Redis {
    /// Starts a server on a free loopback port.
    pub fn start() -> Redis {
        Redis::start_with(None)
    }

    /// Starts a server that also takes TLS (`rediss://`, [`Redis::tls_url`])
    /// on a second port, serving the certificate and key in these PEM files;
    /// clients need no certificate of their own.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Redis {
        Redis::start_with(Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(tls_files: Option<(PathBuf, PathBuf)>) -> Redis {
        // The port is free when asked, not necessarily when the server binds
        // it: another process may take it in between, so try a few.
        let mut log = String::new();
        for _ in 0..5 {
            let redis = Redis {
                port: free_port(),
                tls_port: tls_files.as_ref().map(|_| free_port()),
                tls_files: tls_files.clone(),
                dir: tempfile::Builder::new()
                    .prefix("conclave-redis-")
                    .tempdir()
                    .expect("temporary directory"),
                watchdog: Mutex::new(None),
            };
            if redis.launch() {
                return redis;
            }
            log = std::fs::read_to_string(redis.log()).unwrap_or_default();
        }
        panic!("redis-server did not start (Debian: apt-get install redis-server):\n{log}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:TLS_PORT` (after [`Redis::start_tls`]).
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}",
            self.tls_port.expect("started with TLS")
        )
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts `redis-server` under its watchdog; true once it answers PING.
    fn launch(&self) -> bool {
        let mut tls = Vec::new();
        if let (Some(port), Some((cert, key))) = (self.tls_port, &self.tls_files) {
            tls.extend(["--tls-port".into(), port.to_string()]);
            tls.extend(["--tls-cert-file".into(), cert.display().to_string()]);
            tls.extend(["--tls-key-file".into(), key.display().to_string()]);
            tls.extend(["--tls-auth-clients".into(), "no".into()]);
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & pid=$!; cat >/dev/null; kill -9 $pid; wait $pid"#)
            .arg("sh")
            .args(["--port", &self.port.to_string()])
            .args(&tls)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs redis-server");
        *self.watchdog.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.stop();
        false
    }

    /// Whether the server answers PING now.
    pub fn answers(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Sends one inline command (`DEL key`); returns the first line of the
    /// answer (`:1`, `+OK`, `$-1`), or a bulk string's value.
    pub fn cmd(&self, line: &str) -> String {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("redis");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        let mut line = || {
            let mut out = Vec::new();
            let mut byte = [0u8; 1];
            while s.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
                out.push(byte[0]);
            }
            String::from_utf8_lossy(&out).trim_end().to_string()
        };
        let first = line();
        // A bulk string: its value is on the next line.
        if first.starts_with('$') && first != "$-1" {
            return line();
        }
        first
    }

    /// Kills the server (its data, kept in memory only, is lost).
    pub fn stop(&self) {
        if let Some(mut watchdog) = self.watchdog.lock().unwrap().take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&self) {
        for _ in 0..50 {
            if self.launch() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        panic!(
            "redis-server did not start again on port {}:\n{log}",
            self.port
        );
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
