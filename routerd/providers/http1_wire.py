"""The header lines of an HTTP/1.1 request as http1 writes them, encoded once.

`header_block` turns a header mapping into the bytes that follow a request's Content-Length
line: Accept-Encoding (`gzip, deflate`, like aiohttp) unless the mapping sets its own, the
headers, and the blank line that ends the head. An adapter encodes its fixed headers once at
load (`UpstreamRequest.wire_headers`); the transport encodes per request only the headers a
request adds (forwarded client headers). A header with a line break has no block (None): the
transport refuses such a request, never sends it.
"""

from __future__ import annotations

from collections.abc import Mapping

ACCEPT = "Accept-Encoding: gzip, deflate\r\n"


def header_block(headers: Mapping[str, str]) -> bytes | None:
    """The encoded header lines (with the closing blank line), or None for a line break."""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)
    if lines.count("\n") != count or lines.count("\r") != count:
        return None
    accept = "" if "\naccept-encoding:" in f"\n{lines.lower()}" else ACCEPT
    return f"{accept}{lines}\r\n".encode()
