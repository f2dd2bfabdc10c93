//! A private `redis-server` for the Redis backend's tests and the KVDB benchmark, on a free
//! loopback port, stopped (by its pid) on drop. Compiled into tests and benches only (the
//! benchmark includes this file by path): the library never spawns a process.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running redis-server.
pub(crate) struct RedisServer {
    child: Child,
    /// Its `redis://` URL.
    pub(crate) url: String,
}

impl RedisServer {
    /// Starts `redis-server` (from PATH, else /usr/bin/redis-server); fails with a message
    /// naming the package if it is not installed.
    pub(crate) fn start() -> Result<RedisServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let spawn = |program: &str| {
            Command::new(program)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = spawn("redis-server").or_else(|_| spawn("/usr/bin/redis-server")).map_err(|e| {
            format!("cannot run redis-server ({e}); install the redis-server package (apt-get install redis-server)")
        })?;
        let mut s = RedisServer { child, url: format!("redis://127.0.0.1:{port}/0") };
        // Up to 10 s (500 tries 20 ms apart).
        for _ in 0..500 {
            let ping = redis::Client::open(s.url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = s.child.kill();
        Err("redis-server did not answer PING within 10 s".into())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
