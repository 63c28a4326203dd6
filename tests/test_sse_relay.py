"""Passthrough frame checks: good frames before a malformed one are still relayed, then the
stream fails with provider_unavailable; multi-line Anthropic events and comments pass."""

from __future__ import annotations

import pytest

from routerd.providers.base import UpstreamError
from routerd.server.sse_relay import CheckedFrames, frame_json

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
