#!/usr/bin/env python3
"""Independent Python client for the oxworld gate's client protocol (version 2).

Written from PROTOCOL.md alone; imports nothing from the oxworld repository. It is a
small library (values, messages, the channel, transports, a session) and a CLI:

    client.py --transport tcp|ws|kcp --addr HOST:PORT [--pubkey HEX | --gate-key-file PATH | --plain]
              [--lz4] --echo TEXT
    client.py --transport tcp|ws|kcp --addr HOST:PORT --pubkey OTHER_HEX --expect-refusal
    client.py --self-test

The echo run connects, says hello (mode 1 Noise NK with the gate's public key, or mode 0
plain), waits for `Welcome` and the player's `CreateEntity`, calls `echo(TEXT)` on the
player and waits for the server call `echo_reply(TEXT)`. It prints one JSON line and exits
0, or prints the reason on stderr and exits 1 (also after --timeout seconds, default 10).

Section numbers below refer to PROTOCOL.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import struct
import sys
import threading
import time
import warnings

# Third-party packages (installed by setup.sh). Imported lazily where only one feature needs
# them, so that the codec can be used (and tested) without them.
try:
    from noise.connection import Keypair, NoiseConnection
except ImportError:  # pragma: no cover - reported when a Noise connection is attempted
    NoiseConnection = None
    Keypair = None

# ---------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------

MAGIC = b"OXW"
CHANNEL_VERSION = 0x02                          # 2.4: hello version byte
MODE_PLAIN = 0x00
MODE_NOISE = 0x01
FEATURE_LZ4 = 0x01                              # 2.4 / 2.7
NOISE_PROTOCOL_NAME = b"Noise_NK_25519_ChaChaPoly_SHA256"
PROLOGUE_LABEL = b"oxworld client channel v2"   # 2.5: 25 ASCII bytes, then the hello header
NOISE_MSG1_LEN = 48                             # 2.5: e (32) + tag of an empty payload (16)
NOISE_MSG2_LEN = 49                             # 2.5: e (32) + 1 byte features + tag (16)
NOISE_TAG_LEN = 16

HELLO_STATUS = {
    0: "ok",
    1: "malformed hello",
    2: "unsupported version",
    3: "mode refused",
    4: "handshake failed",
}

MAX_RECORD = 65535                              # 2.1
MAX_FRAGMENT = 65518                            # 2.6: 65535 - 16 (tag) - 1 (flags)
REC_LZ4 = 0x01                                  # 2.6 flags
REC_MORE = 0x02
MAX_SERVER_MESSAGE = 16 * 1024 * 1024           # 2.6: what the reference client accepts
LZ4_THRESHOLD = 512                             # 2.7: the reference default threshold

# Client -> server message types (section 6)
C_CALL = 0x01
C_HEARTBEAT = 0x02
C_MOVE = 0x03
# Server -> client message types (section 7)
S_WELCOME = 0x81
S_CREATE_ENTITY = 0x82
S_DESTROY_ENTITY = 0x83
S_CALL = 0x84
S_ERROR = 0x85
S_ATTR_OPS = 0x86
S_POSITIONS = 0x87

ERROR_NAMES = {
    1: "UnknownEntity", 2: "UnknownMethod", 3: "NotExposed", 4: "BadArguments",
    5: "NotAddressable", 6: "Malformed", 7: "Unavailable", 8: "Failed", 9: "Idle",
    10: "RateLimited", 11: "InvalidPosition",
}

NIL_ID = bytes(16)
MAX_DEPTH = 32                                  # section 4
MAX_ATTR_PATH = 32                              # section 7, AttrOps


class ProtocolError(Exception):
    """The peer sent something this document does not allow (fatal for the connection)."""


class DecodeError(ProtocolError):
    """A message or value did not decode; `kind` names the rule (Truncated, Trailing, ...)."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class ConnectionClosed(Exception):
    """The transport ended (EOF, close frame, reset)."""


class HelloRefused(Exception):
    """The gate answered the hello with a status other than 0 (section 2.4)."""

    def __init__(self, status: int, mode: int, reason: str):
        name = HELLO_STATUS.get(status, "unknown status")
        super().__init__(f"hello refused: status {status:02x} ({name}), gate mode {mode}: {reason}")
        self.status = status
        self.mode = mode
        self.reason = reason


# ---------------------------------------------------------------------------------------
# Section 5: FNV-1a 32
# ---------------------------------------------------------------------------------------

def fnv1a32(data: bytes | str) -> int:
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def method_id(name: str) -> int:
    return fnv1a32(name.encode("utf-8"))


# ---------------------------------------------------------------------------------------
# Sections 3 and 4: primitives and values
# ---------------------------------------------------------------------------------------

