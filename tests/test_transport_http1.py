"""The upstream transports against real servers: aiohttp servers for well-behaved HTTP, raw
asyncio servers for misbehaviour (exact bytes, split segments, cut bodies, dropped keep-alive
connections). The shared behaviour runs over both transports (`http1`, the default, and
`aiohttp`) so they stay equivalent; what only http1 promises is tested on http1 alone.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import zlib
from pathlib import Path

import pytest
import uvloop
import yaml
from aiohttp import web

from routerd.config.load import ConfigError, load_catalog
from routerd.config.model import ProviderConfig, Timeouts, TransportKind
from routerd.errors import ErrorCode
from routerd.providers.base import AiohttpTransport, Transport, UpstreamError, UpstreamRequest
from routerd.providers.http1 import Http1Transport
from routerd.providers.http1_pool import Pool
from routerd.providers.registry import build_provider
from tests.http_servers import aiohttp_server, echo, raw_server, read_request, replying

BOTH = pytest.mark.parametrize("kind", ["http1", "aiohttp"])
QUICK = Timeouts(connect=2.0, first_byte=5.0, idle=5.0, total=10.0)


def transport(
    kind: TransportKind, url: str, pool_size: int = 10, max_concurrency: int | None = None
) -> Transport:
    config = ProviderConfig(
        name="t",
        type="openai",
        base_url=url,
        api_key=None,
        headers=(),
        pool_size=pool_size,
        timeouts=QUICK,
        api_version=None,
        enabled=True,
        disabled_reason=None,
        max_concurrency=max_concurrency,
        transport=kind,
    )
    return build_provider(config).transport


def post(
    url: str, body: bytes = b"{}", timeouts: Timeouts = QUICK, **headers: str
) -> UpstreamRequest:
    return UpstreamRequest(
        "POST", url, {"Content-Type": "application/json", **headers}, body, True, timeouts
    )


async def fetch(t: Transport, request: UpstreamRequest) -> tuple[int, bytes]:
    response = await t.send(request)
    try:
        return response.status, await response.read()
    finally:
        response.release()


# --- shared behaviour ----------------------------------------------------------------------


@BOTH
async def test_content_length_body_and_headers(kind: TransportKind) -> None:
    async with aiohttp_server({"/v1/x": echo}) as (url, _):
        t = transport(kind, url)
        response = await t.send(post(f"{url}/v1/x", b'{"a":1}'))
        assert response.status == 200
        assert response.headers.get("content-type", "").startswith("application/json")
        assert response.headers["Content-Type"] == response.headers["CONTENT-TYPE"]
        assert await response.read() == b'{"got": "{\\"a\\":1}", "ua": null}'
        response.release()
        await t.close()


@BOTH
async def test_chunked_stream_arrives_in_pieces_and_connection_is_reused(
    kind: TransportKind,
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(5):
            await response.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    async with aiohttp_server({"/v1/x": stream}) as (url, peers):
        t = transport(kind, url)
        for _ in range(2):
            response = await t.send(post(f"{url}/v1/x"))
            chunks = [chunk async for chunk in response.iter_chunks()]
            response.release()
            assert b"".join(chunks) == b"".join(f"data: {i}\n\n".encode() for i in range(5))
            assert len(chunks) > 1  # relayed as they came, not buffered to the end
        assert len(peers.seen) == 1  # the fully read connection served the second request
        await t.close()


@BOTH
async def test_partly_read_stream_closes_its_connection(kind: TransportKind) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await asyncio.sleep(0.2)
        await response.write(b"second")
        return response

    async with aiohttp_server({"/v1/x": stream}) as (url, peers):
        t = transport(kind, url)
        response = await t.send(post(f"{url}/v1/x"))
        async for chunk in response.iter_chunks():
            assert chunk == b"first"
            break
        response.release()
        assert await fetch(t, post(f"{url}/v1/x")) == (200, b"firstsecond")
        assert len(peers.seen) == 2
        if isinstance(t, Http1Transport):
            assert t.in_use == 0
        await t.close()


@BOTH
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_body_is_decoded(kind: TransportKind, encoding: str) -> None:
    data = b'{"text": "' + b"abc" * 2000 + b'"}'
    packed = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)

    async def compressed(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=packed, headers={"Content-Encoding": encoding})

    async with aiohttp_server({"/v1/x": compressed}) as (url, _):
        t = transport(kind, url)
        assert await fetch(t, post(f"{url}/v1/x")) == (200, data)
        response = await t.send(post(f"{url}/v1/x"))
        assert b"".join([c async for c in response.iter_chunks()]) == data
        response.release()
        await t.close()


@BOTH
async def test_body_read_until_close(kind: TransportKind) -> None:
    handler = replying(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello ", b"world")
    async with raw_server(handler) as (url, _):
        t = transport(kind, url)
        assert await fetch(t, post(url)) == (200, b"hello world")
        await t.close()


@BOTH
async def test_interim_100_continue_is_skipped(kind: TransportKind) -> None:
    handler = replying(
        b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    async with raw_server(handler) as (url, _):
        t = transport(kind, url)
        assert await fetch(t, post(url)) == (201, b"ok")
        await t.close()


@BOTH
async def test_headers_split_across_segments(kind: TransportKind) -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Long-Header: abcdef\r\nContent-Length: 5\r\n\r\nhello"
    handler = replying(*[raw[i : i + 3] for i in range(0, len(raw), 3)])
    async with raw_server(handler) as (url, _):
        t = transport(kind, url)
        response = await t.send(post(url))
        assert response.headers["x-long-header"] == "abcdef"
        assert await response.read() == b"hello"
        response.release()
        await t.close()


@BOTH
async def test_body_cut_mid_chunk_is_a_closed_connection(kind: TransportKind) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with raw_server(replying(head, b"5\r\nhello\r\n", b"10\r\nabc")) as (url, _):
        t = transport(kind, url)
        response = await t.send(post(url))
        with pytest.raises(UpstreamError) as err:
            async for _ in response.iter_chunks():
                pass
        response.release()
        assert err.value.code is ErrorCode.provider_unavailable
        assert err.value.message == "the upstream closed the connection"
        await t.close()


@BOTH
async def test_pool_limit_queues_requests(kind: TransportKind) -> None:
    async def slow(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(0.02)
        return web.Response(body=body)

    async with aiohttp_server({"/v1/x": slow}) as (url, peers):
        t = transport(kind, url, pool_size=2)
        results = await asyncio.gather(
            *[fetch(t, post(f"{url}/v1/x", str(i).encode())) for i in range(8)]
        )
        assert results == [(200, str(i).encode()) for i in range(8)]
        assert peers.most_open <= 2
        assert len(peers.seen) <= 2
        await t.close()


@BOTH
async def test_slow_consumer_holds_back_the_upstream(kind: TransportKind) -> None:
    size, piece = 32 << 20, b"x" * (1 << 16)
    sent = {"done": False}

    async def flood(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        for _ in range(size // len(piece)):
            await response.write(piece)
        sent["done"] = True
        return response

    async with aiohttp_server({"/v1/x": flood}) as (url, _):
        t = transport(kind, url)
        response = await t.send(post(f"{url}/v1/x"))
        chunks = response.iter_chunks()
        received = len(await anext(chunks))
        await asyncio.sleep(0.3)  # routerd's client stalls: the upstream must not get through
        assert not sent["done"]
        async for chunk in chunks:
            received += len(chunk)
        assert received == size
        assert sent["done"]
        response.release()
        await t.close()


@BOTH
async def test_timeouts_before_headers_between_chunks_and_in_total(kind: TransportKind) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"tick")
            await asyncio.sleep(0.05 if request.query.get("every") else 5)
        return response

    async with aiohttp_server({"/hang": hang, "/trickle": trickle}) as (url, _):
        t = transport(kind, url)
        cases = [
            ("/hang", Timeouts(connect=2, first_byte=0.2, idle=5, total=10), "did not answer"),
            ("/trickle", Timeouts(connect=2, first_byte=2, idle=0.2, total=10), "stopped"),
            ("/trickle?every=1", Timeouts(connect=2, first_byte=2, idle=1, total=0.4), "stopped"),
        ]
        for path, timeouts, said in cases:
            with pytest.raises(UpstreamError) as err:
                response = await t.send(post(f"{url}{path}", timeouts=timeouts))
                try:
                    async for _ in response.iter_chunks():
                        pass
                finally:
                    response.release()
            assert err.value.code is ErrorCode.provider_timeout
            assert said in err.value.message
        if isinstance(t, Http1Transport):
            assert t.in_use == 0
        await t.close()


@BOTH
async def test_nothing_listening_is_cannot_connect(kind: TransportKind) -> None:
    async with raw_server(replying()) as (url, _):
        pass  # closed again: its port refuses connections now
    t = transport(kind, url)
    with pytest.raises(UpstreamError) as err:
        await t.send(post(url))
    assert err.value.code is ErrorCode.provider_unavailable
    assert err.value.message == "cannot connect to the upstream"
    await t.close()


@BOTH
async def test_max_concurrency_fails_fast_when_full(kind: TransportKind) -> None:
    gate = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(body=b"ok")

    async with aiohttp_server({"/v1/x": held}) as (url, _):
        t = transport(kind, url, max_concurrency=1)
        first = asyncio.create_task(fetch(t, post(f"{url}/v1/x")))
        await asyncio.sleep(0.05)
        with pytest.raises(UpstreamError) as err:
            await t.send(post(f"{url}/v1/x"))
        assert err.value.code is ErrorCode.provider_overloaded
        gate.set()
        assert await first == (200, b"ok")
        assert await fetch(t, post(f"{url}/v1/x")) == (200, b"ok")  # the slot came back
        await t.close()


# --- what http1 alone promises --------------------------------------------------------------


async def test_kept_alive_connection_closed_by_the_server_is_retried_once() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(ok)
        await writer.drain()
        if n == 0:  # keep-alive promised, then dropped as the next request comes in
            await read_request(reader)

    async with raw_server(handler) as (url, connections):
        t = transport("http1", url)
        assert await fetch(t, post(url)) == (200, b"ok")
        assert await fetch(t, post(url)) == (200, b"ok")
        assert len(connections) == 2
        assert isinstance(t, Http1Transport) and t.in_use == 0
        await t.close()


async def test_fresh_connection_closed_without_answer_is_not_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)

    async with raw_server(handler) as (url, connections):
        t = transport("http1", url)
        with pytest.raises(UpstreamError) as err:
            await t.send(post(url))
        assert err.value.message == "the upstream closed the connection"
        assert len(connections) == 1
        await t.close()


async def test_connection_close_answer_is_not_reused() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with raw_server(replying(ok, close=False)) as (url, connections):
        t = transport("http1", url)
        for _ in range(2):
            assert await fetch(t, post(url)) == (200, b"ok")
        assert len(connections) == 2
        assert isinstance(t, Http1Transport) and t.idle == 0
        await t.close()


async def test_line_break_in_a_header_is_refused_before_sending() -> None:
    async with raw_server(replying(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as (
        url,
        connections,
    ):
        t = transport("http1", url)
        with pytest.raises(UpstreamError) as err:
            await t.send(post(url, **{"X-Tag": "a\r\nX-Injected: 1"}))
        assert err.value.code is ErrorCode.invalid_request
        assert connections == []
        await t.close()


async def test_malformed_status_line_is_an_upstream_error() -> None:
    async with raw_server(replying(b"HTTP/1.1 abc nonsense\r\n\r\n")) as (url, _):
        t = transport("http1", url)
        with pytest.raises(UpstreamError) as err:
            await t.send(post(url))
        assert err.value.code is ErrorCode.provider_unavailable
        await t.close()


def _self_signed(tmp: Path) -> tuple[Path, Path] | None:
    """A certificate for localhost (openssl CLI), or None when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_with_a_trusted_private_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = _self_signed(tmp_path)
    if pair is None:
        pytest.skip("openssl is not installed")
    cert, key = pair
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with aiohttp_server({"/v1/x": echo}, server_ctx) as (url, _):
        untrusting = transport("http1", url)
        with pytest.raises(UpstreamError) as err:
            await untrusting.send(post(f"{url}/v1/x"))
        assert err.value.message == "cannot connect to the upstream"
        await untrusting.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        t = transport("http1", url)
        assert await fetch(t, post(f"{url}/v1/x", b"tls")) == (
            200,
            b'{"got": "tls", "ua": null}',
        )
        await t.close()


