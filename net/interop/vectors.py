#!/usr/bin/env python3
"""Check the test vectors of PROTOCOL.md section 2.8 with an independent Noise
implementation (the `noiseprotocol` PyPI package).

Written from PROTOCOL.md alone (sections 2.4, 2.5, 2.6, 2.8); imports nothing
from the oxworld repository. Exit 0 when every vector matches; otherwise prints a
byte-level diff for each mismatch and exits 1.
"""
import sys
import warnings

from noise.connection import Keypair, NoiseConnection

PROTOCOL_NAME = b"Noise_NK_25519_ChaChaPoly_SHA256"
PROLOGUE_LABEL = b"oxworld client channel v2"  # section 2.5: 25 ASCII bytes
MAGIC = b"OXW"
VERSION = 0x02
MODE_NOISE = 0x01

# Section 2.8, copied from the table.
GATE_STATIC_SECRET = bytes(range(32))
V = {
    "gate static public key": "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f",
    "client ephemeral secret": "74ed346d4cc835e1945348805e28c48b2b27818a685ae2ec64baff9d615e10a8",
    "gate ephemeral secret": "1fcfab352c8b5d27e4985deeab5c9c6d53db5bdcf40b2ce2d97149fe8eba3497",
    "client hello": "4f585702010083bbe66c9e5d7806ef48a133734e1e8ff7af5455f2685c3c6f0506d96dab1e1859720d5dfeb0267bfe2e44db27ca4796",
    "server hello": "4f58570200017e117f70dc634f0098d413b22001166e10992c7fdbd90a061d889a01a0da8b2e1d396f8de2863e4fdcb233e48964cf9fe9",
    "client first record": "7950f5bcee7668fd2748f96b61b3988e1da7",
    "gate first record": "4b38c34604d828886fde8682ab849bfe09b1a5",
}
CLIENT_FIRST_PLAINTEXT = bytes([0x00, 0x02])  # flags 0, Heartbeat
GATE_FIRST_PLAINTEXT = bytes([0x00]) + b"hi"  # flags 0, "hi"

failures = []


def check(name, got, want_hex):
    want = bytes.fromhex(want_hex)
    got = bytes(got)
    if got == want:
        print(f"ok    {name} ({len(got)} bytes)")
        return
    failures.append(name)
    print(f"FAIL  {name}: got {len(got)} bytes, want {len(want)} bytes")
    print(f"      got  {got.hex()}")
    print(f"      want {want.hex()}")
    diffs = [i for i in range(max(len(got), len(want)))
             if i >= len(got) or i >= len(want) or got[i] != want[i]]
    if diffs:
        first = diffs[0]
        print(f"      first differing offset {first}; {len(diffs)} offsets differ")


def noise(initiator, prologue):
    conn = NoiseConnection.from_name(PROTOCOL_NAME)
    conn.set_prologue(prologue)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    return conn