class Reader:
    """Bounds-checked little-endian reader over one message payload (section 3 rules)."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise DecodeError("Truncated", f"need {n} bytes at offset {self.pos}, {self.left()} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def bool8(self) -> bool:
        b = self.u8()
        if b not in (0, 1):
            raise DecodeError("BadBool", f"byte {b:#04x}")
        return b == 1

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack("<q", self.take(8))[0]

    def f64(self) -> float:
        return struct.unpack("<d", self.take(8))[0]

    def f32(self) -> float:
        return struct.unpack("<f", self.take(4))[0]

    def id(self) -> bytes:
        return self.take(16)

    def count(self, min_size: int, what: str) -> int:
        """A u32 count/length, refused before allocating when n*min_size > bytes left."""
        n = self.u32()
        if n * min_size > self.left():
            raise DecodeError("LengthAttack", f"{what} {n} x {min_size} > {self.left()} bytes left")
        return n

    def bytes_(self) -> bytes:
        return self.take(self.count(1, "bytes length"))

    def string(self) -> str:
        raw = self.take(self.count(1, "string length"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("InvalidUtf8", str(e)) from None

    def pos4(self) -> tuple:
        return tuple(self.f32() for _ in range(4))

    def finish(self) -> None:
        if self.left():
            raise DecodeError("Trailing", f"{self.left()} bytes after the last field")


class Writer:
    def __init__(self):
        self.buf = bytearray()

    def u8(self, v: int):
        self.buf.append(v & 0xFF)
        return self

    def u16(self, v: int):
        self.buf += struct.pack("<H", v)
        return self

    def u32(self, v: int):
        self.buf += struct.pack("<I", v)
        return self

    def i64(self, v: int):
        self.buf += struct.pack("<q", v)
        return self

    def f64(self, v: float):
        self.buf += struct.pack("<d", v)
        return self

    def f32(self, v: float):
        self.buf += struct.pack("<f", v)
        return self

    def id(self, v: bytes):
        if len(v) != 16:
            raise ValueError(f"an id is 16 bytes, got {len(v)}")
        self.buf += v
        return self

    def raw(self, v: bytes):
        self.buf += v
        return self

    def bytes_(self, v: bytes):
        return self.u32(len(v)).raw(v)

    def string(self, v: str):
        return self.bytes_(v.encode("utf-8"))

    def getvalue(self) -> bytes:
        return bytes(self.buf)


# Values map to Python as: nil None, false/true bool, int int, float float, string str,
# bytes bytes, list list, map dict[str, value]. Entity ids as arguments are bytes of length 16.
T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STRING, T_BYTES, T_LIST, T_MAP = range(9)


def encode_value(w: Writer, v, depth: int = 0) -> None:
    if v is None:
        w.u8(T_NIL)
    elif v is False:
        w.u8(T_FALSE)
    elif v is True:
        w.u8(T_TRUE)
    elif isinstance(v, int):
        if not -(1 << 63) <= v < (1 << 63):
            raise ValueError(f"int {v} does not fit in i64")
        w.u8(T_INT).i64(v)
    elif isinstance(v, float):
        w.u8(T_FLOAT).f64(v)
    elif isinstance(v, str):
        w.u8(T_STRING).string(v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        w.u8(T_BYTES).bytes_(bytes(v))
    elif isinstance(v, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise ValueError("TooDeep: list at depth >= 32")
        w.u8(T_LIST).u32(len(v))
        for e in v:
            encode_value(w, e, depth + 1)
    elif isinstance(v, dict):
        if depth >= MAX_DEPTH:
            raise ValueError("TooDeep: map at depth >= 32")
        entries = {}
        for k, e in v.items():
            if not isinstance(k, str):
                raise ValueError(f"map keys are strings, got {type(k).__name__}")
            entries[k.encode("utf-8")] = e
        w.u8(T_MAP).u32(len(entries))
        for kb in sorted(entries):          # ascending byte-wise order of the UTF-8 key
            w.u32(len(kb)).raw(kb)
            encode_value(w, entries[kb], depth + 1)
    else:
        raise ValueError(f"no value encoding for {type(v).__name__}")


def decode_value(r: Reader, depth: int = 0):
    tag = r.u8()
    if tag == T_NIL:
        return None
    if tag == T_FALSE:
        return False
    if tag == T_TRUE:
        return True
    if tag == T_INT:
        return r.i64()
    if tag == T_FLOAT:
        return r.f64()
    if tag == T_STRING:
        return r.string()
    if tag == T_BYTES:
        return r.bytes_()
    if tag == T_LIST:
        if depth >= MAX_DEPTH:
            raise DecodeError("TooDeep", f"list at depth {depth}")
        n = r.count(1, "list count")
        return [decode_value(r, depth + 1) for _ in range(n)]
    if tag == T_MAP:
        if depth >= MAX_DEPTH:
            raise DecodeError("TooDeep", f"map at depth {depth}")
        n = r.count(5, "map count")
        out = {}
        for _ in range(n):
            key = r.string()
            out[key] = decode_value(r, depth + 1)  # a duplicated key keeps the last value
        return out
    raise DecodeError("UnknownTag", f"tag {tag:#04x} at offset {r.pos - 1}")


def encode_args(w: Writer, args) -> None:
    w.u32(len(args))
    for a in args:
        encode_value(w, a, 0)


def decode_args(r: Reader) -> list:
    n = r.count(1, "argument count")
    return [decode_value(r, 0) for _ in range(n)]


def value_bytes(v) -> bytes:
    w = Writer()
    encode_value(w, v)
    return w.getvalue()


def value_from_bytes(b: bytes):
    r = Reader(b)
    v = decode_value(r)
    r.finish()
    return v


# ---------------------------------------------------------------------------------------
# Sections 6 and 7: messages
# ---------------------------------------------------------------------------------------

def enc_call(target: bytes, method: int | str, args=()) -> bytes:
    mid = method_id(method) if isinstance(method, str) else method
    w = Writer().u8(C_CALL).id(target).u32(mid)
    encode_args(w, list(args))
    return w.getvalue()


def enc_heartbeat() -> bytes:
    return bytes([C_HEARTBEAT])


def enc_move(entity: bytes, x: float, y: float, z: float, yaw: float) -> bytes:
    return Writer().u8(C_MOVE).id(entity).f32(x).f32(y).f32(z).f32(yaw).getvalue()


def decode_server_message(payload: bytes) -> dict:
    """Decode one server -> client message into a dict with a "type" key."""
    if not payload:
        raise DecodeError("Empty", "empty message")
    r = Reader(payload)
    t = r.u8()
    if t == S_WELCOME:
        m = {"type": "Welcome", "version": r.u16(), "client_id": r.id(), "idle_timeout_ms": r.u32()}
    elif t == S_CREATE_ENTITY:
        m = {"type": "CreateEntity", "is_player": r.bool8(), "id": r.id(), "entity_type": r.string()}
        attrs = decode_value(r, 0)
        if not isinstance(attrs, dict):
            raise DecodeError("BadAttrs", f"CreateEntity attrs is {type(attrs).__name__}, not a map")
        m["attrs"] = attrs
        m["pos"] = r.pos4()
    elif t == S_DESTROY_ENTITY:
        m = {"type": "DestroyEntity", "id": r.id()}
    elif t == S_CALL:
        m = {"type": "Call", "id": r.id(), "name": r.string(), "args": decode_args(r)}
    elif t == S_ERROR:
        code = r.u16()
        m = {"type": "Error", "code": code, "code_name": ERROR_NAMES.get(code, "Unknown"),
             "target": r.id(), "method": r.u32(), "message": r.string()}
    elif t == S_ATTR_OPS:
        m = {"type": "AttrOps", "id": r.id(), "ops": _decode_attr_ops(r)}
    elif t == S_POSITIONS:
        n = r.count(32, "position count")
        m = {"type": "Positions", "entries": [(r.id(), r.pos4()) for _ in range(n)]}
    else:
        raise DecodeError("UnknownType", f"server message type {t:#04x}")
    r.finish()
    return m


def _decode_attr_ops(r: Reader) -> list:
    n = r.count(1, "operation count")
    ops = []
    for _ in range(n):
        kind = r.u8()
        p = r.u32()
        if p > MAX_ATTR_PATH:
            raise DecodeError("TooDeep", f"attribute path of {p} elements")
        path = []
        for _ in range(p):
            el = r.u8()
            if el == 0:
                path.append(r.string())
            elif el == 1:
                path.append(r.u32())
            else:
                raise DecodeError("BadPath", f"path element tag {el}")
        # PROTOCOL.md does not say at which depth an op's value starts: depth 0 here.
        if kind == 1:
            op = ("MapSet", path, r.string(), decode_value(r, 0))
        elif kind == 2:
            op = ("MapDel", path, r.string())
        elif kind == 3:
            op = ("MapClear", path)
        elif kind == 4:
            op = ("ListSet", path, r.u32(), decode_value(r, 0))
        elif kind == 5:
            op = ("ListAppend", path, decode_value(r, 0))
        elif kind == 6:
            op = ("ListPop", path)
        else:
            raise DecodeError("BadAttrOp", f"operation kind {kind}")
        ops.append(op)
    return ops


def apply_attr_ops(attrs: dict, ops: list) -> None:
    """Apply decoded AttrOps to a client's copy of an entity's attributes (section 7)."""
    for op in ops:
        node = attrs
        for el in op[1]:
            node = node[el]
        kind = op[0]
        if kind == "MapSet":
            node[op[2]] = op[3]
        elif kind == "MapDel":
            node.pop(op[2], None)
        elif kind == "MapClear":
            node.clear()
        elif kind == "ListSet":
            node[op[2]] = op[3]
        elif kind == "ListAppend":
            node.append(op[2])
        elif kind == "ListPop":
            node.pop()


# ---------------------------------------------------------------------------------------
# Transports (sections 2.1-2.3). Each carries whole records; the channel never sees framing.
# ---------------------------------------------------------------------------------------

class Transport:
    """What the channel needs from a transport: records in, records out.

    send_record(record)     send one record (<= 65 535 bytes)
    recv_record(timeout)    the next record; raises TimeoutError when `timeout` seconds pass
                            with none, ConnectionClosed when the peer closed (a stream that
                            ends inside a record counts as closed, the partial record dropped)
    close()                 close; idempotent
    """

    name = "?"

    def send_record(self, record: bytes) -> None:
        raise NotImplementedError

    def recv_record(self, timeout: float | None) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class TcpTransport(Transport):
    """Section 2.1: each record preceded by its length as u32 LE."""

    name = "tcp"

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> "TcpTransport":
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def send_record(self, record: bytes) -> None:
        if not 0 < len(record) <= MAX_RECORD:
            raise ValueError(f"record of {len(record)} bytes")
        self.sock.settimeout(None)
        try:
            self.sock.sendall(struct.pack("<I", len(record)) + record)
        except OSError as e:
            raise ConnectionClosed(f"send failed: {e}") from None

    def _cut(self):
        if len(self.buf) < 4:
            return None
        n = struct.unpack_from("<I", self.buf)[0]
        if n == 0 or n > MAX_RECORD:
            raise ProtocolError(f"TCP record length prefix {n} (allowed 1..{MAX_RECORD})")
        if len(self.buf) < 4 + n:
            return None
        rec = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        return rec

    def recv_record(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rec = self._cut()
            if rec is not None:
                return rec
            if self.closed:
                raise ConnectionClosed("EOF" + (" inside a record" if self.buf else ""))
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no record")
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(None)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no record") from None
            except OSError as e:  # reset etc.
                self.closed = True
                raise ConnectionClosed(f"recv failed: {e}") from None
            if not chunk:
                self.closed = True
                continue
            self.buf += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class WsTransport(Transport):
    """Section 2.2: one record per binary WebSocket message, no extension, path /."""

    name = "ws"

    def __init__(self, conn):
        self.conn = conn

    @classmethod
    def connect(cls, host: str, port: int, timeout: float) -> "WsTransport":
        from websockets.sync.client import connect
        hostpart = f"[{host}]" if ":" in host else host
        conn = connect(
            f"ws://{hostpart}:{port}/",
            compression=None,       # no permessage-deflate (2.2)
            proxy=None,             # never route through an environment proxy
            open_timeout=timeout,
            max_size=MAX_RECORD,    # a record is at most 65 535 bytes
            close_timeout=1,
            legacy=True,            # websockets 17: a direct connection, no context manager
        )
        sock = conn.socket
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return cls(conn)

    def send_record(self, record: bytes) -> None:
        from websockets.exceptions import ConnectionClosed as WsClosed
        try:
            self.conn.send(bytes(record))
        except WsClosed as e:
            raise ConnectionClosed(f"websocket closed: {e}") from None

    def recv_record(self, timeout: float | None) -> bytes:
        from websockets.exceptions import ConnectionClosed as WsClosed
        try:
            msg = self.conn.recv(timeout=timeout)
        except TimeoutError:
            raise TimeoutError("no record") from None
        except WsClosed as e:
            raise ConnectionClosed(f"websocket closed: {e}") from None
        if isinstance(msg, str):
            raise ProtocolError("the gate sent a text WebSocket message")
        if not msg:
            raise ProtocolError("empty WebSocket message (a record is never empty)")
        return bytes(msg)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


# Section 2.9: control datagrams (conv = 0) of the connect exchange.
KCP_HELLO = 0x01
KCP_COOKIE = 0x02
KCP_CONNECT = 0x03
KCP_ACCEPT = 0x04
KCP_BYE = 0x05
KCP_REFUSED = 0x06
KCP_CTRL_NAMES = {1: "HELLO", 2: "COOKIE", 3: "CONNECT", 4: "ACCEPT", 5: "BYE", 6: "REFUSED"}
KCP_PADDED_LEN = 64                 # HELLO and CONNECT: zeros up to 64 bytes in all
KCP_RETRY_S = 0.3                   # retry every 300 ms ...
KCP_TRIES = 10                      # ... 10 tries in all
KCP_COOKIE_LEN = 20                 # u32 issue time + 16 bytes of HMAC
# The gate's settings (2.9), which a client "should use": ikcp_nodelay(kcp, 1, 10, 2, 1),
# ikcp_wndsize(kcp, 256, 256), ikcp_setmtu(kcp, 1200).
KCP_MTU = 1200
KCP_INTERVAL_MS = 10
KCP_RESEND = 2
KCP_WND = 256
KCP_MAX_FRAGMENTS = 127             # 2.9: one message is at most 127 fragments


class KcpRefused(ConnectionClosed):
    """The gate answered the connect exchange with REFUSED (2.9, e.g. at max_clients)."""


def kcp_control(kind: int, body: bytes, pad_to: int = 0) -> bytes:
    d = b"\x00\x00\x00\x00" + bytes([kind]) + body
    return d + bytes(max(0, pad_to - len(d)))


def kcp_parse_control(d: bytes) -> tuple[int, bytes] | None:
    """(type, bytes after the type byte) of a control datagram, None if it is not one."""
    if len(d) < 5 or d[:4] != b"\x00\x00\x00\x00":
        return None
    return d[4], d[5:]


class KcpTransport(Transport):
    """Section 2.9: KCP over UDP, one record per KCP message.

    The connect exchange (HELLO -> COOKIE -> CONNECT -> ACCEPT) runs on the caller's thread;
    then a pump thread owns the receiving side of the UDP socket and the ikcp object (the C
    ikcp of the `kcp` PyPI package, under a lock): it feeds datagrams to ikcp_input, calls
    ikcp_update every 10 ms and moves whole messages to a queue that recv_record reads.
    send_record is ikcp_send + ikcp_flush on the caller's thread. close() sends BYE.
    """

    name = "kcp"

    def __init__(self, sock: socket.socket, conv: int, *, log=None, dead_after: float = 10.0):
        from kcp.extension import KCP   # the `kcp` PyPI package (setup.sh)
        self.sock = sock
        self.conv = conv
        self.log = log or (lambda s: None)
        self.dead_after = dead_after
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.inbox = []                 # whole KCP messages = records
        self.closed_reason = None       # set once: the transport is closed for receiving
        self.bye_received = False
        self.t0 = time.monotonic()
        self.last_rx = time.monotonic()
        self.stats = {"datagrams_in": 0, "datagrams_out": 0, "bytes_in": 0, "bytes_out": 0,
                      "unparsed_in": 0}
        # The package declares conv_id as a C int (signed 32-bit) although ikcp_create takes
        # IUINT32: a conv >= 2^31 raises OverflowError, so pass its two's-complement value
        # (same 32 bits once ikcp stores it).
        signed_conv = conv - (1 << 32) if conv >= (1 << 31) else conv
        self.kcp = KCP(signed_conv, max_transmission=KCP_MTU, no_delay=True,
                       update_interval=KCP_INTERVAL_MS, resend_count=KCP_RESEND,
                       no_congestion_control=True, send_window_size=KCP_WND,
                       receive_window_size=KCP_WND)
        self.kcp.include_outbound_handler(self._output)
        with self.lock:
            self.kcp.update(self._now_ms())   # ikcp_flush does nothing before the first update
        self.stop = False
        self.pump = threading.Thread(target=self._pump, name=f"kcp-pump-{conv:08x}", daemon=True)
        self.pump.start()

    # -- connect exchange ------------------------------------------------------------

    @classmethod
    def connect(cls, host: str, port: int, timeout: float, log=None) -> "KcpTransport":
        log = log or (lambda s: None)
        deadline = time.monotonic() + timeout
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise ConnectionClosed(f"cannot resolve {host}")
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # A connected UDP socket: datagrams from anyone but the gate are dropped by the
            # kernel, and an ICMP port unreachable surfaces as ConnectionRefusedError.
            sock.connect(sockaddr)
            nonce = os.urandom(8)
            hello = kcp_control(KCP_HELLO, nonce, KCP_PADDED_LEN)
            body = cls._exchange(sock, hello, KCP_COOKIE, nonce, deadline, log)
            if len(body) != 8 + KCP_COOKIE_LEN:
                raise ProtocolError(f"KCP COOKIE of {5 + len(body)} bytes, expected 33: {body.hex()}")
            cookie = body[8:]
            connect = kcp_control(KCP_CONNECT, nonce + cookie, KCP_PADDED_LEN)
            body = cls._exchange(sock, connect, KCP_ACCEPT, nonce, deadline, log)
            if len(body) != 8 + 4:
                raise ProtocolError(f"KCP ACCEPT of {5 + len(body)} bytes, expected 17: {body.hex()}")
            conv = struct.unpack_from("<I", body, 8)[0]
            if conv == 0:
                raise ProtocolError("KCP ACCEPT with conv 0")
            log(f"kcp: conversation {conv:#010x} accepted")
            sock.settimeout(None)           # blocking sends; the pump reads with MSG_DONTWAIT
            return cls(sock, conv, log=log)
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _exchange(sock, datagram: bytes, want: int, nonce: bytes, deadline: float, log) -> bytes:
        """Send `datagram` up to 10 times, 300 ms apart, until the answer of type `want` with
        our nonce arrives; returns the bytes after the type byte (nonce included)."""
        name = KCP_CTRL_NAMES[datagram[4]]
        for attempt in range(KCP_TRIES):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"KCP connect exchange: no {KCP_CTRL_NAMES[want]} in time")
            try:
                sock.send(datagram)
            except ConnectionRefusedError:
                raise ConnectionClosed("KCP: nothing listens on that UDP port (ICMP unreachable)") from None
            log(f"kcp -> {name} ({len(datagram)} bytes, try {attempt + 1}): {datagram[:40].hex()}")
            until = time.monotonic() + min(KCP_RETRY_S, left)
            while True:
                wait = until - time.monotonic()
                if wait <= 0:
                    break
                sock.settimeout(wait)
                try:
                    d = sock.recv(65536)
                except socket.timeout:
                    break
                except ConnectionRefusedError:
                    raise ConnectionClosed("KCP: nothing listens on that UDP port (ICMP unreachable)") from None
                ctl = kcp_parse_control(d)
                log(f"kcp <- {len(d)} bytes: {d[:64].hex()}")
                if ctl is None:
                    continue                    # not a control datagram: ignore
                kind, body = ctl
                if body[:8] != nonce:
                    continue                    # an answer to another attempt or client
                if kind == KCP_REFUSED:
                    reason = body[8:].decode("utf-8", errors="replace")
                    raise KcpRefused(f"the gate refused the KCP connection: {reason!r}")
                if kind == want:
                    return bytes(body)
        raise TimeoutError(f"KCP connect exchange: no {KCP_CTRL_NAMES[want]} after "
                           f"{KCP_TRIES} {name}s")

    # -- pump ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000) & 0xFFFFFFFF

    def _output(self, _kcp, data: bytes) -> None:
        # Called by ikcp (under self.lock) with one datagram; exceptions cannot cross the C
        # callback, so they are recorded instead.
        try:
            self.sock.send(data)
            self.stats["datagrams_out"] += 1
            self.stats["bytes_out"] += len(data)
        except ConnectionRefusedError:
            self._close_locked("ICMP port unreachable: the gate's KCP port is closed")
        except OSError:
            self.stats["send_errors"] = self.stats.get("send_errors", 0) + 1   # lost; ikcp resends

    def _pump(self) -> None:
        import select
        from kcp.exceptions import KCPException
        next_tick = time.monotonic()
        while not self.stop:
            wait = max(0.0, next_tick - time.monotonic())
            try:
                readable, _, _ = select.select([self.sock], [], [], wait)
            except (OSError, ValueError):
                break                           # socket closed under us
            datagrams = []
            if readable:
                while len(datagrams) < 1024:
                    try:
                        datagrams.append(self.sock.recv(65536, socket.MSG_DONTWAIT))
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:
                        # ICMP port unreachable: the gate's UDP port is gone.
                        with self.cond:
                            self._close_locked("ICMP port unreachable: the gate's KCP port is closed")
                        break
                    except OSError:
                        break
            with self.cond:
                now = time.monotonic()
                for d in datagrams:
                    self.stats["datagrams_in"] += 1
                    self.stats["bytes_in"] += len(d)
                    self.last_rx = now
                    ctl = kcp_parse_control(d)
                    if ctl is not None:
                        kind, body = ctl
                        if kind == KCP_BYE and len(body) >= 4 and struct.unpack_from("<I", body)[0] == self.conv:
                            self.log(f"kcp <- BYE {d.hex()}")
                            self.bye_received = True
                            self._close_locked("the gate sent BYE")
                        else:
                            self.log(f"kcp <- control datagram ignored: {d[:64].hex()}")
                        continue
                    try:
                        self.kcp.receive(d)
                    except KCPException as e:
                        self.stats["unparsed_in"] += 1
                        self.log(f"kcp: ikcp_input refused a datagram ({e}): {d[:32].hex()}")
                if now >= next_tick or datagrams:
                    self.kcp.update(self._now_ms())
                    if now >= next_tick:
                        next_tick = now + KCP_INTERVAL_MS / 1000.0
                got = [bytes(m) for m in self.kcp.get_all_received()]
                if got:
                    self.inbox.extend(got)
                    self.cond.notify_all()
                if (self.closed_reason is None and self.kcp.get_outbound_packets() > 0
                        and now - self.last_rx > self.dead_after):
                    self._close_locked(f"the gate acknowledged nothing for {self.dead_after:.0f} s")

    def _close_locked(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self.cond.notify_all()

    # -- Transport -------------------------------------------------------------------

    def send_record(self, record: bytes) -> None:
        if not 0 < len(record) <= MAX_RECORD:
            raise ValueError(f"record of {len(record)} bytes")
        from kcp.exceptions import KCPException
        with self.cond:
            if self.closed_reason is not None:
                raise ConnectionClosed(self.closed_reason)
            try:
                self.kcp.enqueue(bytes(record))
            except KCPException as e:
                raise ProtocolError(f"ikcp_send refused a record of {len(record)} bytes: {e}") from None
            self.kcp.flush()              # send now rather than at the next 10 ms tick

    def recv_record(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                if self.inbox:
                    return self.inbox.pop(0)
                if self.closed_reason is not None:
                    raise ConnectionClosed(self.closed_reason)
                if deadline is None:
                    self.cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("no record")
                    self.cond.wait(left)

    def close(self, linger: float = 1.0) -> None:
        """Wait (up to `linger` s) until what was sent is acknowledged, then send BYE."""
        if self.stop:
            return
        end = time.monotonic() + linger
        while time.monotonic() < end:
            with self.cond:
                if self.closed_reason is not None or self.kcp.get_outbound_packets() == 0:
                    break
            time.sleep(0.005)
        self.stop = True
        self.pump.join(1)
        with self.cond:
            self._close_locked("closed by the client")
        if not self.bye_received:
            bye = kcp_control(KCP_BYE, struct.pack("<I", self.conv))
            try:
                self.sock.send(bye)
                self.log(f"kcp -> BYE {bye.hex()}")
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


TRANSPORTS = {"tcp": TcpTransport, "ws": WsTransport, "kcp": KcpTransport}


def open_transport(kind: str, addr: str, timeout: float, log=None) -> Transport:
    host, port = parse_addr(addr)
    if kind == "kcp":
        return KcpTransport.connect(host, port, timeout, log=log)
    return TRANSPORTS[kind].connect(host, port, timeout)


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


# ---------------------------------------------------------------------------------------
# Section 2.4-2.7: the channel (hello, Noise NK, records, fragments, lz4)
# ---------------------------------------------------------------------------------------

def _lz4():
    import lz4.block
    return lz4.block


def noise_public_key(secret: bytes) -> bytes:
    """X25519 public key of a 32-byte secret (e.g. a gate key file's content, hex-decoded)."""
    if NoiseConnection is None:
        raise RuntimeError("the noiseprotocol package is missing (run net/interop/setup.sh)")
    conn = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
    return conn.noise_protocol.dh_fn.klass.from_private_bytes(secret).public_bytes


class Channel:
    """One client end of the channel over a Transport.

    hello() performs the exchange of 2.4; send_message / recv_message then carry
    application messages (bytes: type byte + fields) in records.
    """

    def __init__(self, transport: Transport, *, gate_public_key: bytes | None, lz4: bool,
                 max_message: int = MAX_SERVER_MESSAGE, compress_threshold: int = LZ4_THRESHOLD,
                 _ephemeral_secret: bytes | None = None):
        self.t = transport
        self.mode = MODE_PLAIN if gate_public_key is None else MODE_NOISE
        self.gate_public_key = gate_public_key
        self.offer_lz4 = lz4
        self.lz4 = False                 # accepted by the gate
        self.max_message = max_message
        self.compress_threshold = compress_threshold
        self._ephemeral_secret = _ephemeral_secret  # test vectors only
        self.noise = None
        self.frag = bytearray()
        self.frag_lz4 = None
        self.frag_records = 0            # fragments with MORE buffered for the current message
        self.sent_at = time.monotonic()
        self.client_hello = b""          # kept for tests
        self.server_hello = b""
        # Counters after the hello: records, and messages sent/received compressed or in
        # more than one fragment.
        self.stats = {"records_out": 0, "records_in": 0, "lz4_out": 0, "lz4_in": 0,
                      "fragmented_out": 0, "fragmented_in": 0}

    # -- hello ------------------------------------------------------------------------

    def hello(self, timeout: float) -> None:
        features = FEATURE_LZ4 if self.offer_lz4 else 0
        header = MAGIC + bytes([CHANNEL_VERSION, self.mode, features])
        body = b""
        if self.mode == MODE_NOISE:
            if NoiseConnection is None:
                raise RuntimeError("the noiseprotocol package is missing (run net/interop/setup.sh)")
            if len(self.gate_public_key) != 32:
                raise ValueError("the gate public key is 32 bytes (64 hex digits)")
            n = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
            n.set_as_initiator()
            n.set_prologue(PROLOGUE_LABEL + header)
            n.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, self.gate_public_key)
            if self._ephemeral_secret is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    n.set_keypair_from_private_bytes(Keypair.EPHEMERAL, self._ephemeral_secret)
                    n.start_handshake()
            else:
                n.start_handshake()
            body = bytes(n.write_message(b""))
            assert len(body) == NOISE_MSG1_LEN, len(body)
            self.noise = n
        self.client_hello = header + body
        self._send_raw(self.client_hello)

        try:
            rec = self.t.recv_record(timeout)
        except TimeoutError:
            raise TimeoutError("no server hello in time") from None
        except ConnectionClosed as e:
            raise ConnectionClosed(f"closed before the server hello ({e})") from None
        self.server_hello = rec
        if len(rec) < 6 or rec[:3] != MAGIC:
            raise ProtocolError(f"server hello: bad magic/length: {rec[:16].hex()}")
        version, status, mode = rec[3], rec[4], rec[5]
        if version != CHANNEL_VERSION:
            raise ProtocolError(f"server hello: version {version}, expected {CHANNEL_VERSION}")
        if status != 0:
            raise HelloRefused(status, mode, rec[6:].decode("utf-8", errors="replace"))
        if mode != self.mode:
            raise ProtocolError(f"server hello: status ok but mode {mode}, asked for {self.mode}")
        if self.mode == MODE_PLAIN:
            if len(rec) != 7:
                raise ProtocolError(f"server hello (mode 0, status 0) of {len(rec)} bytes, expected 7")
            accepted = rec[6]
        else:
            if len(rec) != 6 + NOISE_MSG2_LEN:
                raise ProtocolError(
                    f"server hello (mode 1, status 0) of {len(rec)} bytes, expected {6 + NOISE_MSG2_LEN}")
            try:
                payload = bytes(self.noise.read_message(rec[6:]))
            except Exception as e:  # noqa: BLE001 - InvalidTag and friends
                raise ProtocolError(f"server hello: Noise message 2 did not verify: {e!r}") from None
            if not self.noise.handshake_finished:
                raise ProtocolError("Noise handshake not finished after message 2")
            if len(payload) != 1:
                raise ProtocolError(f"server hello: features payload of {len(payload)} bytes")
            accepted = payload[0]
        if accepted & ~features:
            raise ProtocolError(f"gate accepted features {accepted:#04x}, offered {features:#04x}")
        self.lz4 = bool(accepted & FEATURE_LZ4)

    # -- records ----------------------------------------------------------------------

    def _send_raw(self, record: bytes) -> None:
        self.t.send_record(record)
        self.sent_at = time.monotonic()

    def _seal(self, plaintext: bytes) -> bytes:
        if self.mode == MODE_NOISE:
            return self.noise.encrypt(plaintext)
        return plaintext

    def _open(self, record: bytes) -> bytes:
        if self.mode == MODE_NOISE:
            if len(record) < NOISE_TAG_LEN + 1:
                raise ProtocolError(f"encrypted record of {len(record)} bytes")
            try:
                return self.noise.decrypt(record)
            except Exception as e:  # noqa: BLE001
                raise ProtocolError(f"record failed authentication: {e!r}") from None
        return record

    def send_message(self, msg: bytes) -> None:
        if not msg:
            raise ValueError("empty message")
        flags = 0
        body = msg
        if self.lz4 and len(msg) >= self.compress_threshold:
            block = _lz4().compress(msg, store_size=False)
            if 4 + len(block) < len(msg):
                body = struct.pack("<I", len(msg)) + block
                flags = REC_LZ4
        self.stats["lz4_out"] += bool(flags & REC_LZ4)
        self.stats["fragmented_out"] += len(body) > MAX_FRAGMENT
        for off in range(0, len(body), MAX_FRAGMENT):
            piece = body[off:off + MAX_FRAGMENT]
            more = REC_MORE if off + MAX_FRAGMENT < len(body) else 0
            self._send_raw(self._seal(bytes([flags | more]) + piece))
            self.stats["records_out"] += 1

    def recv_message(self, timeout: float | None) -> bytes:
        """The next whole application message (reassembled and decompressed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left is not None and left <= 0:
                raise TimeoutError("no message")
            plain = self._open(self.t.recv_record(left))
            self.stats["records_in"] += 1
            if not plain:
                raise ProtocolError("record without a flags byte")
            flags = plain[0]
            if flags & ~(REC_LZ4 | REC_MORE):
                raise ProtocolError(f"record flags {flags:#04x} have reserved bits set")
            lz = bool(flags & REC_LZ4)
            if lz and not self.lz4:
                raise ProtocolError("LZ4 record but lz4 was not negotiated")
            if self.frag_lz4 is not None and lz != self.frag_lz4:
                raise ProtocolError("fragments of one message disagree on the LZ4 bit")
            piece = plain[1:]
            if len(piece) > MAX_FRAGMENT:
                raise ProtocolError(f"fragment of {len(piece)} bytes")
            limit = self.max_message + (4 if lz else 0)
            if len(self.frag) + len(piece) > limit:
                raise ProtocolError(f"server message over {self.max_message} bytes")
            self.frag += piece
            self.frag_lz4 = lz
            if flags & REC_MORE:
                self.frag_records += 1
                continue
            body = bytes(self.frag)
            self.stats["fragmented_in"] += self.frag_records > 0
            self.stats["lz4_in"] += lz
            self.frag = bytearray()
            self.frag_lz4 = None
            self.frag_records = 0
            if lz:
                body = self._decompress(body)
            if not body:
                raise ProtocolError("empty message")
            return body

    def _decompress(self, body: bytes) -> bytes:
        if len(body) < 4:
            raise ProtocolError("compressed message shorter than its length prefix")
        n = struct.unpack_from("<I", body)[0]
        if n == 0 or n > self.max_message:
            raise ProtocolError(f"compressed message announces {n} bytes")
        try:
            out = _lz4().decompress(body[4:], uncompressed_size=n)
        except Exception as e:  # noqa: BLE001 - LZ4BlockError
            raise ProtocolError(f"lz4 block does not decode: {e}") from None
        if len(out) != n:
            raise ProtocolError(f"lz4 block decodes to {len(out)} bytes, announced {n}")
        return out

    def close(self) -> None:
        self.t.close()


# ---------------------------------------------------------------------------------------
# Session: Welcome, entities, calls, heartbeats (sections 7-9)
# ---------------------------------------------------------------------------------------

class GateError(Exception):
    def __init__(self, msg: dict):
        super().__init__(f"gate Error {msg['code']} ({msg['code_name']}) target {msg['target'].hex()} "
                         f"method {msg['method']:#010x}: {msg['message']}")
        self.msg = msg


class Session:
    def __init__(self, channel: Channel, log=None):
        self.ch = channel
        self.log = log or (lambda s: None)
        self.welcome = None
        self.player = None
        self.entities = {}          # id -> {"type", "attrs", "pos", "is_player"}
        self.idle_timeout_ms = None
        self.last_words = None      # an Error with a NIL target: the gate's last word

    def _heartbeat_gap(self) -> float | None:
        if not self.idle_timeout_ms:
            return None
        return max(self.idle_timeout_ms / 3000.0, 0.1)

    def next_message(self, deadline: float) -> dict:
        """The next server message, sending heartbeats while waiting (section 9, item 5)."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError("timed out waiting for the gate")
            wait = deadline - now
            gap = self._heartbeat_gap()
            if gap is not None:
                due = self.ch.sent_at + gap - now
                if due <= 0:
                    self.ch.send_message(enc_heartbeat())
                    continue
                wait = min(wait, due)
            try:
                raw = self.ch.recv_message(wait)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                if self.last_words:
                    raise ConnectionClosed(f"{e}; the gate's last word: {self.last_words}") from None
                raise
            msg = decode_server_message(raw)
            self._track(msg)
            return msg

    def _track(self, msg: dict) -> None:
        t = msg["type"]
        self.log(f"<- {describe(msg)}")
        if t == "Welcome":
            if self.welcome is not None:
                raise ProtocolError("a second Welcome")
            if msg["version"] != CHANNEL_VERSION:
                raise ProtocolError(f"Welcome carries protocol version {msg['version']}, expected "
                                    f"{CHANNEL_VERSION} (section 7)")
            self.welcome = msg
            self.idle_timeout_ms = msg["idle_timeout_ms"]
        elif self.welcome is None:
            raise ProtocolError(f"first message is {t}, not Welcome")
        elif t == "CreateEntity":
            self.entities[msg["id"]] = {"type": msg["entity_type"], "attrs": msg["attrs"],
                                        "pos": msg["pos"], "is_player": msg["is_player"]}
            if msg["is_player"]:
                self.player = msg["id"]
        elif t == "DestroyEntity":
            self.entities.pop(msg["id"], None)
            if self.player == msg["id"]:
                self.player = None
        elif t == "AttrOps":
            ent = self.entities.get(msg["id"])
            if ent is not None:
                apply_attr_ops(ent["attrs"], msg["ops"])
        elif t == "Positions":
            for eid, pos in msg["entries"]:
                if eid in self.entities:
                    self.entities[eid]["pos"] = pos
        elif t == "Error" and msg["target"] == NIL_ID:
            self.last_words = f"Error {msg['code']} ({msg['code_name']}): {msg['message']}"

    def wait_for_player(self, deadline: float) -> bytes:
        while self.player is None:
            msg = self.next_message(deadline)
            if msg["type"] == "Error":
                raise GateError(msg)
        return self.player

    def call(self, target: bytes, method: str, args=()) -> None:
        self.log(f"-> Call {target.hex()} {method} ({method_id(method):#010x}) {args!r}")
        self.ch.send_message(enc_call(target, method, args))

    def wait_for_call(self, entity: bytes, name: str, deadline: float) -> list:
        while True:
            msg = self.next_message(deadline)
            if msg["type"] == "Call" and msg["id"] == entity and msg["name"] == name:
                return msg["args"]
            if msg["type"] == "Error":
                raise GateError(msg)


