#!/usr/bin/env python3
"""Check a running oxworld gate (serving the demo/echo game) with the independent client.

    check_gate.py --config PATH [--gate gate1] [--pubkey HEX] [--timeout S] [--big N] [--wait S]

Reads the cluster config itself (configparser): the gate's [gateN] section over
[gate_common] (listen_addr, ws_addr, kcp_addr, encrypt, key_file, compress_threshold_bytes,
max_client_frame_bytes). When `encrypt` is on, the gate's public key is derived from its key
file (key_file, relative to the config file's directory; 64 hex digits of the X25519 secret)
unless --pubkey is given.

Then, in this process, over every transport the gate has (tcp: listen_addr, ws: ws_addr,
kcp: kcp_addr), without and with lz4 offered, it echoes a short text and a generated
100 000-char text (sent and answered in two fragments; with lz4, compressed as well), and
checks a refused hello over tcp (a wrong gate key: status 04; against a plain gate, a Noise
hello: status 03).

Prints one JSON line on stdout ({"ok": ..., "runs": [...], "failed": [...]}), a line per
failed run on stderr, and exits 0 only if every run passed (1: a run failed; 2: the config
could not be used). Written from PROTOCOL.md and conf/oxworld.ini alone, like client.py.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import client as oxc  # noqa: E402  (net/interop/client.py)

SHORT_TEXT = "héllo, wörld ✓"
BIG_CHARS = 100_000


class ConfigError(Exception):
    pass


def read_gate_config(path: str, gate: str) -> dict:
    """The settings of `gate` that a client needs, with PROTOCOL.md section 10's defaults."""
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"),
                                   strict=False)
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f)
    except (OSError, configparser.Error) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not gate.startswith("gate") or not gate[4:].isdigit() or int(gate[4:]) < 1:
        raise ConfigError(f"--gate {gate!r}: expected gateN (N >= 1)")
    if not cp.has_section(gate):
        # A gate may be configured by [gate_common] alone when desired_gates covers it.
        desired = cp.get("deployment", "desired_gates", fallback="1").strip()
        if not desired.isdigit() or int(gate[4:]) > int(desired):
            raise ConfigError(f"{path} has no [{gate}] section and desired_gates = {desired}")

    def get(key: str, default=None):
        for section in (gate, "gate_common"):
            if cp.has_option(section, key):
                return cp.get(section, key).strip()
        return default

    def flag(key: str, default: bool) -> bool:
        v = get(key)
        if v is None or v == "":
            return default
        low = v.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"[{gate}] {key} = {v!r} is not a boolean")

    def integer(key: str, default: int) -> int:
        v = get(key)
        if v is None or v == "":
            return default
        try:
            return int(v.replace("_", ""))
        except ValueError:
            raise ConfigError(f"[{gate}] {key} = {v!r} is not an integer") from None

    n = int(gate[4:])
    conf_dir = os.path.dirname(os.path.abspath(path))
    key_file = get("key_file") or "gate.key"
    return {
        "gate": gate,
        "tcp": get("listen_addr") or f"127.0.0.1:{14000 + n - 1}",
        "ws": get("ws_addr") or None,
        "kcp": get("kcp_addr") or None,
        "encrypt": flag("encrypt", True),
        "key_file": key_file if os.path.isabs(key_file) else os.path.join(conf_dir, key_file),
        "compress_threshold": integer("compress_threshold_bytes", 512),
        "max_client_frame": integer("max_client_frame_bytes", 1_048_576),
    }


