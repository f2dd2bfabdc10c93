//! The `oxworld` CLI on a generated config: start brings a 1-dispatcher, 2-game, 1-gate echo
//! cluster up, status reports it, a killed game is brought back by a second start, stop leaves
//! no process behind, and a second stop is a no-op that still exits 0.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use oxworld_bin::testkit::{free_port, free_ports, fresh_bin};

fn bin_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_oxworld")).parent().expect("bin dir").to_path_buf();
    for b in ["echo", "oxworld-dispatcher", "oxworld-gate"] {
        fresh_bin(&dir, b).expect("the workspace is built");
    }
    dir
}

struct Env {
    dir: PathBuf,
    bins: PathBuf,
}

impl Env {
    fn oxworld(&self, cmd: &str, extra: &[&str]) -> Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        Command::new(env!("CARGO_BIN_EXE_oxworld"))
            .current_dir(root)
            .arg(cmd)
            .arg("demo/echo")
            .arg("--config")
            .arg(self.dir.join("oxworld.ini"))
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .arg("--bin-dir")
            .arg(&self.bins)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run oxworld")
    }

    fn pid(&self, name: &str) -> i32 {
        fs::read_to_string(self.dir.join("run").join(format!("{name}.pid")))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.oxworld("kill", &[]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Runs `oxworld status` until its output satisfies `want` (up to 10 s).
fn wait_status(env: &Env, want: impl Fn(&str) -> bool) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let st = env.oxworld("status", &[]);
        if want(&text(&st)) || std::time::Instant::now() > deadline {
            return st;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn start_status_restart_stop() {
    let ports = free_ports(2);
    assert_eq!(ports.len(), 2, "two free loopback ports");
    let dir = std::env::temp_dir().join(format!("oxworld-cli-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    // Quiet logs everywhere: readiness comes from the status records, not from log lines.
    let ini = format!(
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 2\ndesired_gates = 1\nsecret = cli-test\n\
         [dispatcher_common]\nlog_level = warn\n[game_common]\nlog_level = warn\n[gate_common]\nlog_level = warn\n\
         [dispatcher1]\nlisten_addr = 127.0.0.1:{}\n[gate1]\nlisten_addr = 127.0.0.1:{}\n",
        ports[0], ports[1]
    );
    fs::write(dir.join("oxworld.ini"), ini).expect("config");
    let env = Env { dir, bins: bin_dir() };

    let st = env.oxworld("status", &[]);
    assert!(!st.status.success(), "status fails while nothing runs: {}", text(&st));

    let o = env.oxworld("start", &["--no-build"]);
    assert!(o.status.success(), "start: {}", text(&o));
    assert!(text(&o).contains("started dispatcher1, game1, game2, gate1"), "{}", text(&o));

    let st = env.oxworld("status", &[]);
    assert!(st.status.success(), "status: {}", text(&st));
    assert_eq!(text(&st).matches(" ready").count(), 4, "{}", text(&st));
    // --json: one object per process, with the figures each process measured of itself over
    // its last second (from its second record on).
    let rows = loop {
        let st = env.oxworld("status", &["--json"]);
        assert!(st.status.success(), "{}", text(&st));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&st.stdout).expect("a JSON array");
        if rows.iter().all(|r| r["rss_kib"].as_u64().is_some()) {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["dispatcher1", "game1", "game2", "gate1"]);
    for r in &rows {
        assert_eq!(r["state"], "ready", "{r}");
        assert!(r["metrics_addr"].is_null(), "metrics are off in this config: {r}");
        assert!(r["host"].as_str().is_some() && r["kind"].as_str().is_some(), "{r}");
        assert!(r["rss_kib"].as_u64().unwrap_or(0) > 0 && r["cpu_pct"].as_f64().is_some(), "{r}");
        assert!(r["msgs_in_per_s"].as_f64().is_some() && r["busy_pct"].as_f64().is_some(), "{r}");
    }
    // --watch redraws the table every second until interrupted.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_oxworld"))
        .current_dir(root)
        .args(["status", "demo/echo", "--watch", "--config"])
        .arg(env.dir.join("oxworld.ini"))
        .arg("--run-dir")
        .arg(env.dir.join("run"))
        .arg("--bin-dir")
        .arg(&env.bins)
        .stdout(Stdio::piped())
        .spawn()
        .expect("status --watch");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.matches("process ").count() >= 2, "at least two refreshes: {shown}");
    // Games report their load to the dispatcher every second: it hears messages.
    assert!(rows[0]["msgs_in_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{:?}", rows[0]);
    assert!(rows[1]["entities"].as_u64().is_some() && rows[3]["clients"].as_u64().is_some(), "{rows:?}");

    // A game whose loop stops turning (SIGSTOP) is reported stalled within a few seconds, and
    // ready again once it runs.
    let game1 = env.pid("game1").to_string();
    assert!(Command::new("kill").args(["-STOP", &game1]).status().expect("kill").success());
    let st = wait_status(&env, |t| t.contains("stalled"));
    assert!(!st.status.success(), "a stalled process fails status: {}", text(&st));
    assert!(Command::new("kill").args(["-CONT", &game1]).status().expect("kill").success());
    let st = wait_status(&env, |t| t.matches(" ready").count() == 4);
    assert!(st.status.success(), "{}", text(&st));

    // A crashed game is brought back by start, and only it.
    let game2 = env.pid("game2");
    assert!(Command::new("kill").args(["-KILL", &game2.to_string()]).status().expect("kill").success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(game2) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = env.oxworld("status", &[]);
    assert!(!st.status.success(), "status fails with game2 down: {}", text(&st));
    assert!(text(&st).contains("game2") && text(&st).contains(" down "), "{}", text(&st));
    let o = env.oxworld("start", &["--no-build"]);
    assert!(o.status.success(), "restart: {}", text(&o));
    assert!(text(&o).contains("started game2\n"), "{}", text(&o));

    let pids: Vec<i32> = ["dispatcher1", "game1", "game2", "gate1"].iter().map(|n| env.pid(n)).collect();
    let o = env.oxworld("stop", &[]);
    assert!(o.status.success(), "stop: {}", text(&o));
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived stop");
    }
    let o = env.oxworld("stop", &[]);
    assert!(o.status.success() && text(&o).contains("nothing was running"), "{}", text(&o));
    let st = env.oxworld("status", &[]);
    assert!(!st.status.success());
}

#[test]
fn start_fails_clearly_when_a_process_dies() {
    let dir = std::env::temp_dir().join(format!("oxworld-cli-fail-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    // Hold the gate's port so the gate cannot bind it.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let gate_port = taken.local_addr().expect("addr").port();
    let ini = format!(
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\nsecret = cli-test\n\
         [dispatcher1]\nlisten_addr = 127.0.0.1:{}\n[gate1]\nlisten_addr = 127.0.0.1:{gate_port}\n",
        free_port()
    );
    fs::write(dir.join("oxworld.ini"), ini).expect("config");
    let env = Env { dir, bins: bin_dir() };
    let o = env.oxworld("start", &["--no-build"]);
    assert!(!o.status.success(), "start must fail: {}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("gate1") && msg.contains("exited during start-up"), "{msg}");
    assert!(msg.contains("cannot listen"), "the gate's own reason is shown: {msg}");
    let o = env.oxworld("stop", &[]);
    assert!(o.status.success() && text(&o).contains("stopped game1, dispatcher1"), "{}", text(&o));
    drop(taken);
}

#[test]
fn bad_config_is_reported_with_file_section_and_key() {
    let dir = std::env::temp_dir().join(format!("oxworld-cli-badcfg-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let ini = "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\nsecret = x\n[gate1]\nlisten_adr = 127.0.0.1:1\n";
    fs::write(dir.join("oxworld.ini"), ini).expect("config");
    let env = Env { dir, bins: bin_dir() };
    let o = env.oxworld("status", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("[gate1] listen_adr: unknown key"), "{}", text(&o));
}

/// `oxworld keygen` needs no game dir: it writes every encrypting gate's key file (owner-only),
/// refuses nothing on a second run (the key stays), prints the public key, and `--public` prints
/// the same key without writing; a gate with `encrypt = false` needs none.
#[test]
fn keygen_writes_owner_only_keys_and_prints_the_public_half() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = std::env::temp_dir().join(format!("oxworld-keygen-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let ini = dir.join("k.ini");
    fs::write(
        &ini,
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 2\nsecret = s\n\
         [gate1]\nkey_file = keys/g1.key\n[gate2]\nencrypt = false\n",
    )
    .expect("config");
    let keygen = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_oxworld"))
            .arg("keygen")
            .arg("--config")
            .arg(&ini)
            .args(extra)
            .output()
            .expect("runs")
    };
    let first = keygen(&[]);
    assert!(first.status.success(), "{}", text(&first));
    let key = dir.join("keys/g1.key");
    let mode = fs::metadata(&key).expect("written").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "owner-only");
    let public = String::from_utf8_lossy(&first.stdout).lines().find(|l| l.starts_with("gate1: ")).map(str::to_owned);
    let public = public.expect("gate1's public key printed");
    assert_eq!(public.split_whitespace().nth(1).map(str::len), Some(64), "{public}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("gate2: encrypt = false"));
    let secret = fs::read_to_string(&key).expect("key");
    let again = keygen(&["--public"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains(&public), "the same key");
    assert!(keygen(&[]).status.success(), "a second run keeps the existing key");
    assert_eq!(fs::read_to_string(&key).expect("key"), secret, "never overwritten");
    let _ = fs::remove_dir_all(&dir);
}

/// `oxworld import-config`: GoWorld's config in, ours on standard output (which our parser
/// accepts: unknown keys stay errors there), a note per key on standard error.
#[test]
fn import_config_converts_a_goworld_ini() {
    let dir = std::env::temp_dir().join(format!("oxworld-import-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let ini = dir.join("goworld.ini");
    fs::write(
        &ini,
        "[deployment]\ndesired_dispatchers=1\ndesired_games=2\ndesired_gates=1\n\n\
         [dispatcher_common]\nlog_level=debug\nhttp_addr=127.0.0.1:23000\n[dispatcher1]\nlisten_addr=127.0.0.1:13000\n\
         advertise_addr=127.0.0.1:13000\n\n[game_common]\nboot_entity=Account\nsave_interval=600\nlog_file=game.log\n\
         [game1]\nhttp_addr=127.0.0.1:25000\n[game2]\nban_boot_entity=true\n\n[gate_common]\ncompress_connection=1\n\
         encrypt_connection=1\nrsa_key=rsa.key\nheartbeat_check_interval=60\n[gate1]\nlisten_addr=0.0.0.0:14000\n\
         http_addr=127.0.0.1:24000\n\n[storage]\ntype=mongodb\nurl=mongodb://127.0.0.1:27017/goworld\ndb=goworld\n\
         [kvdb]\ntype=redis\nurl=redis://127.0.0.1:6379\n[mystery]\nfoo=1\n",
    )
    .expect("goworld.ini");
    let out = Command::new(env!("CARGO_BIN_EXE_oxworld")).arg("import-config").arg(&ini).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let config = String::from_utf8_lossy(&out.stdout).to_string();
    let notes = String::from_utf8_lossy(&out.stderr).to_string();
    let cfg = oxworld_net::config::Config::parse(&dir.join("oxworld.ini"), &config)
        .unwrap_or_else(|e| panic!("our parser accepts the output: {e}\n{config}"));
    assert_eq!((cfg.dispatchers.len(), cfg.games.len(), cfg.gates.len()), (1, 2, 1));
    assert_eq!(cfg.games[0].boot_entity.as_deref(), Some("Account"));
    assert!(cfg.games[1].ban_boot_entity);
    assert_eq!(cfg.gates[0].listen_addr.port(), 14000);
    for key in ["http_addr", "compress_connection", "rsa_key", "log_file", "mongodb", "mystery"] {
        assert!(notes.contains(key), "a note about {key}:\n{notes}");
    }
    assert!(!config.contains("compress_connection") && !config.contains("mystery"), "{config}");
    let missing = Command::new(env!("CARGO_BIN_EXE_oxworld")).arg("import-config").arg(dir.join("nope.ini")).output();
    assert!(!missing.expect("runs").status.success(), "a missing file is an error");
    let _ = fs::remove_dir_all(&dir);
}

/// Waits up to `secs` for `f` to return something.
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn echo_env(name: &str, hosts: [&str; 3]) -> Env {
    let ports = free_ports(2);
    assert_eq!(ports.len(), 2, "two free loopback ports");
    let dir = std::env::temp_dir().join(format!("oxworld-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let host = |h: &str| if h.is_empty() { String::new() } else { format!("host = {h}\n") };
    let ini = format!(
        "[deployment]\ndesired_dispatchers = 1\ndesired_games = 2\ndesired_gates = 1\nsecret = cli-test\n\
         [dispatcher_common]\nlog_level = warn\n[game_common]\nlog_level = warn\n{}[gate_common]\nlog_level = warn\n\
         [dispatcher1]\n{}listen_addr = 127.0.0.1:{}\n[gate1]\n{}listen_addr = 127.0.0.1:{}\n",
        host(hosts[1]),
        host(hosts[0]),
        ports[0],
        host(hosts[2]),
        ports[1]
    );
    fs::write(dir.join("oxworld.ini"), ini).expect("config");
    Env { dir, bins: bin_dir() }
}

/// `start --supervise`: a game and a gate killed with SIGKILL are running again within a
/// second (and ready soon after); a reload under the supervisor restores each game exactly
/// once (the supervisor never starts a game between its freeze and its restore); `stop` ends
/// the supervisor first, so nothing comes back.
#[test]
fn a_supervised_cluster_brings_back_what_dies() {
    let env = echo_env("supervise", ["", "", ""]);
    let o = env.oxworld("start", &["--no-build", "--supervise"]);
    assert!(o.status.success(), "start: {}", text(&o));
    assert!(text(&o).contains("supervisor running"), "{}", text(&o));
    let supervisor: i32 =
        fs::read_to_string(env.dir.join("run/supervisor.pid")).expect("pid").trim().parse().expect("pid");
    assert!(alive(supervisor));
    assert!(text(&env.oxworld("status", &[])).contains("supervised"));
    // One supervisor per run dir: a second start finds it.
    let o = env.oxworld("start", &["--no-build", "--supervise"]);
    assert!(text(&o).contains(&format!("supervisor running (pid {supervisor})")), "{}", text(&o));

    for name in ["game2", "gate1", "dispatcher1"] {
        let old = env.pid(name);
        let killed = std::time::Instant::now();
        assert!(Command::new("kill").args(["-KILL", &old.to_string()]).status().expect("kill").success());
        let new = wait_for(3, || {
            let p = fs::read_to_string(env.dir.join(format!("run/{name}.pid"))).ok()?.trim().parse::<i32>().ok()?;
            (p != old && alive(p)).then_some(p)
        });
        let took = killed.elapsed();
        assert!(new.is_some(), "{name} was not restarted");
        assert!(took < std::time::Duration::from_secs(1), "{name} restarted after {took:?}");
        let st = wait_status(&env, |t| t.matches(" ready").count() == 4);
        assert!(st.status.success(), "everything ready again after {name} died: {}", text(&st));
    }
    let log = fs::read_to_string(env.dir.join("run/supervisor.log")).expect("log");
    for name in ["game2", "gate1", "dispatcher1"] {
        assert!(log.contains(&format!("restarted {name} (pid")), "{log}");
    }

    // A reload with the supervisor watching: each game is restored once, by the reload.
    let o = env.oxworld("reload", &[]);
    assert!(o.status.success(), "reload: {}", text(&o));
    assert!(text(&o).contains("reloaded 2 games"), "{}", text(&o));
    // The games run again, so the supervisor has nothing to do from here on: its log says
    // what it did while they were away.
    let log = fs::read_to_string(env.dir.join("run/supervisor.log")).expect("log");
    assert!(!log.contains("restarted game1") && !log.contains("from its freeze"), "{log}");
    assert_eq!(log.matches("restarted game2").count(), 1, "{log}");
    let st = wait_status(&env, |t| t.matches(" ready").count() == 4);
    assert!(st.status.success(), "{}", text(&st));

    // While someone holds the launch lock (as `reload` does from freeze to restore), the
    // supervisor starts nothing; once it is released, it does.
    let lock = fs::OpenOptions::new().write(true).open(env.dir.join("run/launch.lock")).expect("launch lock");
    lock.lock().expect("locked");
    let log = env.dir.join("run/supervisor.log");
    let waiting = "game1 down; a start or reload holds the launch lock";
    let before = fs::read_to_string(&log).unwrap_or_default().matches(waiting).count();
    let old = env.pid("game1");
    assert!(Command::new("kill").args(["-KILL", &old.to_string()]).status().expect("kill").success());
    let waited = wait_for(3, || fs::read_to_string(&log).ok().filter(|l| l.matches(waiting).count() > before));
    assert!(waited.is_some(), "the supervisor saw game1 down and waited for the lock");
    assert_eq!(env.pid("game1"), old, "nothing started while the lock is held");
    assert!(!alive(old));
    drop(lock);
    let new = wait_for(3, || {
        let p = env.pid("game1");
        (p != old && alive(p)).then_some(p)
    });
    assert!(new.is_some(), "restarted once the lock was released");
    let st = wait_status(&env, |t| t.matches(" ready").count() == 4);
    assert!(st.status.success(), "{}", text(&st));

    let pids: Vec<i32> = ["dispatcher1", "game1", "game2", "gate1"].iter().map(|n| env.pid(n)).collect();
    let o = env.oxworld("stop", &[]);
    assert!(o.status.success() && text(&o).contains("ended the supervisor"), "{}", text(&o));
    assert!(!alive(supervisor));
    // `stop` ended the supervisor before the processes, and waited for each.
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived stop");
    }
    let st = env.oxworld("status", &[]);
    assert!(!st.status.success() && !text(&st).contains("supervised"), "{}", text(&st));
}

/// `--host`: each command acts on the processes naming that host only (a config split over
/// several hosts needs addresses other hosts reach: `three_hosts` runs one); an unknown host
/// is refused.
#[test]
fn host_selects_the_processes_of_one_machine() {
    let env = echo_env("hosts", ["a", "a", "a"]);
    let o = env.oxworld("start", &["--no-build", "--host", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--host nope: no process"), "{}", text(&o));
    let o = env.oxworld("start", &["--no-build"]);
    assert!(
        o.status.success() && text(&o).contains("nothing to start here"),
        "no process without a host: {}",
        text(&o)
    );
    let o = env.oxworld("start", &["--no-build", "--host", "a"]);
    assert!(o.status.success(), "start a: {}", text(&o));
    assert!(text(&o).contains("started dispatcher1, game1, game2, gate1\n"), "{}", text(&o));
    let st = env.oxworld("status", &["--host", "a"]);
    assert!(st.status.success(), "{}", text(&st));
    assert_eq!(text(&st).matches(" ready").count(), 4, "{}", text(&st));
    let gate = env.pid("gate1");
    let o = env.oxworld("stop", &[]);
    assert!(o.status.success() && text(&o).contains("nothing was running"), "{}", text(&o));
    assert!(alive(gate), "stop without --host leaves host a alone");
    let o = env.oxworld("stop", &["--host", "a"]);
    assert!(o.status.success() && text(&o).contains("stopped gate1, game1, game2, dispatcher1"), "{}", text(&o));
    assert!(!alive(gate));
}
