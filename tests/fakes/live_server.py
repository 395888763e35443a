"""Run an ASGI app (the real FastAPI server or dashboard) with uvicorn on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server started in another process (which may lose it
    to a race; in-process servers use LiveServer, which keeps the socket bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn on 127.0.0.1:<free port> in a background thread; use as a context manager.

    The socket is bound here and handed to uvicorn, so no other process can take the port between
    choosing it and serving on it.
    """

    def __init__(self, app: Any, **config_kw: Any) -> None:
        """`config_kw` go to uvicorn.Config (e.g. `http=guarded_h11(...)`, `timeout_keep_alive`)."""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", **config_kw)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited before it started"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
