"""Reading the server name from a ClientHello, before any TLS work, without being fooled."""

from __future__ import annotations

import ssl

import pytest

from gigmcp.egress import sni


def client_hello(server_name: str | None, alpn: list[str] | None = None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_name_and_alpn_offer_of_a_real_client_hello() -> None:
    records = client_hello("api.example.test", ["h2", "http/1.1"])
    message = sni.handshake_bytes(records)
    assert message is not None
    hello = sni.parse_client_hello(message)
    assert hello.server_name == "api.example.test"
    assert hello.alpn == ("h2", "http/1.1")


def test_a_hello_without_a_name_says_so() -> None:
    message = sni.handshake_bytes(client_hello(None))
    assert message is not None and sni.parse_client_hello(message).server_name is None


def test_more_bytes_are_needed_until_the_hello_is_complete() -> None:
    records = client_hello("api.example.test")
    for cut in (0, 3, 5, 6, len(records) - 1):
        assert sni.handshake_bytes(records[:cut]) is None
    assert sni.handshake_bytes(records) is not None


def test_a_hello_split_over_several_records_is_reassembled() -> None:
    records = client_hello("split.example.test")
    body = records[5:]
    half = len(body) // 2
    split = (
        records[:3] + half.to_bytes(2, "big") + body[:half]
        + records[:3] + (len(body) - half).to_bytes(2, "big") + body[half:]
    )  # fmt: skip
    message = sni.handshake_bytes(split)
    assert message is not None
    assert sni.parse_client_hello(message).server_name == "split.example.test"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not TLS at all
        b"\x17\x03\x03\x00\x10" + b"\0" * 16,  # application data, not a handshake
        b"\x16\x03\x03\x00\x00",  # empty record
        b"\x16\x03\x03\x00\x05\x02\x00\x00\x01\x00",  # a ServerHello
    ],
)
def test_attack_what_is_not_a_client_hello_is_refused(data: bytes) -> None:
    def read() -> None:
        message = sni.handshake_bytes(data)
        if message is not None:
            sni.parse_client_hello(message)

    with pytest.raises(sni.NotClientHello):
        read()


def test_attack_a_length_that_points_past_the_end_is_refused() -> None:
    message = sni.handshake_bytes(client_hello("api.example.test")) or b""
    for cut in (10, 40, 80, len(message) - 1):
        with pytest.raises(sni.NotClientHello, match="truncated"):
            sni.parse_client_hello(message[:cut])


def test_attack_two_server_names_are_refused() -> None:
    message = sni.handshake_bytes(client_hello("a.example.test"))
    assert message is not None
    one = b"\x00" + len(b"a.example.test").to_bytes(2, "big") + b"a.example.test"
    two = b"\x00" + len(b"b.example.test").to_bytes(2, "big") + b"b.example.test"
    old_ext = b"\x00\x00" + (len(one) + 2).to_bytes(2, "big") + len(one).to_bytes(2, "big") + one
    new_list = one + two
    new_ext = (
        b"\x00\x00"
        + (len(new_list) + 2).to_bytes(2, "big")
        + len(new_list).to_bytes(2, "big")
        + new_list
    )
    assert old_ext in message
    grown = len(new_ext) - len(old_ext)
    patched = bytearray(message.replace(old_ext, new_ext))
    # Fix the handshake length and the extensions block length.
    total = int.from_bytes(patched[1:4], "big") + grown
    patched[1:4] = total.to_bytes(3, "big")
    r = 4 + 2 + 32
    r += 1 + patched[r]
    r += 2 + int.from_bytes(patched[r : r + 2], "big")
    r += 1 + patched[r]
    ext_len = int.from_bytes(patched[r : r + 2], "big") + grown
    patched[r : r + 2] = ext_len.to_bytes(2, "big")
    with pytest.raises(sni.NotClientHello, match="two host names"):
        sni.parse_client_hello(bytes(patched))


def test_attack_an_oversized_hello_is_refused() -> None:
    huge = b"\x16\x03\x03\x40\x00" + b"\x01" + (70000).to_bytes(3, "big") + b"\0" * 16380
    with pytest.raises(sni.NotClientHello, match="too large"):
        sni.handshake_bytes(huge)
