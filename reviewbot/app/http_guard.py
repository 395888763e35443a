"""Connection-level limits for `reviewbot serve`: what uvicorn does not bound by itself.

uvicorn closes idle keep-alive connections, but a connection that sends its request head one byte
at a time (or nothing at all) is held forever, and there is no cap on open connections: 600 slow
connections held the server for minutes and 1,100 half-open ones made signed deliveries fail.
`guarded_http` returns uvicorn's httptools protocol (C parser; h11, pure Python, when httptools
is not installed) with
- a header deadline: the request head must be complete `header_timeout` seconds after the
  connection opened (or after the previous response), trickled bytes do not extend it;
- a connection cap: beyond `max_connections` open connections a new one is closed at once, so
  file descriptors and memory stay bounded and the deadline frees the slots of slow senders.

The body deadline and size cap are the app's (reviewbot.app.server); keep-alive is uvicorn's
`timeout_keep_alive`. A reverse proxy in front should enforce the same (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # GitHub sends a delivery in one go and gives up after 10 s
MAX_CONNECTIONS = 256
KEEP_ALIVE_TIMEOUT = 5.0


def _guard(
    base: type[asyncio.Protocol], header_timeout: float, max_connections: int
) -> type[asyncio.Protocol]:
    """`base` (one of uvicorn's HTTP/1.1 protocols) with a header deadline and a connection cap.

    Both of uvicorn's protocols set `self.cycle` when a request head is complete and call
    `on_response_complete` when a response is sent, so one subclass body serves both."""
    base_any: Any = base

    class Guarded(base_any):
        _head_timer: asyncio.TimerHandle | None = None
        _waiting_after: Any = None  # the cycle the deadline was armed after (None: a new connection)

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                log.warning("connection cap (%d) reached: closing a new connection", max_connections)
                transport.abort()
                return
            self._arm(None)

        def _arm(self, after: Any) -> None:
            self._disarm()
            self._waiting_after = after
            self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.cycle is self._waiting_after and not self.transport.is_closing():
                log.info("request head not received within %ss: closing the connection", header_timeout)
                self.transport.abort()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not self._waiting_after:
                self._disarm()  # a request head arrived: the app's turn now

        def on_response_complete(self) -> None:
            super().on_response_complete()
            cycle = self.cycle
            # httptools has already parsed a pipelined head into `self.cycle`: no deadline while
            # that one runs (its own response re-arms it)
            if cycle is not None and cycle.response_complete and not self.transport.is_closing():
                self._arm(cycle)  # the next request head (keep-alive) has the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    Guarded.__name__ = Guarded.__qualname__ = "Guarded" + base.__name__
    return Guarded


def guarded_h11(
    *, header_timeout: float = HEADER_TIMEOUT, max_connections: int = MAX_CONNECTIONS
) -> type[asyncio.Protocol]:
    """uvicorn's pure-Python h11 protocol, guarded (pass as `http=`): the fallback."""
    return _guard(H11Protocol, header_timeout, max_connections)


def guarded_httptools(
    *, header_timeout: float = HEADER_TIMEOUT, max_connections: int = MAX_CONNECTIONS
) -> type[asyncio.Protocol]:
    """uvicorn's httptools (C parser) protocol, guarded; ImportError when httptools is missing."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return _guard(HttpToolsProtocol, header_timeout, max_connections)


def guarded_http(
    *, header_timeout: float = HEADER_TIMEOUT, max_connections: int = MAX_CONNECTIONS
) -> type[asyncio.Protocol]:
    """The fastest guarded protocol available: httptools (~2x the acks/s of h11), else h11."""
    try:
        return guarded_httptools(header_timeout=header_timeout, max_connections=max_connections)
    except ImportError:
        return guarded_h11(header_timeout=header_timeout, max_connections=max_connections)
