#!/usr/bin/env python3
"""A minimal Bolt client (standard library only) for scripts/services/neo4j.sh.

  bolt.py handshake HOST PORT
      Bolt handshake only; prints the version the server chose, e.g. "5.4".
  bolt.py query HOST PORT CYPHER [PARAMS_JSON]
      Logs in and runs CYPHER with the JSON object PARAMS_JSON as parameters; prints one
      JSON array per record. Credentials from the environment: NEO4J_USER, NEO4J_PASSWORD;
      NEO4J_AUTH=none sends no credentials.
With NEO4J_CA (a PEM file) set, it speaks TLS and verifies the server against that CA.

Exits 1 with a one-line message on any failure (refused, bad credentials, Cypher error).
"""
import json
import os
import socket
import ssl
import struct
import sys

MAGIC = b"\x60\x60\xb0\x17"
# Proposals: 5.4 down to 5.0 (range 4), then 4.4; [0, range, minor, major] each.
PROPOSALS = bytes([0, 4, 4, 5, 0, 0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0])

HELLO, GOODBYE, LOGON, RUN, PULL = 0x01, 0x02, 0x6A, 0x10, 0x3F
SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F


class BoltError(Exception):
    pass


class Struct:
    def __init__(self, tag, fields):
        self.tag, self.fields = tag, fields


def pack(v, out):
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        if -16 <= v < 128:
            out += struct.pack(">b", v)
        elif -128 <= v < 128:
            out += b"\xC8" + struct.pack(">b", v)
        elif -32768 <= v < 32768:
            out += b"\xC9" + struct.pack(">h", v)
        elif -(2**31) <= v < 2**31:
            out += b"\xCA" + struct.pack(">i", v)
        else:
            out += b"\xCB" + struct.pack(">q", v)
    elif isinstance(v, float):
        out += b"\xC1" + struct.pack(">d", v)
    elif isinstance(v, str):
        b = v.encode()
        pack_header(len(b), 0x80, 0xD0, out)
        out += b
    elif isinstance(v, (list, tuple)):
        pack_header(len(v), 0x90, 0xD4, out)
        for x in v:
            pack(x, out)
    elif isinstance(v, dict):
        pack_header(len(v), 0xA0, 0xD8, out)
        for k, x in v.items():
            pack(str(k), out)
            pack(x, out)
    elif isinstance(v, Struct):
        out.append(0xB0 | len(v.fields))
        out.append(v.tag)
        for x in v.fields:
            pack(x, out)
    else:
        raise BoltError(f"cannot send a {type(v).__name__}")


def pack_header(n, tiny, base, out):
    if n < 16:
        out.append(tiny | n)
    elif n < 256:
        out += bytes([base, n])
    elif n < 65536:
        out += bytes([base + 1]) + struct.pack(">H", n)
    else:
        out += bytes([base + 2]) + struct.pack(">I", n)


class Reader:
    def __init__(self, data):
        self.data, self.i = data, 0

    def take(self, n):
        b = self.data[self.i : self.i + n]
        self.i += n
        return b

    def size(self, marker, base):
        k = marker - base
        return struct.unpack(">" + "BHI"[k], self.take((1, 2, 4)[k]))[0]

    def value(self):
        m = self.take(1)[0]
        if m < 0x80:
            return m
        if m >= 0xF0:
            return m - 256
        hi = m & 0xF0
        if hi == 0x80:
            return self.take(m & 0x0F).decode()
        if hi == 0x90:
            return [self.value() for _ in range(m & 0x0F)]
        if hi == 0xA0:
            return {self.value(): self.value() for _ in range(m & 0x0F)}
        if hi == 0xB0:
            tag = self.take(1)[0]
            return Struct(tag, [self.value() for _ in range(m & 0x0F)])
        if m == 0xC0:
            return None
        if m == 0xC1:
            return struct.unpack(">d", self.take(8))[0]
        if m in (0xC2, 0xC3):
            return m == 0xC3
        if 0xC8 <= m <= 0xCB:
            fmt, n = [(">b", 1), (">h", 2), (">i", 4), (">q", 8)][m - 0xC8]
            return struct.unpack(fmt, self.take(n))[0]
        if 0xCC <= m <= 0xCE:
            return self.take(self.size(m, 0xCC)).hex()
        if 0xD0 <= m <= 0xD2:
            return self.take(self.size(m, 0xD0)).decode()
        if 0xD4 <= m <= 0xD6:
            return [self.value() for _ in range(self.size(m, 0xD4))]
        if 0xD8 <= m <= 0xDA:
            return {self.value(): self.value() for _ in range(self.size(m, 0xD8))}
        raise BoltError(f"unknown PackStream marker 0x{m:02x}")


