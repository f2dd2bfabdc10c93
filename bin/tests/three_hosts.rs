//! A cluster spread over three hosts on one machine: each host is a Linux network namespace with
//! an address on a bridge this test makes (and removes after; no traffic leaves the machine).
//! Redis and dispatcher1 run on h1; dispatcher2, game1 and gate1 on h2; game2 and gate2 on h3
//! (the gates listen on 0.0.0.0 and advertise their host's address). `oxworld start|status|stop
//! --host hN` runs inside each host's namespace, and strict testgame bots on h1 use the gates of
//! h2 and h3, each gate seen holding its half of them. Needs root (CI runs as root): where
//! namespaces cannot be made the test fails saying so.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use oxworld_bin::launcher::alive;
use oxworld_bin::testkit::fresh_bin;

const OXWORLD: &str = env!("CARGO_BIN_EXE_oxworld");
/// Where `ip netns add` puts its namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// The processes of each host, in start order (`--host hN`).
const PROCS: [(usize, &[&str]); 3] =
    [(1, &["dispatcher1"]), (2, &["dispatcher2", "game1", "gate1"]), (3, &["game2", "gate2"])];
/// Bots of the strict run; bot `i` dials gate `i % 2 + 1`, so each gate gets half.
const BOTS: u64 = 40;
/// Seconds the bots send for.
const SECS: u64 = 8;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `ip args`. Any failure means network namespaces cannot be made here: the test fails
/// (it never passes without having run).
fn ip(args: &[&str]) {
    let why = match Command::new("ip").args(args).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => return,
        Ok(o) => text(&o),
        Err(e) => format!("cannot run ip: {e} (install iproute2)"),
    };
    panic!(
        "network namespaces could not be made: `ip {}` failed: {}\nthree_hosts needs root (CI runs as root) and a \
         kernel with network namespaces, veth and bridge devices",
        args.join(" "),
        why.trim()
    );
}

/// Runs `ip args` for clean-up, whatever happens.
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// Waits up to `secs` for `f` to hold.
fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Three hosts h1..h3: namespaces `oxw<pid>h<n>`, each with one end of veth `oxw<pid>v<n>` /
/// `oxw<pid>p<n>` and address `10.213.<octet>.<n>/24`, the other ends on bridge `oxw<pid>b`.
/// What is made is recorded as it is made and removed on drop (the processes killed first, by
/// pid), also when the test panics; the test's directory is kept then (the logs are there).
struct Hosts {
    /// `oxw<pid>`: the prefix of every name made here (at most 12 of the 15 bytes a link name
    /// may have).
    tag: String,
    /// Third byte of the hosts' subnet.
    octet: u32,
    namespaces: Vec<String>,
    bridge: Option<String>,
    /// Root-side veth ends (deleting one deletes its pair).
    veths: Vec<String>,
    /// Processes started here directly (redis-server, the bots).
    children: Vec<Child>,
    /// Config, gate key, one run directory per host, logs.
    dir: PathBuf,
    /// The config, once written: the cluster's processes are killed on drop.
    config: Option<PathBuf>,
    /// The workspace root (`oxworld` runs there, as from a checkout).
    root: PathBuf,
    /// The built binaries.
    bins: PathBuf,
}

impl Hosts {
    fn ns(&self, n: usize) -> String {
        format!("{}h{n}", self.tag)
    }

    fn addr(&self, n: usize) -> String {
        format!("10.213.{}.{n}", self.octet)
    }

    fn run_dir(&self, n: usize) -> PathBuf {
        self.dir.join(format!("h{n}"))
    }