def connect_addr(addr: str) -> str:
    """A listen address as a client dials it: the wildcard means this machine."""
    host, port = oxc.parse_addr(addr)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def public_key_from_file(path: str) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the gate key file: {e}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{path}: not hex") from None
    if len(secret) != 32:
        raise ConfigError(f"{path}: {len(secret)} bytes, expected 32 (64 hex digits)")
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def missing_packages(g: dict) -> list:
    """The packages (setup.sh) this gate's checks need that cannot be imported."""
    import importlib
    need = ["noise.connection", "lz4.block", "cryptography.hazmat.primitives.asymmetric.x25519"]
    if g["ws"]:
        need.append("websockets.sync.client")
    if g["kcp"]:
        need.append("kcp.extension")
    missing = []
    for mod in need:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            missing.append(f"{mod} ({e})")
    return missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="the cluster's ini file")
    ap.add_argument("--gate", default="gate1", help="which [gateN] to check (default gate1)")
    ap.add_argument("--pubkey", help="the gate's public key (hex) instead of deriving it from key_file")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--big", type=int, default=BIG_CHARS,
                    help=f"chars of the long echo text (default {BIG_CHARS})")
    ap.add_argument("--wait", type=float, default=5.0,
                    help="seconds the first run retries while the gate refuses connections (default 5)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every message on stderr")
    a = ap.parse_args(argv)
    started = time.monotonic()

    def fail_config(msg: str) -> int:
        print(f"check_gate: config error: {msg}", file=sys.stderr)
        print(json.dumps({"ok": False, "error": msg}, ensure_ascii=False))
        return 2

    try:
        g = read_gate_config(a.config, a.gate)
        missing = missing_packages(g)
        if missing:
            raise ConfigError(f"Python packages missing: {', '.join(missing)} (use the python that "
                              f"net/interop/setup.sh prints)")
        if not g["encrypt"]:
            pub = None
        elif a.pubkey:
            try:
                pub = bytes.fromhex(a.pubkey.strip())
            except ValueError:
                raise ConfigError("--pubkey is not hex") from None
            if len(pub) != 32:
                raise ConfigError("--pubkey must be 64 hex digits")
        else:
            pub = public_key_from_file(g["key_file"])
        for t in ("tcp", "ws", "kcp"):
            if g[t]:
                g[t] = connect_addr(g[t])
    except (ConfigError, ValueError) as e:
        return fail_config(str(e))

    # The gate refuses client messages over max_client_frame_bytes: keep the long text under it
    # (the echo Call adds about 30 bytes to the text).
    big = max(1, min(a.big, g["max_client_frame"] - 64))
    lz4_expected = g["compress_threshold"] > 0
    log = (lambda s: print(s, file=sys.stderr)) if a.verbose else None

    # A hard stop, should a run block past every deadline of its own.
    runs_planned = 4 * sum(1 for t in ("tcp", "ws", "kcp") if g[t]) + 1
    hard_limit = a.wait + runs_planned * (a.timeout + 2) + 5

    def watchdog():
        print(f"check_gate: error: still running after {hard_limit:.0f} s; giving up", file=sys.stderr)
        print(json.dumps({"ok": False, "error": f"hung for {hard_limit:.0f} s"}))
        sys.stdout.flush()
        os._exit(1)
    timer = threading.Timer(hard_limit, watchdog)
    timer.daemon = True
    timer.start()

    runs = []
    wait_until = time.monotonic() + a.wait
    timed_out = set()       # transports on which a run timed out: their other runs are skipped

    def record(name: str, fn, kind: str) -> None:
        t0 = time.monotonic()
        entry = {"name": name}
        if kind in timed_out:
            entry["ok"] = False
            entry["error"] = f"skipped: an earlier {kind} run timed out"
        while "ok" not in entry:
            try:
                entry.update(fn())
                entry["ok"] = True
            except ConnectionRefusedError as e:
                # Nothing listens (yet): only the first run waits for the gate, up to --wait s.
                if not runs and time.monotonic() < wait_until:
                    time.sleep(0.1)
                    continue
                entry["ok"] = False
                entry["error"] = f"{type(e).__name__}: {e} (is the gate running?)"
            except Exception as e:  # noqa: BLE001 - every failure is reported the same way
                entry["ok"] = False
                entry["error"] = f"{type(e).__name__}: {e}"
                if isinstance(e, TimeoutError):
                    timed_out.add(kind)
        if not entry["ok"]:
            print(f"check_gate: FAIL {name}: {entry['error']}", file=sys.stderr)
        entry["ms"] = round((time.monotonic() - t0) * 1000, 1)
        runs.append(entry)

    big_text = oxc.make_text(big)
    for kind in ("tcp", "ws", "kcp"):
        addr = g[kind]
        if not addr:
            continue
        for lz in (False, True):
            for text in (SHORT_TEXT, big_text):
                name = f"{kind} {'lz4' if lz else 'no-lz4'} {len(text)} chars"

                def echo(kind=kind, addr=addr, lz=lz, text=text):
                    res = oxc.run_echo(kind, addr, gate_public_key=pub, lz4=lz, text=text,
                                       timeout=a.timeout, log=log)
                    st = res["channel"]
                    problems = []
                    if res["encrypted"] != g["encrypt"]:
                        problems.append(f"encrypted={res['encrypted']}")
                    if res["lz4"] != (lz and lz4_expected):
                        problems.append(f"lz4 accepted={res['lz4']}, expected {lz and lz4_expected}")
                    if len(text) > oxc.MAX_FRAGMENT:
                        # 100 000 chars: two fragments each way, compressed or not (about 70 %).
                        if not (st["fragmented_out"] and st["fragmented_in"]):
                            problems.append(f"expected fragmented messages both ways: {st}")
                        if res["lz4"] and not (st["lz4_out"] and st["lz4_in"]):
                            problems.append(f"expected compressed messages both ways: {st}")
                    if problems:
                        raise AssertionError("; ".join(problems))
                    return {"login_ms": res["login_ms"], "echo_ms": res["echo_ms"],
                            "lz4": res["lz4"], "channel": st}
                record(name, echo, kind)

    # A refused hello over TCP: a wrong key against an encrypting gate (04), a Noise hello
    # against a plain one (03).
    wrong_key = oxc.noise_public_key(bytes(range(1, 33)))
    if pub == wrong_key:
        wrong_key = oxc.noise_public_key(bytes(range(2, 34)))
    want = 4 if g["encrypt"] else 3

    def refusal():
        res = oxc.run_expect_refusal("tcp", g["tcp"], gate_public_key=wrong_key, lz4=False,
                                     timeout=a.timeout, expect_status=want, log=log)
        return {"status": res["status"], "reason": res["reason"]}
    record(f"tcp refusal (status {want:02x})", refusal, "tcp")

    timer.cancel()
    failed = [r["name"] for r in runs if not r["ok"]]
    out = {"ok": not failed, "gate": g["gate"], "encrypted": g["encrypt"],
           "transports": {t: g[t] for t in ("tcp", "ws", "kcp") if g[t]},
           "lz4_expected": lz4_expected, "big_chars": big, "passed": len(runs) - len(failed),
           "failed": failed, "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
           "runs": runs}
    print(json.dumps(out, ensure_ascii=False))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
