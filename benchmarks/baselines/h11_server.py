"""Baseline: the guest's hello-world reply from uvloop + h11, as a Python user would write it.

Run: ``python benchmarks/baselines/h11_server.py --port N`` (0 lets the OS pick). One
``h11.Connection`` per transport handles keep-alive, pipelining and ``Connection: close``.
"""

from __future__ import annotations

import asyncio
from typing import cast

import h11
from common import BODY, HEADERS, serve


class H11Protocol(asyncio.Protocol):
    """One HTTP/1.1 connection: bytes in, h11 events, bytes out."""

    def __init__(self) -> None:
        self.conn = h11.Connection(h11.SERVER)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._handle_events()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._handle_events()
        return False

    def pause_writing(self) -> None:
        """A client that pipelines without reading gets no more replies queued than the buffer holds."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def _handle_events(self) -> None:
        while not self.transport.is_closing():
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()  # malformed request; the benchmark never sends one
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                self.conn.start_next_cycle()  # a pipelined request is waiting in h11's buffer
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()

    def _respond(self) -> None:
        data = self.conn.send(h11.Response(status_code=200, reason=b"OK", headers=HEADERS))
        data += self.conn.send(h11.Data(data=BODY))
        data += self.conn.send(h11.EndOfMessage())
        if self.conn.our_state is h11.MUST_CLOSE:
            # h11 adds this header title-cased; the guest's bytes spell it in lowercase.
            self.transport.write(data.replace(b"\r\nConnection: close\r\n", b"\r\nconnection: close\r\n", 1))
            self.transport.close()
        else:
            self.transport.write(data)


if __name__ == "__main__":
    serve(H11Protocol, __doc__)