def describe(msg: dict) -> str:
    parts = []
    for k, v in msg.items():
        if isinstance(v, bytes) and len(v) == 16:
            v = v.hex()
        parts.append(f"{k}={v!r}" if k != "type" else v)
    text = " ".join(parts)
    return text if len(text) < 300 else text[:300] + "..."


def connect(kind: str, addr: str, *, gate_public_key: bytes | None, lz4: bool,
            timeout: float, log=None) -> Session:
    deadline = time.monotonic() + timeout
    t = open_transport(kind, addr, timeout, log=log)
    ch = Channel(t, gate_public_key=gate_public_key, lz4=lz4)
    try:
        ch.hello(max(0.001, deadline - time.monotonic()))
    except BaseException:
        t.close()
        raise
    return Session(ch, log)


def make_text(n: int, seed: int = 1) -> str:
    """A deterministic ASCII text of n chars that lz4 shrinks to about 70 %: in every 1000
    chars, 300 of a repeated phrase and 700 pseudo-random hex digits. So 100 000 chars are
    sent as two fragments both without lz4 (100 001 bytes) and with it (about 70 000)."""
    import random
    rnd = random.Random(seed)
    phrase = "oxworld interop echo, compressible part. "
    out = []
    size = 0
    while size < n:
        block = (phrase * 8)[:300] + "%0700x" % rnd.getrandbits(2800)
        out.append(block)
        size += len(block)
    return "".join(out)[:n]


