//! Real Redis servers for tests: [`RedisServer`] is one node, [`RedisCluster`]
//! three masters in one Redis Cluster. Each listens on a free port of
//! 127.0.0.1, keeps its files in a temporary directory, and is stopped
//! (killed and reaped) when dropped. Nothing here uses a Redis that was
//! already running.
//!
//! `redis-server` and `redis-cli` come from Debian's `redis-server` and
//! `redis-tools` packages, which `cargo xtask test` installs when missing.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "redis-server";
const CLI: &str = "redis-cli";

/// How long a server may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One Redis node.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// A node with nothing persisted (`save ""`, no AOF).
    pub fn start() -> RedisServer {
        RedisServer::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A node with the append-only file on and fsync at every write
    /// (`appendfsync always`): what the host's durability needs.
    pub fn start_durable() -> RedisServer {
        RedisServer::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
    }

    /// A node with these extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temporary directory for redis-server");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // A port picked free can be taken before the server binds it: try
        // a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn(dir.path(), port, &extra) {
                Ok(child) => {
                    return RedisServer {
                        child,
                        port,
                        dir,
                        extra,
                    };
                }
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill the server (SIGKILL: nothing flushed that was not already)
    /// and start it again on the same port with the same files.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.dir.path(), self.port, &self.extra)
            .unwrap_or_else(|why| panic!("redis-server did not start again: {why}"));
    }

    /// Kill the server; [`RedisServer::restart`] brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `redis-cli` against this server; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three masters (no replicas), slots spread by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new(CLI)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{CLI} did not run ({e}): {}", missing()));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Every node says `cluster_state:ok` (it takes the nodes a moment to
    /// agree after `create`): polled with a deadline, the server's own
    /// report being the only signal there is.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + READY_WITHIN;
        let mut backoff = Duration::from_millis(10);
        loop {
            let ok = self
                .nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not reach cluster_state:ok within {READY_WITHIN:?}"
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

fn missing() -> String {
    format!(
        "install Debian's redis-server and redis-tools (`cargo xtask test` does: it installs what the tests need), or put {SERVER} and {CLI} on PATH"
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts `redis-server` in the foreground and waits for its "Ready to
/// accept connections" line.
fn spawn(dir: &Path, port: u16, extra: &[String]) -> Result<Child, String> {
    let mut child = Command::new(SERVER)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no", "--logfile", ""])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{SERVER} did not run ({e}): {}", missing()))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err("no standard output from redis-server".into());
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("Ready to accept connections") {
                let _ = tx.send(Ok(()));
                // Keep draining, so the server never blocks on a full pipe.
                continue;
            }
            said.push(line);
        }
        let _ = tx.send(Err(said.join("\n")));
    });
    match rx.recv_timeout(READY_WITHIN) {
        Ok(Ok(())) => Ok(child),
        Ok(Err(said)) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("redis-server on port {port} exited: {said}"))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "redis-server on port {port} was not ready within {READY_WITHIN:?}"
            ))
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(CLI)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{CLI} did not run ({e}): {}", missing()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
