"""The incremental SSE parser and frame encoder (routerd.formats.sse)."""

from __future__ import annotations

from pathlib import Path

import pytest

from routerd.formats.sse import DONE, SSEEvent, SSEParser, encode_frame

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


def parse_all(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def test_event_and_data_fields() -> None:
    events = parse_all([b'event: message_start\ndata: {"a": 1}\n\n'])
    assert events == [SSEEvent(data='{"a": 1}', event="message_start")]
    assert events[0].json() == {"a": 1}


def test_data_only_frames_and_done() -> None:
    events = parse_all([b"data: {}\n\ndata: [DONE]\n\n"])
    assert [e.data for e in events] == ["{}", "[DONE]"]
    assert all(e.event is None for e in events)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings(newline: bytes) -> None:
    raw = b"event: x" + newline + b"data: 1" + newline + newline + b"data: 2" + newline + newline
    events = parse_all([raw])
    assert [(e.event, e.data) for e in events] == [("x", "1"), (None, "2")]


def test_multiline_data_comments_and_no_space() -> None:
    raw = b": keep-alive\nid: 7\nretry: 1500\ndata:line1\ndata: line2\n\n"
    (event,) = parse_all([raw])
    assert event.data == "line1\nline2"
    assert event.id == "7"
    assert event.retry == 1500


def test_every_split_point_gives_the_same_events() -> None:
    raw = (FIXTURES / "anthropic_stream_thinking_tool.sse").read_bytes().replace(b"\n", b"\r\n")
    whole = parse_all([raw])
    assert len(whole) == 18
    for cut in range(0, len(raw), 37):
        assert parse_all([raw[:cut], raw[cut:]]) == whole
    assert parse_all([bytes([b]) for b in raw]) == whole


def test_crlf_split_between_cr_and_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\n") == [SSEEvent(data="a")]


def test_utf8_split_across_feeds() -> None:
    raw = 'data: {"t": "héllo ✓"}\n\n'.encode()
    cut = raw.index("✓".encode()) + 1
    assert parse_all([raw[:cut], raw[cut:]])[0].json() == {"t": "héllo ✓"}


def test_unterminated_event_is_discarded_and_bom_skipped() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb\xbfdata: 1\n\ndata: 2") == [SSEEvent(data="1")]
    assert parser.close() == []


def test_event_without_data_is_not_dispatched() -> None:
    assert parse_all([b"event: ping\n\n"]) == []


def test_encode_frames_round_trip() -> None:
    frame = encode_frame({"type": "ping"}, "ping")
    assert frame == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert encode_frame({"x": "a\nb"}) == b'data: {"x":"a\\nb"}\n\n'
    assert encode_frame("line1\nline2") == b"data: line1\ndata: line2\n\n"
    assert DONE == b"data: [DONE]\n\n"
    events = parse_all([frame, encode_frame("line1\nline2"), DONE])
    assert [e.data for e in events] == ['{"type":"ping"}', "line1\nline2", "[DONE]"]