def run_echo(kind: str, addr: str, *, gate_public_key: bytes | None, lz4: bool, text: str,
             timeout: float, log=None) -> dict:
    t0 = time.monotonic()
    deadline = t0 + timeout
    s = connect(kind, addr, gate_public_key=gate_public_key, lz4=lz4, timeout=timeout, log=log)
    try:
        player = s.wait_for_player(deadline)
        t_ready = time.monotonic()
        s.call(player, "echo", [text])
        args = s.wait_for_call(player, "echo_reply", deadline)
        t_reply = time.monotonic()
        if args != [text]:
            got = args[0] if len(args) == 1 and isinstance(args[0], str) else None
            if got is None:
                raise ProtocolError(f"echo_reply arguments {str(args)[:200]}, expected [a string of "
                                    f"{len(text)} chars]")
            first = next((i for i in range(min(len(got), len(text))) if got[i] != text[i]),
                         min(len(got), len(text)))
            raise ProtocolError(f"echo_reply string of {len(got)} chars differs from the {len(text)} "
                                f"sent, from char {first}: {got[first:first + 40]!r}")
        if log:
            log(f"welcome version {s.welcome['version']}, client id {s.welcome['client_id'].hex()}, "
                f"idle timeout {s.welcome['idle_timeout_ms']} ms, lz4 accepted {s.ch.lz4}, "
                f"channel {s.ch.stats}")
        reply = args[0] if len(args[0]) <= 64 else args[0][:61] + "..."
        return {"ok": True, "transport": kind, "encrypted": s.ch.mode == MODE_NOISE,
                "lz4": s.ch.lz4, "reply": reply, "chars": len(args[0]),
                "login_ms": round((t_ready - t0) * 1000, 1),
                "echo_ms": round((t_reply - t_ready) * 1000, 1), "channel": dict(s.ch.stats)}
    finally:
        s.ch.close()


