//! The proving run CI makes: `oxworld-stress --scenario testgame --bots 200 --duration 60
//! --strict --json` against a real cluster (2 dispatchers, 2 games, 1 gate), with `oxworld
//! reload` of both games in the middle. Any error or action timeout fails it. The bots move as
//! GoWorld's do (`moves` counted), and CPU is measured over the steady phase (one decimal).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use oxworld_bin::testkit::{TestCluster, fresh_bin};

/// Bots and seconds; `OXWORLD_STRICT_BOTS` / `OXWORLD_STRICT_SECS` override them for a quick
/// local run.
fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn strict_testgame_run_with_a_reload_in_the_middle() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_testgame"));
    let cluster = TestCluster::start("strict", &exe, 2, 2, "").expect("cluster");
    let stress = fresh_bin(&cluster.layout.bin_dir, "oxworld-stress").expect("oxworld-stress is built");
    let (bots, secs) = (knob("OXWORLD_STRICT_BOTS", 200), knob("OXWORLD_STRICT_SECS", 60));
    let run = Command::new(&stress)
        .args(["--scenario", "testgame", "--strict", "--json", "--rate", "1"])
        .args(["--bots", &bots.to_string(), "--duration", &secs.to_string()])
        .arg("--config")
        .arg(&cluster.layout.config)
        .arg("--run-dir")
        .arg(&cluster.layout.run_dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("oxworld-stress runs");
    std::thread::sleep(Duration::from_secs(secs / 2));
    let reload = cluster.cli(&["reload"]).expect("oxworld runs");
    let reload_out = format!("{}{}", String::from_utf8_lossy(&reload.stdout), String::from_utf8_lossy(&reload.stderr));
    let out = run.wait_with_output().expect("oxworld-stress finishes");
    assert!(reload.status.success(), "reload: {reload_out}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().unwrap_or("");
    assert!(out.status.success(), "strict run failed:\n{stdout}");
    assert!(json.starts_with("{\"scenario\":\"testgame\"") && json.contains("\"errors\":0,"), "{json}");
    for action in [
        "login",
        "enter_space",
        "enter_nil_space",
        "say_world",
        "test_list",
        "test_complex",
        "test_aoi",
        "mail",
        "online",
    ] {
        assert!(json.contains(&format!("\"{action}\":{{\"count\":")), "{action} never ran: {json}");
    }
    // Half of each bot's 100 ms ticks send a Move: about 5 per second per bot.
    let moves: u64 = json
        .split("\"moves\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(moves >= bots * secs * 2, "{moves} moves: {json}");
    assert!(json.contains("\"cpu_phase\":\"steady\""), "CPU over the steady phase: {json}");
    // (The games were replaced by the reload: a process that restarted meanwhile is left out.)
    let cpu = json.split("\"dispatcher1\":{\"cpu_pct\":").nth(1).and_then(|r| r.split(',').next()).unwrap_or("");
    assert!(cpu.split_once('.').is_some_and(|(_, d)| d.len() == 1), "one decimal: {cpu} in {json}");
}
