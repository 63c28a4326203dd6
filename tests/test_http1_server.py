"""routerd's HTTP/1.1 server (`Http1Server`) over real sockets: request parsing and replies.

Raw `asyncio` connections send exact bytes (pipelining, chunked bodies, 100-continue, limits,
malformed heads, HTTP/1.0, Upgrade, HEAD) and read the answers byte-exactly; aiohttp's and
httpx's clients use it as ordinary keep-alive clients. Streams and the server's lifecycle are
in `test_http1_server_streams.py`.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket

import aiohttp
import httpx2
import pytest
import structlog
from aiohttp import web

from routerd.server.http1_server import Http1Server
from tests.http1_server_rig import (
    MAX_BODY,
    Rig,
    closed_by_server,
    raw,
    read_answer,
    read_head,
    serving,
)


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_echo_with_aiohttp_client_keeps_one_connection(rig: Rig) -> None:
    async with (
        serving(rig) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session,
    ):
        for n in range(5):
            url = f"http://127.0.0.1:{server.port}/v1/chat?n={n}"
            async with session.post(url, json={"n": n}) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/json"
                got = await resp.json()
            assert got["method"] == "POST"
            assert got["path"] == "/v1/chat"
            assert got["query"] == f"n={n}"
            assert got["body"] == f'{{"n": {n}}}'
        assert len(server.conns) == 1


async def test_httpx_client_keep_alive_and_date(rig: Rig) -> None:
    async with serving(rig) as server, httpx2.AsyncClient() as client:
        for _ in range(3):
            resp = await client.get(f"http://127.0.0.1:{server.port}/v1/models")
            assert resp.status_code == 200
            assert resp.json()["path"] == "/v1/models"
            assert resp.headers.get("connection") is None
            assert email.utils.parsedate_to_datetime(resp.headers["date"]).tzname() == "UTC"
        assert len(server.conns) == 1


async def test_percent_decoded_path_and_raw_query(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /v1/models/openai%2Fgpt-4o?x=%20y&z HTTP/1.1\r\nHost: h\r\n\r\n")
        got = (await read_answer(reader)).json()
        assert got["path"] == "/v1/models/openai/gpt-4o"
        assert got["query"] == "x=%20y&z"
        writer.write(b"GET http://h/v1/models/a%2Fb?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        got = (await read_answer(reader)).json()
        assert (got["path"], got["query"]) == ("/v1/models/a/b", "q=1")


async def test_repeated_headers_are_kept_case_insensitively(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /h HTTP/1.1\r\nHost: h\r\nX-Dup: a\r\nx-dup: b\r\n\r\n")
        got = (await read_answer(reader)).json()
        assert [v for k, v in got["headers"] if k.lower() == "x-dup"] == ["a", "b"]


async def test_pipelined_requests_answered_in_order_one_at_a_time(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        requests = [b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"]
        requests += [b"GET /e?n=%d HTTP/1.1\r\nHost: h\r\n\r\n" % n for n in range(8)]
        writer.write(b"".join(requests))
        await asyncio.wait_for(rig.started.wait(), 5)
        assert rig.seen == ["/slow"]
        rig.release.set()
        assert (await read_answer(reader)).body == b'{"slow":true}'
        for n in range(8):
            assert (await read_answer(reader)).json()["query"] == f"n={n}"
        assert rig.most_in_flight == 1


async def test_chunked_request_body_in_pieces(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        await writer.drain()
        writer.write(b"lo\r\n6\r\n world\r\n0\r\n\r\n")
        assert (await read_answer(reader)).json()["body"] == "hello world"


async def test_body_of_exactly_the_limit_is_accepted(rig: Rig) -> None:
    body = b"a" * MAX_BODY
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"POST /e HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        answer = await read_answer(reader)
        assert answer.status == 200
        assert answer.json()["body"] == body.decode()
        assert "Connection" not in answer.headers


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_limit_gets_413_and_close(rig: Rig, chunked: bool) -> None:
    body = b"a" * (MAX_BODY + 1)
    if chunked:
        head = b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        request = head + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    else:
        request = b"POST /e HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(request + b"GET /e HTTP/1.1\r\n\r\n")
        answer = await read_answer(reader)
        assert answer.status == 413
        assert answer.headers["Connection"] == "close"
        assert answer.json()["error"]["code"] == "payload_too_large"  # type: ignore[index]
        assert await closed_by_server(reader)
        assert rig.seen == ["/e"]


async def test_expect_100_continue_then_body(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"POST /e HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert await read_head(reader) == (100, {})
        writer.write(b"hello")
        assert (await read_answer(reader)).json()["body"] == "hello"


async def test_expect_100_continue_behind_a_pending_answer_waits_for_it(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(
            b"GET /slow HTTP/1.1\r\n\r\n"
            b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        await asyncio.wait_for(rig.started.wait(), 5)
        rig.release.set()
        assert (await read_answer(reader)).body == b'{"slow":true}'
        assert await read_head(reader) == (100, {})
        writer.write(b"ok")
        assert (await read_answer(reader)).json()["body"] == "ok"


async def test_expect_100_continue_over_limit_is_answered_without_reading(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        head = b"POST /e HTTP/1.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
        writer.write(head % (MAX_BODY + 1))
        answer = await read_answer(reader)
        assert answer.status == 413
        assert answer.headers["Connection"] == "close"
        writer.write(b"a" * (MAX_BODY + 1))  # sent anyway (curl does after a second): dropped
        assert await closed_by_server(reader)
        assert rig.seen == ["/e"]


async def test_head_over_the_limit_gets_431(rig: Rig) -> None:
    async with serving(rig, max_head_bytes=4096) as server, raw(server) as (reader, writer):
        writer.write(b"GET /e HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        answer = await read_answer(reader)
        assert answer.status == 431
        assert answer.headers["Connection"] == "close"
        assert answer.json()["error"]["code"] == "invalid_request"  # type: ignore[index]
        assert await closed_by_server(reader)
    assert rig.seen == []


async def test_unfinished_head_over_the_limit_gets_431_without_waiting(rig: Rig) -> None:
    async with serving(rig, max_head_bytes=4096) as server, raw(server) as (reader, writer):
        writer.write(b"GET /e HTTP/1.1\r\nX-Big: ")
        for _ in range(6):
            writer.write(b"a" * 1000)
            await writer.drain()
        assert (await read_answer(reader)).status == 431


async def test_malformed_request_gets_400_and_close(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /e HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        assert (await read_answer(reader)).status == 200
        answer = await read_answer(reader)
        assert answer.status == 400
        assert answer.headers["Connection"] == "close"
        error = answer.json()["error"]
        assert error["code"] == "invalid_request"  # type: ignore[index]
        assert error["type"] == "invalid_request_error"  # type: ignore[index]
        assert await closed_by_server(reader)


async def test_http10_closes_unless_keep_alive(rig: Rig) -> None:
    async with serving(rig) as server:
        async with raw(server) as (reader, writer):
            writer.write(b"GET /one HTTP/1.0\r\n\r\n")
            answer = await read_answer(reader)
            assert answer.json()["path"] == "/one"
            assert answer.headers["Connection"] == "close"
            assert await closed_by_server(reader)
        async with raw(server) as (reader, writer):
            for n in range(2):
                writer.write(b"GET /ka?%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % n)
                answer = await read_answer(reader)
                assert answer.headers["Connection"] == "keep-alive"
                assert answer.json()["query"] == str(n)


async def test_connection_close_is_honoured(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        answer = await read_answer(reader)
        assert answer.headers["Connection"] == "close"
        assert await closed_by_server(reader)
        assert rig.seen == ["/a"]


@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket"])
async def test_upgrade_request_is_served_as_http11(rig: Rig, upgrade: bytes) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(
            b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: %b\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
            b"Content-Length: 2\r\n\r\nhiGET /next HTTP/1.1\r\n\r\n" % upgrade
        )
        answer = await read_answer(reader)
        assert answer.status == 200
        got = answer.json()
        assert got["body"] == "hi"
        assert ["Upgrade", upgrade.decode()] in got["headers"]  # type: ignore[operator]
        assert (await read_answer(reader)).json()["path"] == "/next"


async def test_head_gets_headers_only(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        writer.write(b"HEAD /e HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n")
        answer = await read_answer(reader, head_only=True)
        assert answer.status == 200
        assert int(answer.headers["Content-Length"]) > 0
        assert (await read_answer(reader)).json()["path"] == "/after"


async def test_dispatch_failure_is_a_500_envelope_and_logged(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        with structlog.testing.capture_logs() as events:
            writer.write(b"GET /raise HTTP/1.1\r\n\r\n")
            answer = await read_answer(reader)
        assert answer.status == 500
        error = answer.json()["error"]
        assert error["code"] == "internal_error"  # type: ignore[index]
        assert "Traceback" not in answer.body.decode()
        assert [e["path"] for e in events if e["event"] == "unhandled_error"] == ["/raise"]


async def test_header_with_line_break_never_reaches_the_wire(rig: Rig) -> None:
    async with serving(rig) as server, raw(server) as (reader, writer):
        with structlog.testing.capture_logs() as events:
            writer.write(b"GET /bad-header HTTP/1.1\r\n\r\n")
            answer = await read_answer(reader)
        assert answer.status == 500
        assert "Set-Cookie" not in answer.headers
        assert [e["event"] for e in events] == ["unsafe_header"]
        assert answer.headers["Connection"] == "close"
    async with serving(rig) as server, raw(server) as (reader, writer):
        with structlog.testing.capture_logs() as events:
            writer.write(b"GET /bad-stream-header HTTP/1.1\r\n\r\n")
            answer = await read_answer(reader)
        assert answer.status == 500
        assert answer.json()["error"]["code"] == "internal_error"  # type: ignore[index]
        assert [e["event"] for e in events] == ["unsafe_header"]


async def test_idle_connection_closes_after_keepalive_timeout(rig: Rig) -> None:
    async with serving(rig, keepalive_timeout=0.2) as server, raw(server) as (reader, writer):
        writer.write(b"GET /e HTTP/1.1\r\n\r\n")
        assert (await read_answer(reader)).status == 200
        assert await closed_by_server(reader)
        assert not server.conns


async def test_listens_on_ipv6(rig: Rig) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = Http1Server(web.Application(), rig.dispatch, max_body_bytes=MAX_BODY)
    await server.start("::1", 0)
    try:
        async with httpx2.AsyncClient() as client:
            resp = await client.get(f"http://[::1]:{server.port}/six")
        assert resp.json()["path"] == "/six"
    finally:
        await server.close(1.0)