def run_expect_refusal(kind: str, addr: str, *, gate_public_key: bytes | None, lz4: bool,
                       timeout: float, expect_status: int = 4, log=None) -> dict:
    """Hello with (typically) a wrong gate key: expect status `expect_status`, a reason, a close."""
    deadline = time.monotonic() + timeout
    t = open_transport(kind, addr, timeout, log=log)
    ch = Channel(t, gate_public_key=gate_public_key, lz4=lz4)
    try:
        try:
            ch.hello(max(0.001, deadline - time.monotonic()))
        except HelloRefused as e:
            refused = e
        else:
            raise ProtocolError("the gate accepted the hello (status 00); expected a refusal")
        if refused.status != expect_status:
            raise ProtocolError(f"hello status {refused.status:02x} ({refused.reason!r}), "
                                f"expected {expect_status:02x}")
        if not refused.reason:
            raise ProtocolError("the refusal carries no reason text")
        try:
            ch.server_hello[6:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("the refusal reason is not UTF-8") from None
        # Then the gate closes: nothing more may arrive.
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the gate did not close the connection after the refusal")
            try:
                extra = t.recv_record(left)
            except ConnectionClosed:
                break
            raise ProtocolError(f"a record after the refusal: {extra[:32].hex()}")
        return {"ok": True, "transport": kind, "refused": True, "status": refused.status,
                "gate_mode": refused.mode, "reason": refused.reason}
    finally:
        t.close()


# ---------------------------------------------------------------------------------------
# Offline self-test: codec vectors (sections 4, 5, 11) and a fake in-process gate
# ---------------------------------------------------------------------------------------

def _h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


# Section 11's messages, each preceded here by its length as u32 LE (the message only: no flags
# byte; a convenience of these tests, not a wire format).
S11_CREATE = _h("32 00 00 00 82 01 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff"
                "07 00 00 00 41 63 63 6f 75 6e 74 08 00 00 00 00"
                "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
S11_CALL = _h("20 00 00 00 01 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 84 d4 9d d4"
              "01 00 00 00 05 02 00 00 00 68 69")
S11_REPLY = _h("2a 00 00 00 84 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 0a 00 00 00"
               "65 63 68 6f 5f 72 65 70 6c 79 01 00 00 00 05 02 00 00 00 68 69")
S11_WELCOME = _h("17 00 00 00 81 02 00 01 93 b2 c4 d5 e6 a1 b2 c3 d4 e5 f6 07 18 29 3a 60 ea 00 00")
S11_EXACT_CALL = _h("01 ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab 04 03 02 01"
                    "01 00 00 00 03 05 00 00 00 00 00 00 00")
S4_MAP = _h("08 02 00 00 00 01 00 00 00 61 07 03 00 00 00 00 02"
            "04 00 00 00 00 00 00 f8 3f 01 00 00 00 62 03 01 00 00 00 00 00 00 00")
PLAYER_ID = _h("00112233445566778899aabbccddeeff")
GATE_SECRET = bytes(range(32))


class _Check:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def __call__(self, name: str, cond: bool, detail: str = ""):
        if cond:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name}{': ' + detail if detail else ''}")

    def raises(self, name: str, fn, kind: str | None = None):
        try:
            fn()
        except DecodeError as e:
            self(name, kind is None or e.kind == kind, f"raised {e.kind}, expected {kind}")
            return
        except (ProtocolError, ValueError) as e:
            self(name, kind is None, f"raised {e!r}, expected {kind}")
            return
        self(name, False, "no error")


def _codec_tests(check: _Check) -> None:
    # Section 5
    for text, want in [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968),
                       ("echo", 0xD49DD484), ("whoami", 0xBAA8B444), ("relay_echo", 0xEABA7B8E),
                       ("admin_reset", 0xD93F81BC)]:
        check(f"fnv1a32({text!r}) = {want:#010x}", fnv1a32(text) == want, f"{fnv1a32(text):#010x}")
    check("fnv1a32(id bytes) = 0xff138f15, dispatcher 1 of 2",
          fnv1a32(PLAYER_ID) == 0xFF138F15 and fnv1a32(PLAYER_ID) % 2 == 1)

    # Section 4 example
    m = {"b": 1, "a": [None, True, 1.5]}
    check("section 4 map encodes exactly", value_bytes(m) == S4_MAP, value_bytes(m).hex())
    check("section 4 map decodes", value_from_bytes(S4_MAP) == m)
    # all tags round trip
    every = [None, False, True, 0, -1, (1 << 63) - 1, -(1 << 63), 1.5, -0.0, "", "héllo", b"",
             b"\x00\xff", [], {}, {"z": {"y": [1, [2, [3]]]}, "": None}]
    for v in every:
        check(f"round trip {v!r}", value_from_bytes(value_bytes(v)) == v)
    nan = value_from_bytes(b"\x04" + struct.pack("<Q", 0x7FF8000000000001))
    check("any f64 bit pattern (NaN) decodes", isinstance(nan, float) and math.isnan(nan))
    check("map keys sorted byte-wise (é after z)",
          value_bytes({"é": 1, "z": 2}) == _h("08 02000000 01000000 7a 03 0200000000000000"
                                              "02000000 c3a9 03 0100000000000000"))
    check("duplicated map key keeps the last value",
          value_from_bytes(_h("08 02000000 01000000 61 03 0100000000000000"
                              "01000000 61 03 0200000000000000")) == {"a": 2})
    # depth: 32 nested containers are fine, the 33rd is refused
    deep_ok = b"\x07\x01\x00\x00\x00" * 32 + b"\x00"
    deep_bad = b"\x07\x01\x00\x00\x00" * 33 + b"\x00"
    v = value_from_bytes(deep_ok)
    check("32 nested lists decode", isinstance(v, list))
    check.raises("33 nested lists: TooDeep", lambda: value_from_bytes(deep_bad), "TooDeep")
    check.raises("encoder refuses 33 nested lists", lambda: value_bytes(_nest(33)))
    check("encoder writes 32 nested lists", value_bytes(_nest(32)) == deep_ok)
    # decoder rules
    check.raises("unknown tag 0x09", lambda: value_from_bytes(b"\x09"), "UnknownTag")
    check.raises("truncated int", lambda: value_from_bytes(b"\x03\x01\x00"), "Truncated")
    check.raises("trailing byte", lambda: value_from_bytes(b"\x00\x00"), "Trailing")
    check.raises("invalid UTF-8 string", lambda: value_from_bytes(b"\x05\x01\x00\x00\x00\xff"),
                 "InvalidUtf8")
    check.raises("string length past the end: LengthAttack",
                 lambda: value_from_bytes(b"\x05\xff\xff\xff\xff"), "LengthAttack")
    check.raises("list count past the end: LengthAttack",
                 lambda: value_from_bytes(b"\x07\x05\x00\x00\x00\x00\x00\x00\x00"), "LengthAttack")
    check.raises("map count x 5 past the end: LengthAttack",
                 lambda: value_from_bytes(b"\x08\x02\x00\x00\x00" + b"\x00" * 9), "LengthAttack")

    # Section 11 / 6 / 7 messages
    call = enc_call(PLAYER_ID, "echo", ["hi"])
    check("section 11 client Call bytes", struct.pack("<I", len(call)) + call == S11_CALL, call.hex())
    exact = enc_call(b"\xab" * 16, 0x01020304, [5])
    check("exact_bytes_of_a_call payload", exact == S11_EXACT_CALL, exact.hex())
    check("Heartbeat payload is 02 (v1 frame 01 00 00 00 02)", enc_heartbeat() == b"\x02")
    # Section 6 says "37 bytes", but its own table adds up to 1 + 16 + 16 = 33.
    mv = enc_move(PLAYER_ID, 1, 2, 3, 90)
    check("Move = 03, id, four f32 (33 bytes; the document's '37 bytes' does not add up)",
          mv == b"\x03" + PLAYER_ID + struct.pack("<4f", 1, 2, 3, 90) and len(mv) == 33)
    ce = decode_server_message(S11_CREATE[4:])
    check("section 11 CreateEntity decodes",
          ce == {"type": "CreateEntity", "is_player": True, "id": PLAYER_ID, "entity_type": "Account",
                 "attrs": {}, "pos": (0.0, 0.0, 0.0, 0.0)}, repr(ce))
    check("section 11 CreateEntity prefix = payload length", S11_CREATE[:4] == struct.pack("<I", len(S11_CREATE) - 4))
    rep = decode_server_message(S11_REPLY[4:])
    check("section 11 echo_reply decodes",
          rep == {"type": "Call", "id": PLAYER_ID, "name": "echo_reply", "args": ["hi"]}, repr(rep))
    wel = decode_server_message(S11_WELCOME[4:])
    check("section 11 Welcome decodes",
          wel["type"] == "Welcome" and wel["client_id"] == _h("0193b2c4d5e6a1b2c3d4e5f60718293a")
          and wel["idle_timeout_ms"] == 60000, repr(wel))
    check("section 11 Welcome carries version 2 (section 7: '= 2, CLIENT_PROTOCOL_VERSION')",
          wel.get("version") == 2)
    check.raises("CreateEntity with is_player = 2", lambda: decode_server_message(
        b"\x82\x02" + S11_CREATE[6:]), "BadBool")
    check.raises("CreateEntity with a trailing byte", lambda: decode_server_message(
        S11_CREATE[4:] + b"\x00"), "Trailing")
    check.raises("unknown server type 0x88", lambda: decode_server_message(b"\x88"), "UnknownType")
    err = decode_server_message(b"\x85" + struct.pack("<H", 5) + PLAYER_ID + struct.pack("<I", 7)
                                + struct.pack("<I", 2) + b"no")
    check("Error decodes", err["code_name"] == "NotAddressable" and err["message"] == "no")
    pos = decode_server_message(b"\x87\x01\x00\x00\x00" + PLAYER_ID + struct.pack("<4f", 1, 2, 3, 4))
    check("Positions decodes", pos["entries"] == [(PLAYER_ID, (1.0, 2.0, 3.0, 4.0))])
    # AttrOps: MapSet ["hp"] at root, then ListAppend under path ["inv"], then MapDel
    ops = (b"\x86" + PLAYER_ID + struct.pack("<I", 3)
           + b"\x01" + struct.pack("<I", 0) + struct.pack("<I", 2) + b"hp" + value_bytes(7)
           + b"\x05" + struct.pack("<I", 1) + b"\x00" + struct.pack("<I", 3) + b"inv" + value_bytes("x")
           + b"\x02" + struct.pack("<I", 0) + struct.pack("<I", 3) + b"old")
    am = decode_server_message(ops)
    attrs = {"inv": [], "old": 1}
    apply_attr_ops(attrs, am["ops"])
    check("AttrOps decode and apply", attrs == {"inv": ["x"], "hp": 7}, repr(attrs))


