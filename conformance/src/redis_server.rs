//! A real `redis-server` for tests and benches: started on a free loopback port, with no
//! persistence, killed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on `127.0.0.1`.
///
/// The binary is `$OPERO_REDIS_SERVER`, else `redis-server` from `PATH` (Debian:
/// `apt-get install -y redis-server`).
///
/// # Examples
///
/// ```no_run
/// let server = opero_conformance::RedisServer::start();
/// let url = server.url(); // redis://127.0.0.1:PORT/
/// # drop(url);
/// ```
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without a password; panics with what to install when it cannot.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a server that requires `password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> Self {
        let mut last_error = String::new();
        // Another process may take the port between our probe and the server's bind: try again.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                password: password.clone(),
                dir: tempfile::tempdir().expect("a temporary directory for redis-server"),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start redis-server: {last_error}");
    }

    /// The path of the binary.
    pub fn binary() -> PathBuf {
        std::env::var_os("OPERO_REDIS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(Self::binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "{e}: `{}` not found or not runnable; install it (Debian: `apt-get install -y \
                 redis-server`) or point OPERO_REDIS_SERVER at it",
                Self::binary().display()
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_ping() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited: {status}",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer PING",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        // `+PONG`, or `-NOAUTH` from a server with a password: either way it is serving.
        matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[:password@]127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server at once (SIGKILL: a crash, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("redis-server restarts on its port");
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
