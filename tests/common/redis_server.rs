//! A real `redis-server` (Debian's package) for the tests: started on a free loopback port
//! with no persistence, killed and restarted by the tests that need it down, killed on drop.
//!
//! Without `redis-server` on the machine the tests that need it skip, loudly; with
//! `TOWER_ETAG_REQUIRE_REDIS=1` (set by `.ci/run`, which installs it) they fail instead.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// A server for the test `test`, or `None` (after saying so) when `redis-server` is not
    /// installed and the run does not require it.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        if !Self::installed_or_skip(test) {
            return None;
        }
        let port = free_port();
        let mut server = Self { child: None, port };
        server.restart();
        Some(server)
    }

    /// Whether `redis-server` is installed; when not, says so (or fails the test `test` when
    /// the run requires Redis).
    pub fn installed_or_skip(test: &str) -> bool {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            let required = std::env::var("TOWER_ETAG_REQUIRE_REDIS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: redis-server is not installed and TOWER_ETAG_REQUIRE_REDIS=1"
            );
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: redis-server is not installed (apt-get install redis-server; \
                 .ci/run installs it and sets TOWER_ETAG_REQUIRE_REDIS=1 to fail instead)"
            );
        }
        installed
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A store on this server under `prefix`, with a deadline a loaded debug build keeps.
    #[cfg(feature = "redis")]
    pub async fn store(&self, prefix: &str) -> tower_etag::store::RedisStore {
        tower_etag::store::RedisStore::builder()
            .prefix(prefix)
            .deadline(Duration::from_secs(2))
            .connect(&self.url())
            .await
            .expect("a store on the test's redis-server")
    }

    /// Starts the server (again) on its port, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