def _nest(n: int):
    v = None
    for _ in range(n):
        v = [v]
    return v


def _wait_for(cond, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


class FakeGate:
    """A minimal gate written separately from the client code above: it speaks the hello,
    Noise NK (as responder, with the noiseprotocol package) and the record layer, sends the
    section 11 Welcome and CreateEntity bytes, and answers one `echo` Call with
    `echo_reply` carrying the same argument bytes. Records carried by `link`, an object with
    send(bytes) / recv() -> bytes | None."""

    def __init__(self, *, mode: int, accept_lz4: bool, big_first: bool = False):
        self.mode = mode
        self.accept_lz4 = accept_lz4
        self.big_first = big_first      # send a large fragmented server Call before the reply
        self.error = None
        self.seen_call = None           # plaintext of the client's Call message
        self.seen_flags = []            # flags of every record received after the hello
        self.client_hello = None
        self.kcp_link = None            # the _KcpLink when served over KCP

    def run(self, link) -> None:
        try:
            self._run(link)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = f"fake gate: {e!r}"

    def _run(self, link) -> None:
        hello = link.recv()
        self.client_hello = hello
        assert hello[:4] == b"OXW\x02", hello[:4]
        mode, feats = hello[4], hello[5]
        if mode != self.mode:
            link.send(b"OXW\x02\x03" + bytes([self.mode]) + b"this gate runs another mode")
            link.close()
            return
        lz = bool(feats & 1) and self.accept_lz4
        noise = None
        if mode == 1:
            noise = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
            noise.set_as_responder()
            noise.set_prologue(b"oxworld client channel v2" + hello[:6])
            noise.set_keypair_from_private_bytes(Keypair.STATIC, GATE_SECRET)
            noise.start_handshake()
            if len(hello) != 54:
                link.send(b"OXW\x02\x01\x01malformed")
                link.close()
                return
            try:
                noise.read_message(hello[6:])
            except Exception:  # noqa: BLE001
                link.send(b"OXW\x02\x04\x01" + "the client used another gate key".encode())
                link.close()
                return
            link.send(b"OXW\x02\x00\x01" + bytes(noise.write_message(bytes([int(lz)]))))
        else:
            assert len(hello) == 6
            link.send(b"OXW\x02\x00\x00" + bytes([int(lz)]))

        def send_msg(m: bytes, compress: bool = False):
            flags = 0
            if compress:
                import lz4.block
                m = struct.pack("<I", len(m)) + lz4.block.compress(m, store_size=False)
                flags = 1
            pieces = [m[i:i + 65518] for i in range(0, len(m), 65518)]
            for i, p in enumerate(pieces):
                rec = bytes([flags | (2 if i < len(pieces) - 1 else 0)]) + p
                link.send(noise.encrypt(rec) if noise else rec)

        def recv_msg() -> bytes | None:
            buf = b""
            while True:
                rec = link.recv()
                if rec is None:
                    return None
                p = noise.decrypt(rec) if noise else rec
                self.seen_flags.append(p[0])
                buf += p[1:]
                if not p[0] & 2:
                    break
            if p[0] & 1:
                import lz4.block
                n = struct.unpack_from("<I", buf)[0]
                buf = lz4.block.decompress(buf[4:], uncompressed_size=n)
                assert len(buf) == n
            return buf

        send_msg(S11_WELCOME[4:])
        send_msg(S11_CREATE[4:])
        while True:
            m = recv_msg()
            if m is None:
                return
            if m[0] == 2:           # Heartbeat
                continue
            assert m[0] == 1, m[:1].hex()
            assert m[1:17] == PLAYER_ID
            assert m[17:21] == bytes.fromhex("84d49dd4"), m[17:21].hex()
            self.seen_call = m
            args = m[21:]
            if self.big_first:
                # a 200 000-byte string argument: 4 fragments; with lz4, compressed too
                # (hex of random bytes hardly compresses, so it stays 4 fragments)
                text = os.urandom(100000).hex().encode()
                big = b"\x84" + PLAYER_ID + b"\x04\x00\x00\x00" + b"big!" + b"\x01\x00\x00\x00" \
                    + b"\x05" + struct.pack("<I", len(text)) + text
                send_msg(big, compress=lz)
            reply = b"\x84" + PLAYER_ID + b"\x0a\x00\x00\x00echo_reply" + args
            send_msg(reply, compress=lz and len(reply) >= 512)
            # wait for the client to close
            while recv_msg() is not None:
                pass
            return


class _TcpLink:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, rec: bytes):
        data = struct.pack("<I", len(rec)) + rec
        # dribble the first bytes to exercise the client's reassembly across reads
        self.sock.sendall(data[:3])
        time.sleep(0.001)
        self.sock.sendall(data[3:])

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack_from("<I", self.buf)[0]
                if len(self.buf) >= 4 + n:
                    rec, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return rec
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def close(self):
        self.sock.close()


