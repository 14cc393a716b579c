//! Test hosts of our own, for tests that must cross a network between several nodes: Linux
//! network namespaces, each joined by a veth pair to a bridge made for the test, on a
//! private /24 of `10.213.0.0/16` (this process is `.1` on the bridge, host `i` is `.2 + i`).
//! Everything is made by the test and removed on drop, processes started in the hosts
//! included. It needs root and `ip` (iproute2): where the machine does not allow it, the
//! test skips, loudly.

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
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Hosts {
    /// `n` hosts, or `None` (after saying why) where namespaces cannot be made here.
    pub fn make_or_skip(test: &str, n: usize) -> Option<Self> {
        // Names unique to this process (interface names have at most 15 bytes).
        let id = std::process::id() % 1_000_000;
        let mut hosts = Self {
            net: 20 + (id % 200) as u8,
            bridge: format!("tebr{id}"),
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        match hosts.make(id, n) {
            Ok(()) => Some(hosts),
            Err(why) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: cannot make network namespaces here ({why}); \
                     the test needs root and iproute2"
                );
                None
            }
        }
    }

    fn make(&mut self, id: u32, n: usize) -> Result<(), String> {
        let gateway = format!("{}/24", self.gateway());
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
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
            ip(&["link", "set", &inside, "netns", &ns])?;
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
        Ipv4Addr::new(10, 213, self.net, 1)
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.net, 2 + i as u8)
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
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
