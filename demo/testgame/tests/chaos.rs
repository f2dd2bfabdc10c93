//! The chaos run, short (BENCHMARKS.md, "Failover"): a cluster of 2 dispatchers, 2 games and 2
//! gates (`save_interval_s = 1`) under `oxworld start --supervise`, strict testgame bots with
//! `--reconnect`, and the stress tool's `--chaos`: it SIGKILLs `game1`, `gate1` and
//! `dispatcher1` at 2/9, 4/9 and 6/9 of the run. The supervisor has each running again within
//! a second. After each kill every affected bot works again within 3 s; the bots whose player
//! was on game1 log in again (`relogins`), those on gate1 resume their session on gate2
//! (`resumes`); no persistent value is lost, the dispatcher's death costs no call (exactly
//! once), and nothing else fails (`errors`, `other_errors` 0).

use std::path::PathBuf;

use oxworld_bin::testkit::{Spec, TestCluster};

/// Bots and seconds of sending (kills at 2/9, 4/9 and 6/9 of it).
const BOTS: u64 = 150;
const SECS: u64 = 27;

fn field(json: &str, name: &str) -> Option<u64> {
    let rest = json.split(&format!("\"{name}\":")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn a_supervised_cluster_loses_a_game_a_gate_and_a_dispatcher_under_load_and_every_bot_recovers() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_testgame"));
    let spec = Spec { dispatchers: 2, games: 2, gates: 2, storage: "save_interval_s = 1", ..Spec::default() };
    let cluster = TestCluster::start_with("chaos", &exe, &spec).expect("cluster");
    let o = cluster.cli(&["start", "--no-build", "--supervise"]).expect("oxworld runs");
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && said.contains("supervisor running"), "{said}");
    let out = cluster
        .stress_command()
        .expect("oxworld-stress is built")
        .args(["--scenario", "testgame", "--strict", "--reconnect", "--chaos", "--json", "--rate", "1"])
        .args(["--bots", &BOTS.to_string(), "--duration", &SECS.to_string()])
        .output()
        .expect("oxworld-stress runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().unwrap_or("");
    // The report, with what each kill caused ("after kill N: ..."), shown when a check fails.
    println!("{stdout}");
    assert!(out.status.success(), "strict run failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(field(json, "errors"), Some(0), "{json}");
    assert_eq!(field(json, "lost_values"), Some(0), "{json}");
    assert!(field(json, "relogins").is_some_and(|n| n > 0), "the bots on game1 logged in again: {json}");
    assert!(field(json, "resumes").is_some_and(|n| n > 0), "the bots on gate1 resumed: {json}");
    assert!(json.contains("\"bump\":{\"count\":"), "bots wrote their counters: {json}");
    let chaos = json.split("\"chaos\":[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
    let kills: Vec<&str> = chaos.split("},{").collect();
    assert_eq!(kills.len(), 3, "{chaos}");
    for (k, process) in kills.iter().zip(["game1", "gate1", "dispatcher1"]) {
        assert!(k.contains(&format!("\"process\":\"{process}\"")), "{k}");
        assert_eq!(field(k, "unrecovered"), Some(0), "every affected bot worked again: {k}");
        assert!(field(k, "recover_max_ms").is_some_and(|ms| ms <= 3000), "within 3 s: {k}");
        assert_eq!(field(k, "lost_values"), Some(0), "{k}");
        assert_eq!(field(k, "other_errors"), Some(0), "{k}");
    }
    assert!(field(kills[0], "bots_affected").is_some_and(|n| n > 0), "game1's players: {}", kills[0]);
    assert!(field(kills[1], "bots_affected").is_some_and(|n| n > 0), "gate1's clients: {}", kills[1]);
    assert_eq!(field(kills[1], "call_errors"), Some(0), "a resumed session loses no call: {}", kills[1]);
    assert_eq!(field(kills[2], "call_errors"), Some(0), "exactly once through a dispatcher's death: {}", kills[2]);
    // The supervisor's log: each restarted within a second of its kill.
    let log = std::fs::read_to_string(cluster.layout.run_dir.join("supervisor.log")).expect("supervisor log");
    let kill_list = json.split("\"kills\":[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
    for (k, process) in kill_list.split("},{").zip(["game1", "gate1", "dispatcher1"]) {
        let killed_at = field(k, "killed_at_unix_ms").unwrap_or(0);
        let restarted_at = log
            .lines()
            .find(|l| l.contains(&format!("restarted {process} ")))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|stamp| stamp.replace('.', "").parse::<u64>().ok());
        let back = restarted_at.map(|t| t.saturating_sub(killed_at));
        assert!(back.is_some_and(|ms| ms < 1000), "{process} restarted {back:?} ms after the kill:\n{log}");
    }
    println!("chaos run: {json}");
}