class _WsLink:
    def __init__(self, conn):
        self.conn = conn

    def send(self, rec: bytes):
        self.conn.send(rec)

    def recv(self):
        from websockets.exceptions import ConnectionClosed as WsClosed
        try:
            m = self.conn.recv()
        except WsClosed:
            return None
        assert isinstance(m, bytes)
        return m

    def close(self):
        self.conn.close()


class _KcpLink:
    """The fake gate's end of a KCP conversation (2.9): the connect exchange written here, then
    the same ikcp plumbing as the client (KcpTransport over a socket connected to the client)."""

    CONV = 0xDEADBEEF   # >= 2^31: exercises the signed conv_id of the kcp package

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.t = None
        self.control_in = []        # (type, length) of every control datagram received

    def accept(self) -> None:
        import hashlib
        import hmac
        key = os.urandom(16)
        while True:
            d, addr = self.sock.recvfrom(65536)
            ctl = kcp_parse_control(d)
            if ctl is None:
                continue
            kind, body = ctl
            self.control_in.append((kind, len(d)))
            if len(d) < 64 or len(body) < 8:
                continue                                    # short HELLO / CONNECT: ignored
            nonce = body[:8]
            mac = hmac.new(key, repr(addr).encode() + nonce, hashlib.sha256).digest()[:16]
            cookie = struct.pack("<I", 0) + mac
            if kind == KCP_HELLO:
                self.sock.sendto(kcp_control(KCP_COOKIE, nonce + cookie), addr)
            elif kind == KCP_CONNECT and body[8:28] == cookie:
                self.sock.sendto(kcp_control(KCP_ACCEPT, nonce + struct.pack("<I", self.CONV)), addr)
                self.sock.connect(addr)
                self.t = KcpTransport(self.sock, self.CONV)
                return

    def send(self, rec: bytes):
        self.t.send_record(rec)

    def recv(self):
        try:
            return self.t.recv_record(10)
        except ConnectionClosed:
            return None

    def close(self):
        self.t.close()


def _serve_once(kind: str, gate: FakeGate):
    """Start a one-connection fake gate on 127.0.0.1:<ephemeral>; returns (addr, join, stop)."""
    if kind == "kcp":
        us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        us.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{us.getsockname()[1]}"
        link = _KcpLink(us)
        gate.kcp_link = link

        def body():
            try:
                link.accept()
                gate.run(link)
            finally:
                if link.t is not None:
                    link.t.close()
                us.close()

        th = threading.Thread(target=body, daemon=True)
        th.start()
        return addr, th.join, lambda: None
    if kind == "tcp":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        addr = f"127.0.0.1:{ls.getsockname()[1]}"

        def body():
            try:
                s, _ = ls.accept()
            finally:
                ls.close()
            with s:
                gate.run(_TcpLink(s))

        th = threading.Thread(target=body, daemon=True)
        th.start()
        return addr, th.join, lambda: None
    from websockets.sync.server import serve
    server = serve(lambda conn: gate.run(_WsLink(conn)), "127.0.0.1", 0, compression=None,
                   max_size=MAX_RECORD)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    addr = f"127.0.0.1:{server.socket.getsockname()[1]}"

    def stop():
        server.shutdown()
        th.join(5)
    return addr, (lambda timeout=None: None), stop