def plain(v):
    """Nodes, relationships and other structures as JSON-friendly values."""
    if isinstance(v, Struct):
        f = [plain(x) for x in v.fields]
        if v.tag == 0x4E:  # Node: id, labels, properties[, element_id]
            return {"labels": f[1], "properties": f[2]}
        if v.tag == 0x52:  # Relationship: id, start, end, type, properties, ...
            return {"type": f[3], "properties": f[4]}
        return {"struct": v.tag, "fields": f}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


class Connection:
    def __init__(self, host, port, timeout=10.0):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            ca = os.environ.get("NEO4J_CA")
            if ca:
                context = ssl.create_default_context(cafile=ca)
                self.sock = context.wrap_socket(self.sock, server_hostname=host)
        except OSError as e:
            raise BoltError(f"cannot connect to {host}:{port}: {e}") from None
        self.sock.sendall(MAGIC + PROPOSALS)
        v = self.recv(4)
        if v == b"\0\0\0\0":
            raise BoltError("server accepted none of the proposed Bolt versions")
        self.version = (v[3], v[2])

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise BoltError("server closed the connection")
            buf += chunk
        return buf

    def send(self, tag, *fields):
        body = bytearray()
        pack(Struct(tag, list(fields)), body)
        out = bytearray()
        for i in range(0, len(body), 65535):
            part = body[i : i + 65535]
            out += struct.pack(">H", len(part)) + part
        out += b"\0\0"
        self.sock.sendall(out)

    def receive(self):
        data = b""
        while True:
            n = struct.unpack(">H", self.recv(2))[0]
            if n == 0:
                if data:
                    break
                continue  # a NOOP chunk (keep-alive)
            data += self.recv(n)
        msg = Reader(data).value()
        return msg.tag, msg.fields[0] if msg.fields else None

    def expect_success(self, what):
        tag, meta = self.receive()
        if tag == FAILURE:
            raise BoltError(f"{what}: {meta.get('code', '')}: {meta.get('message', '')}")
        if tag != SUCCESS:
            raise BoltError(f"{what}: unexpected reply 0x{tag:02x}")
        return meta

    def login(self, auth):
        hello = {"user_agent": "poirot-services/1"}
        if self.version >= (5, 3):
            hello["bolt_agent"] = {"product": "poirot-services/1"}
        if self.version >= (5, 1):
            self.send(HELLO, hello)
            self.expect_success("HELLO")
            self.send(LOGON, auth)
            self.expect_success("LOGON")
        else:
            hello.update(auth)
            self.send(HELLO, hello)
            self.expect_success("HELLO")

    def query(self, cypher, params):
        self.send(RUN, cypher, params, {})
        self.expect_success("RUN")
        self.send(PULL, {"n": -1})
        records = []
        while True:
            tag, data = self.receive()
            if tag == RECORD:
                records.append(data)
            elif tag == SUCCESS:
                return records
            elif tag == FAILURE:
                raise BoltError(f"{data.get('code', '')}: {data.get('message', '')}")
            else:
                raise BoltError(f"PULL: unexpected reply 0x{tag:02x}")

    def close(self):
        try:
            self.send(GOODBYE)
        except OSError:
            pass
        self.sock.close()


def auth_token():
    if os.environ.get("NEO4J_AUTH", "").lower() == "none":
        return {"scheme": "none"}
    return {
        "scheme": "basic",
        "principal": os.environ.get("NEO4J_USER", "neo4j"),
        "credentials": os.environ.get("NEO4J_PASSWORD", ""),
    }


def main(argv):
    if len(argv) >= 3 and argv[0] == "handshake":
        c = Connection(argv[1], int(argv[2]))
        print(f"{c.version[0]}.{c.version[1]}")
        c.sock.close()
    elif len(argv) in (4, 5) and argv[0] == "query":
        params = json.loads(argv[4]) if len(argv) == 5 else {}
        if not isinstance(params, dict):
            raise BoltError("PARAMS_JSON must be a JSON object")
        c = Connection(argv[1], int(argv[2]))
        c.login(auth_token())
        for record in c.query(argv[3], params):
            print(json.dumps(plain(record)))
        c.close()
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BoltError, OSError, ValueError) as e:
        print(f"bolt: {e}", file=sys.stderr)
        sys.exit(1)