def main():
    # Setting an ephemeral key by hand makes noiseprotocol warn; that is the point here.
    warnings.filterwarnings("ignore", message="One of ephemeral keypairs is already set")

    # 1. The gate's public key from its secret 00..1f.
    probe = NoiseConnection.from_name(PROTOCOL_NAME)
    dh_keypair = probe.noise_protocol.dh_fn.klass.from_private_bytes(GATE_STATIC_SECRET)
    gate_public = dh_keypair.public_bytes
    check("gate static public key", gate_public, V["gate static public key"])

    # 2. The client hello header (mode 1, no features) and the prologue.
    header = MAGIC + bytes([VERSION, MODE_NOISE, 0x00])
    prologue = PROLOGUE_LABEL + header
    assert len(PROLOGUE_LABEL) == 25, len(PROLOGUE_LABEL)

    client = noise(True, prologue)
    client.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, bytes.fromhex(V["gate static public key"]))
    client.set_keypair_from_private_bytes(Keypair.EPHEMERAL, bytes.fromhex(V["client ephemeral secret"]))
    client.start_handshake()

    gate = noise(False, prologue)
    gate.set_keypair_from_private_bytes(Keypair.STATIC, GATE_STATIC_SECRET)
    gate.set_keypair_from_private_bytes(Keypair.EPHEMERAL, bytes.fromhex(V["gate ephemeral secret"]))
    gate.start_handshake()

    # Message 1: e, es with an empty payload (48 bytes) after the 6-byte header.
    msg1 = bytes(client.write_message(b""))
    client_hello = header + msg1
    check("client hello", client_hello, V["client hello"])

    # The gate reads the *document's* client hello (so a mismatch above does not hide
    # a mismatch below), checking the header is the one the prologue used.
    doc_client_hello = bytes.fromhex(V["client hello"])
    if doc_client_hello[:6] != header:
        failures.append("client hello header")
        print(f"FAIL  vector client hello header {doc_client_hello[:6].hex()} != {header.hex()}")
    try:
        payload1 = bytes(gate.read_message(doc_client_hello[6:]))
    except Exception as e:  # noqa: BLE001 - InvalidTag etc.: the vector does not verify
        failures.append("gate reads the vector's message 1")
        print(f"FAIL  the gate side cannot read the vector's message 1: {e!r}")
        return finish()
    if payload1 != b"":
        failures.append("message 1 payload")
        print(f"FAIL  message 1 payload is {payload1.hex()}, want empty")

    # Message 2: e, ee with the 1-byte features payload (00).
    msg2 = bytes(gate.write_message(bytes([0x00])))
    server_hello = MAGIC + bytes([VERSION, 0x00, MODE_NOISE]) + msg2
    check("server hello", server_hello, V["server hello"])

    doc_server_hello = bytes.fromhex(V["server hello"])
    try:
        features = bytes(client.read_message(doc_server_hello[6:]))
    except Exception as e:  # noqa: BLE001
        failures.append("client reads the vector's message 2")
        print(f"FAIL  the client side cannot read the vector's message 2: {e!r}")
        return finish()
    if features != b"\x00":
        failures.append("message 2 payload")
        print(f"FAIL  message 2 payload (features) is {features.hex()}, want 00")
    if not (client.handshake_finished and gate.handshake_finished):
        failures.append("handshake not finished")
        print("FAIL  handshake did not finish after two messages")
        return finish()
    if client.get_handshake_hash() != gate.get_handshake_hash():
        failures.append("handshake hash")
        print("FAIL  the two ends disagree on the handshake hash")

    # First transport records (nonce 0 in each direction, empty associated data).
    c1 = client.encrypt(CLIENT_FIRST_PLAINTEXT)
    check("client first record (Heartbeat, plaintext 00 02)", c1, V["client first record"])
    g1 = gate.encrypt(GATE_FIRST_PLAINTEXT)
    check("gate first record (plaintext 00 68 69)", g1, V["gate first record"])

    # And the other way round: each end opens the document's record of the other.
    try:
        p = gate.decrypt(bytes.fromhex(V["client first record"]))
        if p != CLIENT_FIRST_PLAINTEXT:
            raise ValueError(p.hex())
        print("ok    gate decrypts the vector's client record to 00 02")
    except Exception as e:  # noqa: BLE001 - any failure is a vector mismatch
        failures.append("gate decrypts client record")
        print(f"FAIL  gate cannot open the vector's client record: {e!r}")
    try:
        p = client.decrypt(bytes.fromhex(V["gate first record"]))
        if p != GATE_FIRST_PLAINTEXT:
            raise ValueError(p.hex())
        print("ok    client decrypts the vector's gate record to 00 68 69")
    except Exception as e:  # noqa: BLE001
        failures.append("client decrypts gate record")
        print(f"FAIL  client cannot open the vector's gate record: {e!r}")

    # TCP framing note of section 2.8: 36 00 00 00 before the client hello.
    prefix = len(bytes.fromhex(V["client hello"])).to_bytes(4, "little")
    check("TCP length prefix of the client hello", prefix, "36000000")

    return finish()


def finish():
    if failures:
        print(f"{len(failures)} check(s) failed: {', '.join(failures)}")
        return 1
    print("all PROTOCOL.md section 2.8 vectors match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