def test_under_uvloop() -> None:
    """The daemon runs on uvloop, whose transports are not asyncio's classes."""

    async def scenario() -> None:
        async with aiohttp_server({"/v1/x": echo}) as (url, peers):
            t = transport("http1", url)
            for i in range(3):
                body = str(i).encode()
                expected = b'{"got": "' + body + b'", "ua": null}'
                assert await fetch(t, post(f"{url}/v1/x", body)) == (200, expected)
            assert len(peers.seen) == 1
            await t.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_idle_connections_are_dropped_after_the_keepalive_time() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(ok)
        await writer.drain()
        assert await reader.read() == b""  # the client hung up
        closed.set()

    async with raw_server(handler) as (url, _):
        port = int(url.split(":")[2].split("/")[0])
        pool = Pool("127.0.0.1", port, None, limit=2, keepalive=0.1)
        conn = await pool.acquire(1.0)
        await conn.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while not conn.done:
            await conn.wait_body()
        assert conn.take() == b"ok"
        pool.release(conn, conn.finish())
        assert pool.idle == 1
        async with asyncio.timeout(5):
            await closed.wait()
        assert pool.idle == 0 and pool.in_use == 0


@pytest.mark.parametrize(
    ("extra", "accepted"),
    [
        ({"headers": {"X-Tag": "a\r\nX-Injected: 1"}}, False),
        ({"headers": {"Bad Name": "v"}}, False),
        ({"transport": "carrier-pigeon"}, False),
        ({"transport": "aiohttp", "headers": {"X-Tag": "v"}}, True),
    ],
)
def test_provider_file_refuses_line_breaks_and_names_the_transport(
    tmp_path: Path, extra: dict[str, object], accepted: bool
) -> None:
    doc = {
        "providers": {"p": {"type": "openai", "base_url": "http://127.0.0.1:1", **extra}},
        "models": {
            "p/m": {
                "pricing": {"prompt": 1, "completion": 1},
                "deployments": [{"provider": "p", "model": "m"}],
            }
        },
    }
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(doc))
    if not accepted:
        with pytest.raises(ConfigError):
            load_catalog(path, Timeouts())
        return
    catalog, _ = load_catalog(path, Timeouts())
    assert catalog.providers["p"].transport == "aiohttp"
    assert isinstance(build_provider(catalog.providers["p"]).transport, AiohttpTransport)