    /// The namespaces, the bridge and a veth pair per host, every interface up.
    fn build(&mut self) {
        // Left behind by an earlier run with this pid that was killed before its clean-up.
        for n in 1..=3 {
            ip_quiet(&["link", "del", &format!("{}v{n}", self.tag)]);
            ip_quiet(&["netns", "del", &self.ns(n)]);
        }
        ip_quiet(&["link", "del", &format!("{}b", self.tag)]);
        for n in 1..=3 {
            let ns = self.ns(n);
            ip(&["netns", "add", &ns]);
            self.namespaces.push(ns);
        }
        let bridge = format!("{}b", self.tag);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        self.bridge = Some(bridge.clone());
        ip(&["link", "set", &bridge, "up"]);
        for n in 1..=3 {
            let (ns, outer, inner) = (self.ns(n), format!("{}v{n}", self.tag), format!("{}p{n}", self.tag));
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            self.veths.push(outer.clone());
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge]);
            ip(&["link", "set", &outer, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.addr(n)), "dev", &inner]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
        }
    }

    /// `program` run inside host `n`'s namespace (`ip netns exec` execs it: the child's pid is
    /// the program's).
    fn in_ns(&self, n: usize, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(n)]).arg(program).current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    /// Starts redis-server on h1 and waits until it answers a PING from h2 (so the bridge
    /// carries traffic between the hosts).
    fn start_redis(&mut self) {
        let log_path = self.dir.join("redis.log");
        let log = fs::File::create(&log_path).expect("redis log");
        let child = self
            .in_ns(1, "redis-server")
            .args(["--bind", &self.addr(1), "--port", "6379", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
            .arg(&self.dir)
            .stdout(log.try_clone().expect("redis log"))
            .stderr(log)
            .spawn()
            .expect("ip netns exec redis-server starts (redis-server is installed by .ci/run)");
        self.children.push(child);
        // bash's /dev/tcp: nothing to install beyond bash.
        let probe = "exec 3<>/dev/tcp/$0/6379 && printf 'PING\\r\\n' >&3 \
                     && read -r -t 2 reply <&3 && printf %s \"$reply\"";
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = self.in_ns(2, "bash").args(["-c", probe, &self.addr(1)]).output().expect("ip netns exec bash");
            if String::from_utf8_lossy(&o.stdout).starts_with("+PONG") {
                return;
            }
            let exited = self.children.last_mut().and_then(|c| c.try_wait().ok().flatten());
            let log = || fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(st) = exited {
                panic!("redis-server on h1 exited ({st}):\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on h1 ({}:6379) did not answer a PING from h2 within 10 s (does the bridge {:?} \
                 forward between the namespaces?); last probe: {}\nits log:\n{}",
                self.addr(1),
                self.bridge,
                text(&o),
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds `<cmd> demo/testgame --config .. --run-dir <host n's> --bin-dir .. --host hN` to
    /// an `oxworld` command.
    fn cli<'c>(&self, c: &'c mut Command, n: usize, cmd: &str, config: &Path) -> &'c mut Command {
        c.arg(cmd).arg("demo/testgame").arg("--config").arg(config).arg("--run-dir").arg(self.run_dir(n));
        c.arg("--bin-dir").arg(&self.bins).arg("--host").arg(format!("h{n}"))
    }

    fn config(&self) -> &Path {
        self.config.as_deref().expect("the config is written first")
    }

    /// `oxworld <cmd> ... --host hN extra`, run inside host `n`'s namespace.
    fn oxworld(&self, n: usize, cmd: &str, extra: &[&str]) -> Output {
        let mut c = self.in_ns(n, OXWORLD);
        self.cli(&mut c, n, cmd, self.config()).args(extra).output().expect("oxworld runs inside its host's namespace")
    }

    /// Pid of process `name` of host `n`, from its pid file.
    fn pid(&self, n: usize, name: &str) -> i32 {
        let file = self.run_dir(n).join(format!("{name}.pid"));
        let pid = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        pid.trim().parse().unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if let Some(config) = &self.config {
            // Signals only (the pid files say whom): no namespace needed.
            for n in 1..=3 {
                let mut c = Command::new(OXWORLD);
                c.current_dir(&self.root).stdin(Stdio::null());
                let _ = self.cli(&mut c, n, "kill", config).output();
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for v in &self.veths {
            ip_quiet(&["link", "del", v]);
        }
        if let Some(b) = &self.bridge {
            ip_quiet(&["link", "del", b]);
        }
        for ns in &self.namespaces {
            ip_quiet(&["netns", "del", ns]);
        }
        if std::thread::panicking() {
            eprintln!("three_hosts: config, logs and run directories kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn three_hosts() {
    let bins = PathBuf::from(OXWORLD).parent().expect("bin dir").to_path_buf();
    for b in ["testgame", "oxworld-dispatcher", "oxworld-gate"] {
        fresh_bin(&bins, b).expect("the workspace is built");
    }
    let stress = fresh_bin(&bins, "oxworld-stress").expect("the workspace is built");
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("oxworld-three-hosts-{pid}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut hosts = Hosts {
        tag: format!("oxw{pid}"),
        octet: pid % 250 + 1,
        namespaces: Vec::new(),
        bridge: None,
        veths: Vec::new(),
        children: Vec::new(),
        dir: dir.clone(),
        config: None,
        root,
        bins,
    };
    hosts.build();
    hosts.start_redis();

    let (a1, a2, a3) = (hosts.addr(1), hosts.addr(2), hosts.addr(3));
    // Encrypted as in production: both gates use the key file next to the config (the hosts
    // share this machine's files).
    let ini = format!(
        "[deployment]\ndesired_dispatchers = 2\ndesired_games = 2\ndesired_gates = 2\nsecret = three-hosts\n\
         [storage]\nbackend = redis\nredis_url = redis://{a1}:6379/0\ndir = {}\nfreeze_dir = {}\n\
         [dispatcher_common]\nlog_level = warn\n[game_common]\nlog_level = warn\n[gate_common]\nlog_level = warn\n\
         [dispatcher1]\nhost = h1\nlisten_addr = {a1}:13000\n\
         [dispatcher2]\nhost = h2\nlisten_addr = {a2}:13000\n\
         [game1]\nhost = h2\n[game2]\nhost = h3\n\
         [gate1]\nhost = h2\nlisten_addr = 0.0.0.0:14000\nadvertise_addr = {a2}:14000\n\
         [gate2]\nhost = h3\nlisten_addr = 0.0.0.0:14000\nadvertise_addr = {a3}:14000\n",
        dir.join("store").display(),
        dir.join("freeze").display()
    );
    let config = dir.join("oxworld.ini");
    fs::write(&config, ini).expect("config");
    hosts.config = Some(config);

    // Each host in turn, from inside its namespace: each starts only its own processes and
    // says where its clients connect (the advertised address).
    let advertised = ["(no gate on this host)".to_owned(), format!("{a2}:14000"), format!("{a3}:14000")];
    for (n, names) in PROCS {
        let o = hosts.oxworld(n, "start", &["--no-build"]);
        assert!(o.status.success(), "start --host h{n}: {}", text(&o));
        assert!(text(&o).contains(&format!("started {}\n", names.join(", "))), "h{n}: {}", text(&o));
        let ready = format!("ready; clients connect to {}\n", advertised[n - 1]);
        assert!(text(&o).contains(&ready), "h{n}: {}", text(&o));
    }
    for (n, names) in PROCS {
        let st = hosts.oxworld(n, "status", &[]);
        assert!(st.status.success(), "status --host h{n}: {}", text(&st));
        assert_eq!(text(&st).matches(" ready").count(), names.len(), "h{n}: {}", text(&st));
        // Every process runs in its host's namespace.
        let ns = fs::metadata(Path::new(NETNS_DIR).join(hosts.ns(n))).expect("the namespace's file").ino();
        for name in names {
            let pid = hosts.pid(n, name);
            let net = fs::read_link(format!("/proc/{pid}/ns/net")).expect("the process's network namespace");
            assert_eq!(net.to_string_lossy(), format!("net:[{ns}]"), "{name} (pid {pid}) runs on h{n}");
        }
    }

    // Strict bots on h1, alternating between gate1 (h2) and gate2 (h3), both dialled at their
    // advertise_addr. One bot thread: bot i dials gate i % 2 + 1. Meanwhile each gate's
    // status record says how many clients it holds.
    let out_path = dir.join("bots.out");
    let err_path = dir.join("bots.err");
    let bots = hosts
        .in_ns(1, stress)
        .args(["--scenario", "testgame", "--strict", "--json", "--rate", "2"])
        .args(["--bots", &BOTS.to_string(), "--duration", &SECS.to_string()])
        .arg("--config")
        .arg(hosts.config())
        .stdout(fs::File::create(&out_path).expect("bots' output"))
        .stderr(fs::File::create(&err_path).expect("bots' errors"))
        .spawn()
        .expect("oxworld-stress starts in h1");
    hosts.children.push(bots);
    let deadline = Instant::now() + Duration::from_secs(SECS + 50);
    let mut most = [0u64; 2];
    let status = loop {
        let child = hosts.children.last_mut().expect("the bots");
        if let Some(st) = child.try_wait().expect("the bots' status") {
            break st;
        }
        assert!(Instant::now() < deadline, "the bots did not finish in {} s", SECS + 50);
        for (seen, (n, gate)) in most.iter_mut().zip([(2, "gate1"), (3, "gate2")]) {
            let st = hosts.oxworld(n, "status", &["--json"]);
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&st.stdout).unwrap_or_default();
            let clients = rows.iter().find(|r| r["name"] == gate).and_then(|r| r["clients"].as_u64());
            *seen = (*seen).max(clients.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let out = fs::read_to_string(&out_path).expect("bots' output");
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "the strict run failed ({status}):\n{out}{err}");
    let json = out.lines().next_back().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("a JSON line ({e}):\n{out}"));
    assert_eq!(v["errors"], 0, "{json}");
    assert_eq!(v["encrypted"].as_bool(), Some(true), "{json}");
    assert_eq!(v["actions"]["login"]["count"], BOTS, "every bot logged in: {json}");
    let actions = v["actions"].as_object().expect("actions");
    let done: u64 =
        actions.iter().filter(|(name, _)| name.as_str() != "login").filter_map(|(_, a)| a["count"].as_u64()).sum();
    assert!(done >= BOTS, "{done} actions after login: {json}");
    assert!(v["moves"].as_u64().is_some_and(|m| m > 0), "the bots moved: {json}");
    assert_eq!(most, [BOTS / 2, BOTS / 2], "most clients gate1 (h2) and gate2 (h3) held during the run");

    // Stop host by host, the last started first; every process exits on SIGTERM.
    let mut pids = Vec::new();
    for (n, names) in PROCS {
        for name in names {
            pids.push((*name, hosts.pid(n, name)));
        }
    }
    for (n, names) in PROCS.into_iter().rev() {
        let o = hosts.oxworld(n, "stop", &[]);
        let stopped: Vec<&str> = names.iter().rev().copied().collect();
        assert!(o.status.success(), "stop --host h{n}: {}", text(&o));
        assert!(text(&o).contains(&format!("stopped {}\n", stopped.join(", "))), "h{n}: {}", text(&o));
        assert!(!text(&o).contains("ignored SIGTERM"), "h{n}: {}", text(&o));
    }
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} (pid {pid}) survived stop");
    }

    // The clean-up leaves nothing behind.
    let links: Vec<String> = hosts.veths.iter().chain(&hosts.bridge).cloned().collect();
    let namespaces = hosts.namespaces.clone();
    drop(hosts);
    for ns in namespaces {
        assert!(!Path::new(NETNS_DIR).join(&ns).exists(), "namespace {ns} left behind");
    }
    for link in links {
        let gone = wait_until(2, || !Path::new("/sys/class/net").join(&link).exists());
        assert!(gone, "link {link} left behind");
    }
}
