"""routerd's HTTP/1.1 server (`Http1Server`): streamed answers (chunked framing, the held head,
flow control, clients that go away) and the server's lifecycle (keep-alive, `close(grace)`).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import structlog

from tests.http1_server_rig import (
    BIG_CHUNK,
    BIG_CHUNKS,
    Rig,
    closed_by_server,
    raw,
    read_answer,
    read_chunks,
    read_head,
    serving,
)


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_stream_is_chunked_and_the_connection_stays_usable(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers = await read_head(reader)
        assert status == 200
        assert headers["Transfer-Encoding"] == "chunked"
        assert headers["Content-Type"] == "text/event-stream"
        assert "Content-Length" not in headers
        assert await read_chunks(reader) == [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]
        writer.write(b"GET /next HTTP/1.1\r\n\r\n")
        assert (await read_answer(reader)).json()["path"] == "/next"


async def test_stream_head_goes_alone_when_nothing_is_written(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /stream-open HTTP/1.1\r\n\r\n")
        status, _ = await read_head(reader)
        assert status == 200
        assert not rig.release.is_set()
        rig.release.set()
        assert await read_chunks(reader) == [b"data: late\n\n"]


async def test_stream_left_open_by_the_handler_is_ended(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /stream-no-eof HTTP/1.1\r\n\r\n")
        await read_head(reader)
        assert await read_chunks(reader) == [b"data: only\n\n"]
        writer.write(b"GET /next HTTP/1.1\r\n\r\n")
        assert (await read_answer(reader)).json()["path"] == "/next"


async def test_stream_to_http10_is_close_delimited(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        answer = await read_answer(reader)
        assert "Transfer-Encoding" not in answer.headers
        assert answer.headers["Connection"] == "close"
        assert answer.body == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


async def test_stream_to_head_request_has_no_body(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"HEAD /stream HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n")
        status, _ = await read_head(reader)
        assert status == 200
        assert (await read_answer(reader)).json()["path"] == "/after"


async def test_stream_read_by_aiohttp_client(rig: Rig) -> None:
    async with serving(rig) as server, aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(f"http://127.0.0.1:{server.port}/stream") as resp:
                assert resp.status == 200
                assert await resp.read() == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
        assert len(server.conns) == 1


async def test_slow_reader_makes_write_wait(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /stream-big HTTP/1.1\r\n\r\n")
        await read_head(reader)
        with pytest.raises(TimeoutError):  # the client reads nothing: the handler waits
            await asyncio.wait_for(rig.finished.wait(), 0.5)
        body = b"".join(await read_chunks(reader))
        assert len(body) == BIG_CHUNK * BIG_CHUNKS
        assert rig.finished.is_set()


async def test_client_gone_mid_stream_write_raises_and_handler_finishes(rig: Rig) -> None:
    async with serving(rig) as server:
        async with raw(server) as (reader, writer):
            writer.write(b"GET /stream-cut HTTP/1.1\r\n\r\n")
            await read_head(reader)
            assert await asyncio.wait_for(reader.readuntil(b"first\n\n\r\n"), 5)
        rig.client_gone.set()
        await asyncio.wait_for(rig.finished.wait(), 5)
        assert [type(e) for e in rig.errors] == [ConnectionResetError]
        assert not server.conns


async def test_client_gone_before_reply_handler_is_not_cancelled(rig: Rig) -> None:
    async with serving(rig) as server:
        with structlog.testing.capture_logs() as events:
            async with raw(server) as (_, writer):
                writer.write(b"GET /slow HTTP/1.1\r\n\r\n")
                await asyncio.wait_for(rig.started.wait(), 5)
            for _ in range(500):  # until the server noticed the client is gone
                if not server.conns:
                    break
                await asyncio.sleep(0.01)
            assert not server.conns
            rig.release.set()
            await asyncio.wait_for(rig.finished.wait(), 5)
            await asyncio.gather(*server.tasks)
        assert rig.errors == []
        assert events == []


async def test_close_with_idle_and_busy_connections(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (idle_r, idle_w):
        idle_w.write(b"GET /e HTTP/1.1\r\n\r\n")
        assert (await read_answer(idle_r)).status == 200
        async with raw(server) as (busy_r, busy_w):
            busy_w.write(b"GET /slow HTTP/1.1\r\n\r\n")
            await asyncio.wait_for(rig.started.wait(), 5)
            closing = asyncio.create_task(server.close(5.0))
            assert await closed_by_server(idle_r)
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", server.port)
            assert not closing.done()
            rig.release.set()
            answer = await read_answer(busy_r)
            assert answer.body == b'{"slow":true}'
            assert answer.headers["Connection"] == "close"
            assert await closed_by_server(busy_r)
            await asyncio.wait_for(closing, 5)


async def test_close_after_grace_cancels_the_handler(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /slow HTTP/1.1\r\n\r\n")
        await asyncio.wait_for(rig.started.wait(), 5)
        with structlog.testing.capture_logs() as events:
            await asyncio.wait_for(server.close(0.05), 5)
        assert [type(e) for e in rig.errors] == [asyncio.CancelledError]
        assert [e["event"] for e in events] == ["unhandled_error"]
        assert await closed_by_server(reader)
        assert not server.tasks


async def test_client_that_does_not_read_gets_no_further_answers(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /big-reply HTTP/1.1\r\n\r\n" * 2)
        with pytest.raises(TimeoutError):  # the first answer is not read: the second waits
            await asyncio.wait_for(rig.second.wait(), 0.5)
        for _ in range(2):
            assert len((await read_answer(reader)).body) == BIG_CHUNK * BIG_CHUNKS
        assert rig.seen == ["/big-reply", "/big-reply"]