@BOTH
async def test_endless_headers_are_refused(kind: TransportKind) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(200)
    )
    async with raw_server(replying(head, close=False)) as (url, _):
        t = transport(kind, url)
        with pytest.raises(UpstreamError) as err:
            await t.send(post(url))
        assert err.value.code is ErrorCode.provider_unavailable
        await t.close()


async def test_cancelled_requests_give_back_their_connections() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(3):
            await response.write(b"part")
            await asyncio.sleep(0.03)
        return response

    async with aiohttp_server({"/v1/x": slow}) as (url, peers):
        t = transport("http1", url, pool_size=3)
        assert isinstance(t, Http1Transport)

        async def one() -> None:
            response = await t.send(post(f"{url}/v1/x"))
            try:
                async for _ in response.iter_chunks():
                    pass
            finally:
                response.release()

        tasks = [asyncio.create_task(one()) for _ in range(24)]
        for i, task in enumerate(tasks):  # some waiting for the pool, some mid-body
            if i % 2:
                await asyncio.sleep(0.01)
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert 0 < sum(task.cancelled() for task in tasks) < len(tasks)
        assert t.in_use == 0
        assert peers.most_open <= 3
        assert await fetch(t, post(f"{url}/v1/x")) == (200, b"partpartpart")
        await t.close()


