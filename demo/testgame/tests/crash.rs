//! Losing a game under load: a cluster (2 dispatchers, 2 games, 1 gate, `save_interval_s = 1`)
//! under `oxworld start --supervise`, strict testgame bots with `--reconnect`, and the stress
//! tool SIGKILLs `game1` mid-run (`--kill game1@SECS`). The supervisor has it running again
//! within a second; the bots whose player was there are told (`PlayerLost`), log in again
//! (`relogins`), and every bot has a successful action within 3 s of the kill; no bot's
//! persistent counter lost a value acknowledged more than the save interval before
//! (`lost_values`), and nothing else failed (`errors` 0).

use std::path::PathBuf;

use oxworld_bin::testkit::{Spec, TestCluster};

/// Bots, seconds of sending, and when the kill comes.
const BOTS: u64 = 150;
const SECS: u64 = 14;
const KILL_AT: u64 = 5;

fn field(json: &str, name: &str) -> Option<u64> {
    let rest = json.split(&format!("\"{name}\":")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn a_supervised_cluster_loses_a_game_under_load_and_every_bot_recovers() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_testgame"));
    let spec = Spec { dispatchers: 2, games: 2, storage: "save_interval_s = 1", ..Spec::default() };
    let cluster = TestCluster::start_with("crash", &exe, &spec).expect("cluster");
    let o = cluster.cli(&["start", "--no-build", "--supervise"]).expect("oxworld runs");
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && said.contains("supervisor running"), "{said}");
    let bots = BOTS;
    let out = cluster
        .stress_command()
        .expect("oxworld-stress is built")
        .args(["--scenario", "testgame", "--strict", "--reconnect", "--json", "--rate", "1"])
        .args(["--bots", &bots.to_string(), "--duration", &SECS.to_string()])
        .args(["--kill", &format!("game1@{KILL_AT}")])
        .output()
        .expect("oxworld-stress runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().unwrap_or("");
    assert!(out.status.success(), "strict run failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(field(json, "errors"), Some(0), "{json}");
    assert_eq!(field(json, "lost_values"), Some(0), "{json}");
    assert!(field(json, "relogins").is_some_and(|n| n > 0), "the bots on game1 logged in again: {json}");
    assert!(json.contains("\"bump\":{\"count\":"), "bots wrote their counters: {json}");
    let kill = json.split("\"kills\":[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
    assert_eq!(field(kill, "bots"), Some(bots), "{kill}");
    assert_eq!(field(kill, "recovered"), Some(bots), "every bot worked again after the kill: {kill}");
    let worst = field(kill, "recover_max_ms").unwrap_or(u64::MAX);
    assert!(worst <= 3000, "every bot working again within 3 s of the kill: {kill}");
    // The supervisor's log: game1 restarted within a second of the kill.
    let killed_at = field(kill, "killed_at_unix_ms").unwrap_or(0);
    let log = std::fs::read_to_string(cluster.layout.run_dir.join("supervisor.log")).expect("supervisor log");
    let restarted_at = log
        .lines()
        .find(|l| l.contains("restarted game1 "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|stamp| stamp.replace('.', "").parse::<u64>().ok());
    let back = restarted_at.map(|t| t.saturating_sub(killed_at));
    assert!(back.is_some_and(|ms| ms < 1000), "game1 restarted {back:?} ms after the kill:\n{log}");
    println!("crash run: {json}");
    println!("game1 restarted {} ms after the kill", back.unwrap_or(0));
}
