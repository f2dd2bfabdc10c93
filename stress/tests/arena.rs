//! The load tool against a real arena cluster (testkit: one dispatcher, two games, so logins may
//! migrate the player to arena 1's game): a short strict `--scenario arena --json` run logs
//! every bot in, moves and shoots with no error, and reports its counters on its last line.

use std::path::PathBuf;
use std::process::Command;

use oxworld_bin::testkit::{Spec, TestCluster, fresh_bin};

fn stress() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oxworld-stress"))
}

#[test]
fn arena_bots_run_strict() {
    let dir = stress().parent().expect("bin dir").to_path_buf();
    let game = fresh_bin(&dir, "arena").expect("the arena game is built");
    let spec = Spec { games: 2, ..Spec::default() };
    let cluster = TestCluster::start_with("stress-arena", &game, &spec).expect("cluster");
    let out = Command::new(stress())
        .args(["--scenario", "arena", "--bots", "20", "--duration", "5", "--strict", "--json"])
        .arg("--config")
        .arg(&cluster.layout.config)
        .output()
        .expect("oxworld-stress runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let json = stdout.lines().last().unwrap_or("");
    assert!(
        json.starts_with("{\"scenario\":\"arena\",") && json.contains("\"bots\":20,") && json.contains("\"errors\":0,"),
        "{json}"
    );
    let field = |k: &str| -> u64 {
        let at = json.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("no {k} in {json}")) + k.len() + 3;
        json[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(field("moves") > 0, "the bots moved: {json}");
    assert!(field("shots") > 0, "the bots shot: {json}");
    assert!(field("hits") + field("misses") + field("refused") <= field("shots"), "answers of shots sent: {json}");
    for action in ["register", "login", "shoot"] {
        assert!(json.contains(&format!("\"{action}\":{{\"count\":")), "{action} timed: {json}");
    }
    cluster.stop().expect("clean stop");
}
