"""The server name and ALPN offer in a TLS ClientHello, read before any TLS work.

Transparent interception has no CONNECT line to say where a connection goes: the name
comes from the ClientHello's server_name extension, parsed here from the bytes the
proxy has already read (they are then fed to the TLS layer unchanged). Written by hand
because no library parses a ClientHello without also terminating TLS; every length is
checked against what is left, and anything unexpected is "not a ClientHello".

Owns that parsing only. It must never read past the bytes it was given, never accept a
second server name, and never guess a name that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigmcp.errors import EgressError

MAX_HELLO = 64 * 1024
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16


class NotClientHello(EgressError):
    pass


@dataclass(frozen=True, slots=True)
class Hello:
    server_name: str | None
    alpn: tuple[str, ...]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise NotClientHello("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vector(self, length_bytes: int) -> _Reader:
        n = int.from_bytes(self.take(length_bytes), "big")
        return _Reader(self.take(n))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def handshake_bytes(records: bytes) -> bytes | None:
    """The handshake message carried by the TLS records read so far, once complete;
    None while more bytes are needed. NotClientHello for anything else."""
    out = bytearray()
    pos = 0
    while pos + 5 <= len(records):
        if records[pos] != _HANDSHAKE or records[pos + 1] != 3:
            raise NotClientHello("not a TLS handshake record")
        length = int.from_bytes(records[pos + 3 : pos + 5], "big")
        if length == 0 or length > 16384 + 2048:
            raise NotClientHello("bad record length")
        if pos + 5 + length > len(records):
            break
        out += records[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(out) >= 4:
            if out[0] != _CLIENT_HELLO:
                raise NotClientHello("first handshake message is not a ClientHello")
            need = 4 + int.from_bytes(out[1:4], "big")
            if need > MAX_HELLO:
                raise NotClientHello("ClientHello too large")
            if len(out) >= need:
                return bytes(out[:need])
    if len(records) > MAX_HELLO:
        raise NotClientHello("ClientHello too large")
    return None


def parse_client_hello(message: bytes) -> Hello:
    r = _Reader(message)
    if r.u8() != _CLIENT_HELLO:
        raise NotClientHello("not a ClientHello")
    body = _Reader(r.take(r.u24()))
    body.take(2 + 32)  # legacy_version, random
    body.vector(1)  # legacy_session_id
    body.vector(2)  # cipher_suites
    body.vector(1)  # legacy_compression_methods
    name: str | None = None
    alpn: tuple[str, ...] = ()
    if body.left == 0:
        return Hello(None, ())
    extensions = body.vector(2)
    seen: set[int] = set()
    while extensions.left:
        ext_type = extensions.u16()
        ext = extensions.vector(2)
        if ext_type in seen:
            raise NotClientHello("an extension appears twice")
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            names = ext.vector(2)
            while names.left:
                kind = names.u8()
                value = names.vector(2).data
                if kind != 0:
                    continue
                if name is not None:
                    raise NotClientHello("two host names in server_name")
                try:
                    name = value.decode("ascii")
                except UnicodeDecodeError:
                    raise NotClientHello("server_name is not ASCII") from None
        elif ext_type == _EXT_ALPN:
            protocols = ext.vector(2)
            offered: list[str] = []
            while protocols.left:
                offered.append(protocols.vector(1).data.decode("ascii", "replace"))
            alpn = tuple(offered)
    return Hello(name, alpn)
