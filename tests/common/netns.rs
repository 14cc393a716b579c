//! Test hosts of our own, for tests that must cross a network between several nodes: Linux
//! network namespaces, each joined by a veth pair to a bridge made for the test, on a /24 of
//! `198.18.0.0/15` (RFC 2544's range for tests; this process is `.1` on the bridge, host `i`
//! is `.2 + i`). Everything is made by the test and removed on drop, processes started in
//! the hosts included.
//!
//! The bridge and its route are in this machine's own network namespace, so the tests run
//! only where `TOWER_ETAG_NETNS=1` says that is fine (`.ci/run` sets it), with root and `ip`
//! (iproute2), and only on a /24 no route of the machine covers but the default one;
//! elsewhere they skip, loudly.

use std::{
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Hosts {
    /// The third octet of the hosts' /24.
    net: u8,
    bridge: String,
    /// Whether this made the bridge (and so removes it).
    made_bridge: bool,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Hosts {
    /// `n` hosts, or `None` (after saying why) where namespaces cannot be made here.
    pub fn make_or_skip(test: &str, n: usize) -> Option<Self> {
        let skip = |why: &str| {
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
        };
        if !std::env::var("TOWER_ETAG_NETNS").is_ok_and(|v| v == "1") {
            skip(
                "it makes a bridge in this machine's network; TOWER_ETAG_NETNS=1 allows it \
                 (.ci/run sets it)",
            );
            return None;
        }
        // Names unique to this process (interface names have at most 15 bytes).
        let id = std::process::id() % 1_000_000;
        let mut hosts = Self {
            net: (id % 250) as u8,
            bridge: format!("tebr{id}"),
            made_bridge: false,
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let subnet = format!("198.18.{}.0/24", hosts.net);
        if routed(&subnet) {
            skip(&format!("a route of this machine covers {subnet} already"));
            return None;
        }
        match hosts.make(id, n) {
            Ok(()) => Some(hosts),
            Err(why) => {
                skip(&format!(
                    "cannot make network namespaces here ({why}); the test needs root and \
                     iproute2"
                ));
                None
            }
        }
    }

    fn make(&mut self, id: u32, n: usize) -> Result<(), String> {
        let gateway = format!("{}/24", self.gateway());
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        self.made_bridge = true;
        ip(&["addr", "add", &gateway, "dev", &self.bridge])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("te{id}h{i}");
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            let (outside, inside) = (format!("te{id}o{i}"), format!("te{id}i{i}"));
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            if let Err(e) = ip(&["link", "set", &inside, "netns", &ns]) {
                // Not in the namespace yet: the pair would outlive it.
                let _ = ip(&["link", "del", &outside]);
                return Err(e);
            }
            ip(&["link", "set", &outside, "master", &self.bridge, "up"])?;
            let addr = format!("{}/24", self.addr(i));
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inside,
            ])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// This process's address on the hosts' network.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 1)
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 2 + i as u8)
    }

    /// Runs `program` with `args` in host `i`, until the hosts are dropped.
    pub fn spawn(&mut self, i: usize, program: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[i], program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} in host {i}: {e}"));
        self.children.push(child);
    }
}

/// Waits until something listens on `addr` (from this process), for at most 10 s.
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a route of this machine other than the default one covers `subnet` or part of
/// it.
fn routed(subnet: &str) -> bool {
    ["root", "match"].iter().any(|how| {
        Command::new("ip")
            .args(["-4", "route", "show", how, subnet])
            .output()
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|route| !route.trim().is_empty() && !route.starts_with("default"))
            })
    })
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A namespace takes its end of each veth pair, and the pair, with it.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        if self.made_bridge {
            let _ = ip(&["link", "del", &self.bridge]);
        }
    }
}
