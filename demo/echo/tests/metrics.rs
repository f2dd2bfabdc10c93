//! Every process's Prometheus endpoint in a real cluster (1 dispatcher, 2 games, 1 gate, each
//! with `metrics_addr`): after echo traffic the call counters and histograms are there and not
//! zero, `promtool check metrics` (Debian's `prometheus` package) accepts each kind's output,
//! and a real Prometheus server scrapes all four for a few seconds and answers a query about
//! one series through its HTTP API.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxworld_bin::testkit::{Spec, TestCluster, free_ports};
use oxworld_client::BlockingClient;
use oxworld_net::Value;
use oxworld_net::client_proto::ServerMsg;

/// A plain HTTP GET on loopback; the body.
fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    assert!(out.starts_with("HTTP/1.") && out.contains(" 200 "), "{path}: {}", &out[..out.len().min(200)]);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The sum of every sample of `name` (any labels) in an exposition.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn every_process_exports_metrics_that_promtool_and_prometheus_accept() {
    let ports = free_ports(5);
    assert_eq!(ports.len(), 5, "free loopback ports");
    let (disp, game1, game2, gate, prom) = (ports[0], ports[1], ports[2], ports[3], ports[4]);
    // Every fifth client call is traced hop by hop; a reply later than 100 ms is logged.
    let gate_lines = format!("metrics_addr = 127.0.0.1:{gate}\ntrace_sample = 5\nslow_call_ms = 100");
    let extra = format!(
        "[dispatcher1]\nmetrics_addr = 127.0.0.1:{disp}\n[game1]\nmetrics_addr = 127.0.0.1:{game1}\n\
         [game2]\nmetrics_addr = 127.0.0.1:{game2}\n"
    );
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_echo"));
    let spec = Spec { dispatchers: 1, games: 2, gate: &gate_lines, extra: &extra, ..Spec::default() };
    let cluster = TestCluster::start_with("metrics", &exe, &spec).expect("cluster");
    for _ in 0..4 {
        let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
        let me = c.wait_player(Duration::from_secs(10)).expect("player");
        for n in 0..25 {
            c.call(me, "echo", vec![Value::Int(n)]).expect("send");
            loop {
                match c.next(Duration::from_secs(5)).expect("reply") {
                    ServerMsg::Call { method, .. } if method == "echo_reply" => break,
                    ServerMsg::Error { message, .. } => panic!("{message}"),
                    _ => {}
                }
            }
        }
    }
    // One call that sleeps 150 ms on its game: slow at the game, so traced whether sampled
    // or not, and logged by the gate with the time at each hop.
    let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let me = c.wait_player(Duration::from_secs(10)).expect("player");
    c.call(me, "nap", vec![Value::Int(150)]).expect("send");
    loop {
        match c.next(Duration::from_secs(5)).expect("reply") {
            ServerMsg::Call { method, .. } if method == "nap_reply" => break,
            ServerMsg::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    // Sets are published once a second: wait for the calls to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut g1, mut g2) = (String::new(), String::new());
    while Instant::now() < deadline {
        g1 = get(game1, "/metrics");
        g2 = get(game2, "/metrics");
        let calls = total(&g1, "oxworld_entity_calls_total") + total(&g2, "oxworld_entity_calls_total");
        if calls >= 100.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let echo_calls: f64 = [&g1, &g2]
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| l.starts_with("oxworld_entity_calls_total{type=\"Account\",method=\"echo\"}"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    assert!(echo_calls >= 100.0, "100 echo calls counted by type and method:\n{g1}\n{g2}");
    let d = get(disp, "/metrics");
    let gt = get(gate, "/metrics");
    assert!(total(&d, "oxworld_routed_total") >= 200.0, "{d}");
    assert!(total(&d, "oxworld_frames_in_total{kind=\"Call\"}") >= 100.0, "calls by kind: {d}");
    assert!(total(&gt, "oxworld_client_calls_total") >= 100.0, "{gt}");
    assert!(total(&gt, "oxworld_client_msgs_out_total") >= 101.0, "every reply delivered and counted: {gt}");
    // Handler time by type and method at the games; traced calls' hops at the gate.
    let echo_timed = total(&g1, "oxworld_entity_call_seconds_count{type=\"Account\",method=\"echo\"}")
        + total(&g2, "oxworld_entity_call_seconds_count{type=\"Account\",method=\"echo\"}");
    assert!(echo_timed >= 100.0, "the handler time histogram:\n{g1}\n{g2}");
    assert!(total(&g1, "oxworld_slow_calls_total") + total(&g2, "oxworld_slow_calls_total") >= 1.0, "the nap");
    assert!(total(&gt, "oxworld_traced_calls_total") >= 20.0, "1 in 5 of 101 calls sampled: {gt}");
    let game_in =
        total(&g1, "oxworld_frames_in_total{kind=\"Call\"}") + total(&g2, "oxworld_frames_in_total{kind=\"Call\"}");
    let game_out = total(&g1, "oxworld_frames_out_total{kind=\"ToClients\"}")
        + total(&g2, "oxworld_frames_out_total{kind=\"ToClients\"}");
    assert!(game_in >= 100.0 && game_out >= 100.0, "games' messages by kind:\n{g1}\n{g2}");
    assert!(g1.contains("oxworld_aoi_step_seconds_count"), "{g1}");
    for hop in ["gate_in", "dispatcher_in", "game_queue", "handler", "dispatcher_back", "gate_out"] {
        let n = total(&gt, &format!("oxworld_call_hop_seconds_count{{hop=\"{hop}\"}}"));
        assert!(n >= 19.0, "sampled calls that came back, at {hop}: {gt}");
    }
    assert!(total(&gt, "oxworld_slow_calls_total") >= 1.0, "the nap reached the gate slow: {gt}");
    let gate_log = std::fs::read_to_string(cluster.layout.run_dir.join("gate1.log")).expect("gate log");
    let line = gate_log.lines().find(|l| l.contains("slow call from client")).unwrap_or_else(|| panic!("{gate_log}"));
    // The 150 ms are the handler's; the log scale rounds down by at most an eighth.
    let handler_ms: f64 = line
        .split("handler ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the handler hop: {line}"));
    assert!((130.0..1000.0).contains(&handler_ms), "{line}");
    assert!(line.contains("gate_out"), "{line}");
    assert!(total(&gt, "oxworld_client_msgs_in_total{kind=\"call\"}") >= 100.0, "client messages by kind: {gt}");
    assert!(gt.contains("oxworld_clients{transport=\"tcp\"}") && gt.contains("transport=\"kcp\""), "{gt}");
    for (kind, text) in [("dispatcher", &d), ("game", &g1), ("gate", &gt)] {
        assert!(total(text, "oxworld_loop_iteration_seconds_count") > 0.0, "{kind}: the loop histogram:\n{text}");
        assert!(text.contains("oxworld_loop_iteration_seconds_bucket{le=\"0.001\"}"), "{kind}");
        assert!(total(text, "process_resident_memory_bytes") > 0.0, "{kind}: process RSS");
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus; .ci/run installs it)");
        check.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
        let out = check.wait_with_output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool refuses the {kind}'s metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A real Prometheus server scrapes the four endpoints; one series comes back through its API.
    let dir = cluster.layout.run_dir.parent().expect("cluster dir").join("prometheus");
    std::fs::create_dir_all(&dir).expect("dir");
    let targets = [disp, game1, game2, gate].map(|p| format!("'127.0.0.1:{p}'")).join(", ");
    let yml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: oxworld\n    static_configs:\n      - targets: [{targets}]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), yml).expect("config");
    let mut server = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus; .ci/run installs it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answer = String::new();
    let mut up = false;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", prom)) else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let q = "/api/v1/query?query=sum(oxworld_client_calls_total)";
        if write!(s, "GET {q} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            continue;
        }
        answer.clear();
        let _ = s.read_to_string(&mut answer);
        if answer.contains("\"status\":\"success\"") && answer.contains("\"value\":[") {
            up = true;
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "Prometheus answered a query about a scraped series: {answer}");
    let value: f64 = answer
        .rsplit("\"value\":[")
        .next()
        .and_then(|v| v.split('"').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(value >= 100.0, "the scraped client call count: {answer}");
    cluster.stop().expect("clean stop");
}
