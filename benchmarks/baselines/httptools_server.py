"""Baseline: the guest's hello-world reply from uvloop + httptools, as a Python user would write it.

Run: ``python benchmarks/baselines/httptools_server.py --port N`` (0 lets the OS pick).
``HttpRequestParser`` calls back once per complete request, so pipelining needs no extra code.
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools
from common import reply, serve


class HttptoolsProtocol(asyncio.Protocol):
    """One HTTP/1.x connection; the parser calls ``on_message_complete`` per request."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # the benchmark sends neither
            self.transport.close()

    def pause_writing(self) -> None:
        """A client that pipelines without reading gets no more replies queued than the buffer holds."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def on_message_complete(self) -> None:
        if self.transport.is_closing():
            return  # pipelined after a "Connection: close" request
        keep_alive = self.parser.should_keep_alive()
        self.transport.write(reply(keep_alive, self.parser.get_http_version() == "1.0"))
        if not keep_alive:
            self.transport.close()


if __name__ == "__main__":
    serve(HttptoolsProtocol, __doc__)
