"""The end of an upstream SSE body: a missing closing blank line is tolerated, a cut-off event
is a provider failure (so the client gets an error event, never half an event)."""

from __future__ import annotations

import pytest

from routerd.errors import ErrorCode
from routerd.providers.base import UpstreamError
from routerd.server.sse_relay import FrameSplitter


def split(body: bytes) -> tuple[list[bytes], bytes]:
    splitter = FrameSplitter()
    frames = list(splitter.feed(body))
    return frames, splitter.finish()


def test_whole_frames_and_a_final_frame_without_its_blank_line() -> None:
    assert split(b'data: {"a": 1}\n\ndata: [DONE]\n\n') == (
        [b'data: {"a": 1}\n\n', b"data: [DONE]\n\n"],
        b"",
    )
    assert split(b'data: {"a": 1}\n\ndata: [DONE]\n') == (
        [b'data: {"a": 1}\n\n'],
        b"data: [DONE]\n\n",
    )
    assert split(b'data: {"a": 1}\r\n') == ([], b'data: {"a": 1}\n\n')


@pytest.mark.parametrize(
    "tail", [b'data: {"id": "x", "choi', b"event: message_delta\n", b"data: [DO"]
)
def test_an_event_cut_off_mid_line_is_a_provider_failure(tail: bytes) -> None:
    splitter = FrameSplitter()
    list(splitter.feed(b'data: {"a": 1}\n\n' + tail))
    with pytest.raises(UpstreamError) as caught:
        splitter.finish()
    assert caught.value.code is ErrorCode.provider_unavailable
