//! The load tool against a real echo cluster (testkit): a short `--scenario echo --json` run
//! answers every call with no error and reports it on its last line; `--run-dir` adds the
//! processes' CPU and memory, the gate's metrics what it delivered, `--floor` the cost of a raw
//! loopback write; a bad scenario is refused with exit code 2.

use std::path::PathBuf;
use std::process::Command;

use oxworld_bin::testkit::{Spec, TestCluster, fresh_bin};

fn stress() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oxworld-stress"))
}

#[test]
fn a_short_echo_run_reports_every_call_answered() {
    let dir = stress().parent().expect("bin dir").to_path_buf();
    let game = fresh_bin(&dir, "echo").expect("the echo game is built");
    let gate_metrics = format!("metrics_addr = 127.0.0.1:{}", oxworld_bin::testkit::free_port());
    let spec = Spec { gate: &gate_metrics, ..Spec::default() };
    let cluster = TestCluster::start_with("stress-echo", &game, &spec).expect("cluster");
    let out = cluster
        .stress_command()
        .expect("oxworld-stress is built")
        .args(["--scenario", "echo", "--bots", "20", "--duration", "2", "--rate", "20", "--json", "--floor"])
        .output()
        .expect("oxworld-stress runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let json = stdout.lines().last().unwrap_or("");
    assert!(
        json.starts_with("{\"scenario\":\"echo\",\"transport\":\"tcp\",\"encrypted\":true,")
            && json.contains("\"bots\":20,")
            && json.contains("\"errors\":0,"),
        "{json}"
    );
    let field = |k: &str| -> u64 {
        let at = json.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("no {k} in {json}")) + k.len() + 3;
        json[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(field("calls") >= 20 * 20, "about 20 calls/s per bot for 2 s: {json}");
    assert_eq!(field("calls"), field("replies"), "every call answered: {json}");
    for p in ["dispatcher1", "game1", "gate1", "bots"] {
        assert!(json.contains(&format!("\"{p}\":{{\"cpu_pct\":")), "{p} measured: {json}");
    }
    // Every reply went through the gate (and the boots' creates): counted by its metrics.
    assert!(field("gate_deliveries") >= field("replies"), "{json}");
    assert!(json.contains("\"gate_us_per_delivery\":") && json.contains("\"raw_write_us\":"), "{json}");
    cluster.stop().expect("clean stop");
}

#[test]
fn an_unknown_scenario_is_refused() {
    let out = Command::new(stress()).args(["--scenario", "nope", "--duration", "1"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario \"nope\""));
}