def _session_tests(check: _Check) -> None:
    if NoiseConnection is None:
        check("noiseprotocol importable", False, "run net/interop/setup.sh")
        return
    gate_pub = noise_public_key(GATE_SECRET)
    check("gate public key of 00..1f (2.8)",
          gate_pub.hex() == "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f")

    # The client's own hello code against the 2.8 vectors (fixed ephemeral key).
    class _Replay(Transport):
        def __init__(self, incoming):
            self.incoming = list(incoming)
            self.sent = []

        def send_record(self, r):
            self.sent.append(bytes(r))

        def recv_record(self, timeout):
            if not self.incoming:
                raise ConnectionClosed("end of replay")
            return self.incoming.pop(0)

        def close(self):
            pass

    server_hello = _h("4f58570200017e117f70dc634f0098d413b22001166e10992c7fdbd90a061d889a01a0da8b2e1d"
                      "396f8de2863e4fdcb233e48964cf9fe9")
    gate_rec = _h("4b38c34604d828886fde8682ab849bfe09b1a5")
    rp = _Replay([server_hello, gate_rec])
    ch = Channel(rp, gate_public_key=gate_pub, lz4=False, _ephemeral_secret=_h(
        "74ed346d4cc835e1945348805e28c48b2b27818a685ae2ec64baff9d615e10a8"))
    ch.hello(1)
    check("client hello = 2.8 vector", rp.sent[0] == _h(
        "4f585702010083bbe66c9e5d7806ef48a133734e1e8ff7af5455f2685c3c6f0506d96dab1e1859720d5dfeb0"
        "267bfe2e44db27ca4796"), rp.sent[0].hex())
    ch.send_message(enc_heartbeat())
    check("first client record (Heartbeat) = 2.8 vector",
          rp.sent[1] == _h("7950f5bcee7668fd2748f96b61b3988e1da7"), rp.sent[1].hex())
    check("gate's first record opens to 'hi' (2.8)", ch.recv_message(1) == b"hi")

    # (transport, fake gate options, client options, expect the client's Call compressed,
    #  expect it fragmented)
    scenarios = [
        ("tcp", dict(mode=1, accept_lz4=False), dict(pub=gate_pub, lz4=False, text="hi"), False, False),
        ("tcp", dict(mode=1, accept_lz4=True), dict(pub=gate_pub, lz4=True, text="compress me " * 5000),
         True, False),
        ("tcp", dict(mode=0, accept_lz4=False, big_first=True),
         dict(pub=None, lz4=False, text="".join(chr(0x20 + (i * 31) % 0x5f) for i in range(150000))),
         False, True),
        ("tcp", dict(mode=1, accept_lz4=True, big_first=True),
         dict(pub=gate_pub, lz4=True, text=os.urandom(70000).hex()), False, True),
        ("tcp", dict(mode=1, accept_lz4=False), dict(pub=gate_pub, lz4=True, text="not compressed " * 100),
         False, False),
        ("ws", dict(mode=1, accept_lz4=True), dict(pub=gate_pub, lz4=True, text="héllo wörld"), False, False),
        ("ws", dict(mode=0, accept_lz4=False, big_first=True), dict(pub=None, lz4=False, text="x" * 70000),
         False, True),
        ("kcp", dict(mode=1, accept_lz4=False), dict(pub=gate_pub, lz4=False, text="hi"), False, False),
        ("kcp", dict(mode=1, accept_lz4=True, big_first=True), dict(pub=gate_pub, lz4=True,
                                                                     text=make_text(100000)), True, True),
        ("kcp", dict(mode=0, accept_lz4=False, big_first=True), dict(pub=None, lz4=False, text="y" * 70000),
         False, True),
    ]
    for kind, gopts, copts, want_lz4, want_frag in scenarios:
        label = (f"{kind} {'noise' if copts['pub'] else 'plain'} lz4={copts['lz4']} "
                 f"echo of {len(copts['text'])} chars{' after a 200 kB server call' if gopts.get('big_first') else ''}")
        gate = FakeGate(**gopts)
        addr, join, stop = _serve_once(kind, gate)
        try:
            res = run_echo(kind, addr, gate_public_key=copts["pub"], lz4=copts["lz4"],
                           text=copts["text"], timeout=10)
            join(5)
            text = copts["text"]
            ok = (res["ok"] is True and res["transport"] == kind
                  and res["encrypted"] == (copts["pub"] is not None)
                  and res["chars"] == len(text)
                  and res["reply"] == (text if len(text) <= 64 else text[:61] + "...")
                  and gate.error is None)
            check(label, ok, f"{gate.error or ''} {str(res)[:200]}")
            if copts["text"] == "hi":
                check("the client's Call plaintext is section 11's (after flags 00)",
                      gate.seen_call == S11_CALL[4:] and gate.seen_flags[0] == 0)
            check(f"{label}: the client's Call {'was' if want_lz4 else 'was not'} compressed",
                  any(f & 1 for f in gate.seen_flags) == want_lz4, repr(gate.seen_flags))
            check(f"{label}: the client's Call {'was' if want_frag else 'was not'} fragmented",
                  any(f & 2 for f in gate.seen_flags) == want_frag, repr(gate.seen_flags))
            if kind == "kcp":
                ctl = gate.kcp_link.control_in
                link = gate.kcp_link
                check(f"{label}: HELLO and CONNECT of 64 bytes, then the client's BYE (2.9)",
                      ctl == [(KCP_HELLO, 64), (KCP_CONNECT, 64)]
                      and _wait_for(lambda: link.t is not None and link.t.bye_received),
                      f"{ctl!r} bye_received={link.t and link.t.bye_received}")
        except Exception as e:  # noqa: BLE001
            check(label, False, f"{e!r} {gate.error or ''}")
        finally:
            stop()

    # Refusals: a wrong gate key (status 04), and a plain client to a Noise-only gate (03).
    other_pub = noise_public_key(bytes(range(1, 33)))
    for kind, pub, status, label in [("tcp", other_pub, 4, "wrong key -> status 04"),
                                     ("ws", other_pub, 4, "wrong key -> status 04"),
                                     ("kcp", other_pub, 4, "wrong key -> status 04, then BYE"),
                                     ("tcp", None, 3, "plain client to a Noise gate -> status 03")]:
        gate = FakeGate(mode=1, accept_lz4=False)
        addr, join, stop = _serve_once(kind, gate)
        try:
            res = run_expect_refusal(kind, addr, gate_public_key=pub, lz4=False, timeout=10,
                                     expect_status=status)
            join(5)
            check(f"{kind} {label}", res["ok"] and res["status"] == status and res["reason"], repr(res))
        except Exception as e:  # noqa: BLE001
            check(f"{kind} {label}", False, repr(e))
        finally:
            stop()

    # And the echo run fails cleanly (non-zero) with the wrong key.
    gate = FakeGate(mode=1, accept_lz4=False)
    addr, join, stop = _serve_once("tcp", gate)
    try:
        run_echo("tcp", addr, gate_public_key=other_pub, lz4=False, text="hi", timeout=10)
        check("echo with a wrong key fails", False, "it succeeded")
    except HelloRefused as e:
        check("echo with a wrong key fails with HelloRefused status 04", e.status == 4, str(e))
    finally:
        join(5)
        stop()


def self_test() -> int:
    check = _Check()
    _codec_tests(check)
    _session_tests(check)
    print(f"{check.passed} passed, {check.failed} failed")
    return 0 if check.failed == 0 else 1


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transport", choices=sorted(TRANSPORTS), default="tcp")
    ap.add_argument("--addr", help="HOST:PORT of the gate's listener for that transport")
    key = ap.add_mutually_exclusive_group()
    key.add_argument("--pubkey", help="the gate's static X25519 public key, 64 hex digits (mode 1)")
    key.add_argument("--gate-key-file", metavar="PATH",
                     help="derive the gate's public key from its key file (64 hex digits of the secret, 2.5)")
    key.add_argument("--plain", action="store_true", help="mode 0: no encryption")
    ap.add_argument("--lz4", action="store_true", help="offer lz4 compression")
    ap.add_argument("--echo", metavar="TEXT", help="call echo(TEXT) on the player, expect echo_reply(TEXT)")
    ap.add_argument("--echo-size", metavar="N", type=int,
                    help="echo a generated text of N chars (about 70 %% lz4-compressible; see make_text)")
    ap.add_argument("--expect-refusal", action="store_true",
                    help="expect the hello to be refused (status --expect-status) and the connection closed")
    ap.add_argument("--expect-status", type=lambda s: int(s, 16), default=4,
                    help="hello status expected by --expect-refusal, hex (default 04)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds for the whole run (default 10)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log messages on stderr")
    ap.add_argument("--self-test", action="store_true", help="offline tests (no gate needed)")
    a = ap.parse_args(argv)

    if a.self_test:
        return self_test()
    if not a.addr:
        ap.error("--addr is required")
    if not (a.pubkey or a.gate_key_file or a.plain):
        ap.error("one of --pubkey HEX, --gate-key-file PATH or --plain is required")
    pub = None
    if a.gate_key_file:
        try:
            with open(a.gate_key_file, encoding="ascii") as f:
                secret = bytes.fromhex(f.read().strip())
        except (OSError, ValueError) as e:
            ap.error(f"--gate-key-file: {e}")
        if len(secret) != 32:
            ap.error("--gate-key-file: the secret must be 32 bytes (64 hex digits)")
        pub = noise_public_key(secret)
    if a.pubkey:
        try:
            pub = bytes.fromhex(a.pubkey.strip())
        except ValueError:
            ap.error("--pubkey is not hex")
        if len(pub) != 32:
            ap.error("--pubkey must be 32 bytes (64 hex digits)")
    log = (lambda s: print(s, file=sys.stderr)) if a.verbose else None

    # A hard stop in case something blocks outside the deadlines above.
    timer = threading.Timer(a.timeout + 2, lambda: (print(f"error: timed out after {a.timeout} s",
                                                          file=sys.stderr), os._exit(1)))
    timer.daemon = True
    timer.start()
    try:
        if a.expect_refusal:
            res = run_expect_refusal(a.transport, a.addr, gate_public_key=pub, lz4=a.lz4,
                                     timeout=a.timeout, expect_status=a.expect_status, log=log)
        elif a.echo is not None or a.echo_size is not None:
            text = a.echo if a.echo is not None else make_text(a.echo_size)
            res = run_echo(a.transport, a.addr, gate_public_key=pub, lz4=a.lz4, text=text,
                           timeout=a.timeout, log=log)
        else:
            ap.error("nothing to do: give --echo TEXT, --echo-size N, --expect-refusal or --self-test")
    except (Exception, TimeoutError) as e:  # noqa: BLE001 - every failure is reported the same way
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        timer.cancel()
    print(json.dumps(res, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
