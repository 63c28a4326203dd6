"""routerd's HTTP/1.1 server: the head limit (431) when reads do not line up with requests.

The kernel decides how a client's bytes are split into reads, so these tests hand each read to
the connection's protocol themselves (`data_received`, as the event loop does), over a real
socket that the answers go back on: a read that holds a whole pipelined request (with a large
body) and then ends inside the next request's head must not count the earlier request's bytes
against that head, while a head truly over the limit is still refused, however it is split.
"""

from __future__ import annotations

import asyncio

import pytest

from routerd.server.http1_server import Http1Server
from routerd.server.http1_server_conn import Http1ServerConnection
from tests.http1_server_rig import Rig, closed_by_server, raw, read_answer, serving

MAX_HEAD = 65536
BIG_BODY = 1 << 17  # 128 KiB: request bodies up to it are accepted here


@pytest.fixture
def rig() -> Rig:
    return Rig()


def _post(path: bytes, body: bytes) -> bytes:
    return b"POST %b HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%b" % (path, len(body), body)


async def _fed(
    server: Http1Server,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    reads: list[bytes],
) -> Http1ServerConnection:
    """Open the connection with one request over the socket (so the server holds it), then
    feed `reads` to its protocol, one `data_received` each."""
    writer.write(b"GET /open HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await read_answer(reader)).status == 200
    (conn,) = server.conns
    assert isinstance(conn, Http1ServerConnection)
    for data in reads:
        conn.data_received(data)
    return conn


async def test_read_over_the_limit_ending_inside_the_next_head_is_not_431(rig: Rig) -> None:
    body = b"b" * 70000
    first = _post(b"/first", body) + b"GET /second HTTP/1.1\r\nHost: h\r\nX-A: "
    assert len(first) > MAX_HEAD
    async with (
        serving(rig, max_head_bytes=MAX_HEAD, max_body_bytes=BIG_BODY) as server,
        raw(server) as (reader, writer),
    ):
        await _fed(server, reader, writer, [first, b"1\r\nX-B: 2\r\n\r\n"])
        answer = (await read_answer(reader)).json()
        assert (answer["path"], answer["body"]) == ("/first", body.decode())
        second = await read_answer(reader)
        assert second.status == 200
        assert ["X-A", "1"] in second.json()["headers"]  # type: ignore[operator]
        assert ["X-B", "2"] in second.json()["headers"]  # type: ignore[operator]
    assert rig.seen == ["/open", "/first", "/second"]


async def test_head_begun_after_a_large_body_and_split_over_reads_is_not_431(rig: Rig) -> None:
    """The head starts at the end of a 40 KiB read and goes on over two more reads: 30 KiB of
    its own, well under the limit (the reads add up to more)."""
    value = b"v" * 30000
    reads = [
        _post(b"/first", b"b" * 40000) + b"GET /second HTTP/1.1\r\nX-Long: ",
        value,
        b"\r\nHost: h\r\n\r\n",
    ]
    async with (
        serving(rig, max_head_bytes=MAX_HEAD, max_body_bytes=BIG_BODY) as server,
        raw(server) as (reader, writer),
    ):
        await _fed(server, reader, writer, reads)
        assert (await read_answer(reader)).status == 200
        second = await read_answer(reader)
        assert second.status == 200
        assert ["X-Long", value.decode()] in second.json()["headers"]  # type: ignore[operator]


async def test_head_over_the_limit_begun_inside_a_read_gets_431(rig: Rig) -> None:
    """Most of the too-large header arrives in the read the head began in (behind a whole
    request), the rest in the next one."""
    reads = [
        b"GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /big HTTP/1.1\r\nX-Big: " + b"a" * 60000,
        b"a" * 10000 + b"\r\n\r\n",
    ]
    async with serving(rig, max_head_bytes=MAX_HEAD) as server, raw(server) as (reader, writer):
        await _fed(server, reader, writer, reads)
        assert (await read_answer(reader)).status == 200
        answer = await read_answer(reader)
        assert answer.status == 431
        assert answer.headers["Connection"] == "close"
        assert await closed_by_server(reader)
    assert rig.seen == ["/open", "/first"]


@pytest.mark.parametrize("reads", [1, MAX_HEAD // 1000 + 1])
async def test_unfinished_head_over_the_limit_gets_431(rig: Rig, reads: int) -> None:
    """A head that never ends, begun behind a whole request, its header fed in one read with it
    or 1,000 bytes a read after it: refused once it is over the limit, without waiting for its
    end."""
    begun = b"GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /big HTTP/1.1\r\nX-Big: "
    value = b"a" * (MAX_HEAD + 1000)
    fed = [begun + value] if reads == 1 else [begun] + [value[:1000]] * reads
    async with serving(rig, max_head_bytes=MAX_HEAD) as server, raw(server) as (reader, writer):
        await _fed(server, reader, writer, fed)
        assert (await read_answer(reader)).status == 200
        assert (await read_answer(reader)).status == 431
        assert await closed_by_server(reader)
    assert rig.seen == ["/open", "/first"]
