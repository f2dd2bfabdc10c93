//! Clients nobody here wrote: `net/interop` is a Python client written from PROTOCOL.md alone,
//! on independent implementations from the package registries (`noiseprotocol` for Noise NK,
//! `websockets`, `kcp` = C ikcp, `lz4`). It checks PROTOCOL.md's test vectors, then calls the
//! echo demo over TCP, WebSocket and KCP, encrypted and not, compressed and not, and is
//! refused with a wrong key. `bash .ci/run` installs its virtualenv (`net/interop/setup.sh`).

use std::path::PathBuf;
use std::process::Command;

use oxworld_bin::testkit::{Spec, TestCluster};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interop virtualenv's python (`OXW_INTEROP_PYTHON` overrides).
fn python() -> PathBuf {
    let p = std::env::var_os("OXW_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/interop-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run `bash net/interop/setup.sh` (bash .ci/run does) to install the independent clients' packages",
        p.display()
    );
    p
}

fn run(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python()).args(args).current_dir(repo()).output().expect("python runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed:\n{text}");
    text
}

#[test]
fn protocol_md_test_vectors_hold_for_an_independent_noise_implementation() {
    run(&["net/interop/vectors.py".as_ref()]);
}

#[test]
fn a_client_written_from_protocol_md_works_over_every_transport() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_echo"));
    for (name, gate) in [("interop-enc", ""), ("interop-plain", "encrypt = false")] {
        let cluster = TestCluster::start_with(name, &exe, &Spec { gate, ..Spec::default() }).expect("cluster");
        let out = run(&["net/interop/check_gate.py".as_ref(), "--config".as_ref(), cluster.layout.config.as_os_str()]);
        let json = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default().to_owned();
        for t in ["tcp", "ws", "kcp"] {
            assert!(json.contains(&format!("\"{t}\"")), "{name}: {t} was checked: {out}");
        }
        assert_eq!(cluster.running().len(), 3, "{name}: every process is still up");
        cluster.stop().expect("clean stop");
    }
}
