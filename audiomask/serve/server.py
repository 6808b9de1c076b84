"""How ``audiomask serve`` runs the app with uvicorn: :func:`uvicorn_config` (open
connections capped, WebSocket frames capped at the app's ``max_bytes``, a deadline on request
headers) and the h11 protocol that enforces that deadline.

uvicorn bounds a request body only through the app (``read_timeout`` in
:func:`audiomask.serve.app.create_app`) and has no deadline on request headers, so a client
sending its headers a byte at a time would hold a connection for ever; with connections capped,
a few such clients would lock everyone out. :class:`HeaderDeadlineH11Protocol` closes a
connection whose request line and headers have not arrived in full within the deadline (counted
from the connection's start, and again from the end of each response on a kept-alive one).
"""

from __future__ import annotations

import asyncio
import functools

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers are late."""

    def __init__(self, *args, header_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # a kept-alive connection: the next request's headers

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        upgraded = self.transport.get_protocol() is not self  # a WebSocket now: not ours
        if not upgraded and not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()  # no request (or only part of its headers) in time


def uvicorn_config(app, host: str, port: int, max_connections: int = 32, log_level: str = "info") -> uvicorn.Config:
    """The ``uvicorn.Config`` that ``audiomask serve`` runs ``app`` (from
    :func:`audiomask.serve.app.create_app`) with: at most ``max_connections`` open connections
    (more requests get 503), WebSocket frames up to the app's ``max_bytes`` (a larger one closes
    the stream with 1009), and request headers due within the app's ``read_timeout``."""
    if not max_connections > 0:
        raise ValueError(f"max_connections must be > 0, got {max_connections}")
    limits = app.state.limits
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, limit_concurrency=int(max_connections),
                          ws_max_size=limits.max_bytes,
                          http=functools.partial(HeaderDeadlineH11Protocol, header_timeout=limits.read_timeout))
