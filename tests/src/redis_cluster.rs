//! A real three-primary Redis Cluster for tests and benches: three `redis-server
//! --cluster-enabled yes` on free loopback ports, each in a temporary directory, joined by
//! `redis-cli --cluster create`, all killed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::RedisServer;

/// How long the cluster may take to start and agree that every slot is served.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster bus listens on the data port plus this (Redis' default).
const BUS_OFFSET: u16 = 10_000;

/// A local Redis Cluster of three primaries and no replicas on `127.0.0.1`.
///
/// The servers are [`RedisServer::binary`]; the cluster is created with `$OPERO_REDIS_CLI`, else
/// `redis-cli` from `PATH` (Debian's `redis-server` package brings it; `redis-tools` alone too).
///
/// # Examples
///
/// ```no_run
/// let cluster = opero_tests::RedisCluster::start();
/// let seeds: Vec<String> = cluster.urls(); // redis://127.0.0.1:PORT/ of each primary
/// assert_eq!(seeds.len(), 3);
/// ```
pub struct RedisCluster {
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisCluster {
    /// Starts the three primaries and joins them; panics with what went wrong when it cannot.
    pub fn start() -> Self {
        let mut last_error = String::new();
        // Another process may take a port between our probe and a server's bind: try again.
        for _ in 0..3 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start a redis cluster: {last_error}");
    }

    /// The path of `redis-cli`.
    pub fn cli_binary() -> PathBuf {
        std::env::var_os("OPERO_REDIS_CLI")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-cli"))
    }

    fn try_start() -> Result<Self, String> {
        let mut cluster = RedisCluster { nodes: Vec::new() };
        for port in cluster_ports(3)? {
            cluster.nodes.push(Node::spawn(port)?);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &cluster.nodes {
            while !answers(node.port, b"PING\r\n", b"+PONG") {
                if Instant::now() > deadline {
                    return Err(format!("node on port {} did not answer PING", node.port));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let out = Command::new(Self::cli_binary())
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "{e}: `{}` not found or not runnable; install it (Debian: `apt-get install -y \
                     redis-server`) or point OPERO_REDIS_CLI at it",
                    Self::cli_binary().display()
                )
            })?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        for node in &cluster.nodes {
            while !answers(node.port, b"CLUSTER INFO\r\n", b"cluster_state:ok") {
                if Instant::now() > deadline {
                    return Err(format!(
                        "node on port {} never reached cluster_state:ok",
                        node.port
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// `redis://127.0.0.1:PORT/` of each primary: the seeds a cluster client starts from.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The primaries' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Kills every node at once (SIGKILL).
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Node {
    fn spawn(port: u16) -> Result<Node, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        let child = Command::new(RedisServer::binary())
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            .arg("--cluster-config-file")
            .arg(dir.path().join("nodes.conf"))
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "{e}: `{}` not found or not runnable",
                    RedisServer::binary().display()
                )
            })?;
        Ok(Node {
            port,
            _dir: dir,
            child: Some(child),
        })
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the server on `port` answers `command` with a reply containing `expect`.
fn answers(port: u16, command: &[u8], expect: &[u8]) -> bool {
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(command).is_err() {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // CLUSTER INFO is a bulk reply (`$len\r\n...\r\n`) that may arrive in pieces: read until it
    // is complete.
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if reply_complete(&got) {
            break;
        }
    }
    got.windows(expect.len()).any(|w| w == expect)
}

/// Whether `reply` holds a whole simple, error or bulk RESP reply.
fn reply_complete(reply: &[u8]) -> bool {
    let Some(line_end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if reply.first() != Some(&b'$') {
        return true;
    }
    let len: usize = std::str::from_utf8(&reply[1..line_end])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    reply.len() >= line_end + 2 + len + 2
}

/// `n` free loopback ports whose bus ports (port + 10000) are free too.
fn cluster_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for _ in 0..200 {
        let port = fastrand::u16(20_000..40_000);
        let free = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if !ports.contains(&port) && free(port) && free(port + BUS_OFFSET) {
            ports.push(port);
            if ports.len() == n {
                return Ok(ports);
            }
        }
    }
    Err("no free loopback ports for a cluster".into())
}