@BOTH
async def test_idle_connection_the_server_closed_is_not_reused(kind: TransportKind) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # keep-alive promised, then closed
    async with raw_server(replying(ok)) as (url, connections):
        t = transport(kind, url)
        for _ in range(3):
            assert await fetch(t, post(url)) == (200, b"ok")
            await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        assert len(connections) == 3
        if isinstance(t, Http1Transport):
            assert t.in_use == 0
        await t.close()


async def test_adapter_headers_encoded_at_load_and_forwarded_ones_per_request() -> None:
    """An adapter's fixed headers go out as encoded once at load; a request that forwards
    client headers (anthropic-beta) sends those and the fixed ones, each exactly once."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(handler) as (url, _):
        config = ProviderConfig(
            name="t",
            type="anthropic",
            base_url=url,
            api_key="sk-up",
            headers=(("X-Team", "blue"),),
            pool_size=2,
            timeouts=QUICK,
            api_version=None,
            enabled=True,
            disabled_reason=None,
        )
        provider = build_provider(config)
        plain = provider.adapter.build_request("m", {"max_tokens": 1}, False)
        assert plain.wire_headers is not None
        forwarding = provider.adapter.build_request(
            "m", {"max_tokens": 1}, False, {"anthropic-beta": "tools-2024"}
        )
        for request in (plain, forwarding):
            request.timeouts = QUICK
            assert await fetch(provider.transport, request) == (200, b"ok")
        await provider.transport.close()
    lines = [head.split(b"\r\n\r\n")[0].lower().split(b"\r\n") for head in seen]
    for got in lines:
        assert got[0].startswith(b"post ") and got[0].endswith(b"/messages http/1.1")
        for header in (b"x-team: blue", b"x-api-key: sk-up", b"accept-encoding: gzip, deflate"):
            assert got.count(header) == 1, got
    assert b"anthropic-beta: tools-2024" in lines[1]
    assert b"anthropic-beta: tools-2024" not in lines[0]


async def test_one_connection_keeps_each_exchanges_own_first_byte_limit() -> None:
    """The header limit is one re-armed timer per connection: on one kept-alive connection a
    later, longer limit is not cut short by an earlier one, and an earlier, shorter limit is
    not pushed out to a longer one armed before it."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    delays = [0.0, 0.6, 0.0, 30.0]  # the server's wait before each answer, in order

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for delay in delays:
            await read_request(reader)
            await asyncio.sleep(delay)
            writer.write(ok)
            await writer.drain()

    def limit(first_byte: float) -> Timeouts:
        return Timeouts(connect=2, first_byte=first_byte, idle=60, total=60)

    async with raw_server(handler) as (url, connections):
        t = transport("http1", url)
        assert await fetch(t, post(url, timeouts=limit(0.2))) == (200, b"ok")
        assert await fetch(t, post(url, timeouts=limit(20))) == (200, b"ok")  # past 0.2 s
        assert await fetch(t, post(url, timeouts=limit(50))) == (200, b"ok")
        async with asyncio.timeout(10):  # the 20 s and 50 s timers must not serve this one
            with pytest.raises(UpstreamError) as err:
                await fetch(t, post(url, timeouts=limit(0.3)))
        assert err.value.code is ErrorCode.provider_timeout
        assert connections == [0]
        assert isinstance(t, Http1Transport) and t.in_use == 0
        await t.close()
