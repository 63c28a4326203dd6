"""Passthrough frame checks: good frames before a malformed one are still relayed, then the
stream fails with provider_unavailable; multi-line Anthropic events and comments pass."""

from __future__ import annotations

import pytest

from routerd.metering.usage import Usage
from routerd.providers.base import UpstreamError
from routerd.server.context import RequestContext
from routerd.server.sse_relay import ChatUsageFilter, CheckedFrames, FrameSplitter, frame_json

GOOD = b'data: {"id":"x","choices":[]}\n\n'
EVENT = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":3}}\n\n'


def test_frames_are_parsed_once_and_comments_and_done_pass() -> None:
    assert frame_json(GOOD) == {"id": "x", "choices": []}
    assert frame_json(EVENT) == {"type": "message_delta", "usage": {"output_tokens": 3}}
    assert frame_json(b"data: [DONE]\n\n") is None
    assert frame_json(b": OPENROUTER PROCESSING\n\n") is None


def test_good_frames_before_a_malformed_one_are_relayed_then_the_stream_fails() -> None:
    frames = CheckedFrames()
    out = frames.feed(GOOD + EVENT[:30])
    assert [f for f, _ in out] == [GOOD]
    out = frames.feed(EVENT[30:] + b"data: {not json\n\n" + GOOD)
    assert [f for f, _ in out] == [EVENT]
    with pytest.raises(UpstreamError) as caught:
        frames.feed(GOOD)
    assert caught.value.code.name == "provider_unavailable"
    assert "malformed stream frame" in caught.value.message


def test_a_malformed_first_frame_fails_at_once() -> None:
    with pytest.raises(UpstreamError):
        CheckedFrames().feed(b"event: x\ndata: {oops\n\n")


def _ctx() -> RequestContext:
    return RequestContext("req", "chat_completions", None)  # type: ignore[arg-type]  # no table needed


CHUNK = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
USAGE_ONLY = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'


def _relay(reads: list[bytes], wants_usage: bool) -> tuple[bytes, object]:
    ctx = _ctx()
    chat = ChatUsageFilter(ctx, wants_usage)
    out = b"".join(chat.feed(read) for read in reads) + chat.finish()
    return out, ctx.usage


@pytest.mark.parametrize("wants_usage", [False, True])
def test_chat_filter_relays_whole_frames_of_any_read_and_takes_usage(wants_usage: bool) -> None:
    stream = CHUNK * 3 + b": keep-alive\n\n" + USAGE_ONLY + b"data: [DONE]\n\n"
    expected = stream if wants_usage else stream.replace(USAGE_ONLY, b"")
    for size in (1, 7, 64, len(stream)):
        reads = [stream[i : i + size] for i in range(0, len(stream), size)]
        out, usage = _relay(reads, wants_usage)
        assert out == expected
        assert usage == Usage(prompt_tokens=3, completion_tokens=2)


def test_chat_filter_relays_good_frames_of_a_read_then_fails_on_a_malformed_one() -> None:
    chat = ChatUsageFilter(_ctx(), False)
    assert chat.feed(CHUNK + CHUNK[:20]) == CHUNK
    assert chat.feed(CHUNK[20:] + b'data: {"id": "x", "choi}\n\n' + CHUNK) == CHUNK
    with pytest.raises(UpstreamError) as caught:
        chat.feed(CHUNK)
    assert "malformed stream frame" in caught.value.message
    with pytest.raises(UpstreamError):
        ChatUsageFilter(_ctx(), False).feed(b"data: {oops}\n\n" + CHUNK)


def test_chat_filter_drops_the_usage_chunk_inside_a_read_with_crlf_or_a_bad_frame_after() -> None:
    crlf = (CHUNK + USAGE_ONLY + b"data: [DONE]\n\n").replace(b"\n", b"\r\n")
    out, usage = _relay([crlf], False)
    assert out == (CHUNK + b"data: [DONE]\n\n")
    assert usage == Usage(prompt_tokens=3, completion_tokens=2)
    chat = ChatUsageFilter(_ctx(), False)
    assert chat.feed(CHUNK + USAGE_ONLY + b"data: {oops}\n\n" + CHUNK) == CHUNK
    with pytest.raises(UpstreamError):
        chat.feed(CHUNK)


def test_splitter_frames_match_feed_for_any_read_size() -> None:
    stream = CHUNK + b"x\n\n" + b"\n\n" + EVENT + b"data: a\r\n\r\n" + CHUNK + b"data: [DONE]\n\n"
    for size in range(1, len(stream) + 1):
        reads = [stream[i : i + size] for i in range(0, len(stream), size)]
        fast, slow = FrameSplitter(), FrameSplitter()
        got = [frame for read in reads for frame in fast.frames(read)]
        assert got == [frame for read in reads for frame in slow.feed(read)]
        assert fast.finish() == slow.finish()
