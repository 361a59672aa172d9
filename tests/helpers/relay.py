"""
A tiny HTTP relay on 127.0.0.1 in front of the stand-in: an HTTP proxy, or a gateway that can refuse.

It forwards each request to the stand-in and sends the answer back, counting requests and client
connections. As an HTTP proxy (``HTTP_PROXY=relay.url``) it receives absolute URLs; as a gateway
(the client's base URL is ``relay.base_url``) it receives paths and forwards them to ``target``.
``refuse`` lets a test answer chosen requests itself, e.g. with a 401 part-way through a read.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Relay"]

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


class Relay:
    """
    Forward requests to the stand-in at ``target`` (``http://127.0.0.1:<port>``).

    :param target: the origin requests without a host are forwarded to.
    :param refuse: given a request's full URL, the status to answer it with instead (Asana's error
        envelope), or ``None`` to forward it.
    """

    def __init__(self, target: str, *, refuse: Callable[[str], int | None] | None = None) -> None:
        self.target = target.rstrip("/")
        self.refuse = refuse
        self.urls: list[str] = []
        self.refused: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="relay", daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the proxy URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The API base URL through this relay used as a gateway."""
        return f"{self.url}/api/1.0"

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _record(self, url: str, refused: bool) -> None:
        with self._lock:
            (self.refused if refused else self.urls).append(url)

    def _connected(self) -> None:
        with self._lock:
            self.connections += 1


def _handler_for(relay: Relay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in separate writes

        def setup(self) -> None:
            super().setup()
            relay._connected()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = self.path if self.path.startswith("http://") else relay.target + self.path
            status = relay.refuse(url) if relay.refuse is not None else None
            relay._record(url, status is not None)
            if status is not None:
                body = json.dumps({"errors": [{"message": "Not Authorized"}]}).encode()
                self._answer(status, {"Content-Type": "application/json; charset=UTF-8"}, body)
                return
            parts = urlsplit(url)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = http.client.HTTPConnection(parts.netloc, timeout=30)
            try:
                upstream.request("GET", f"{parts.path}?{parts.query}", headers=headers)
                response = upstream.getresponse()
                body = response.read()
                kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                self._answer(response.status, kept, body)
            finally:
                upstream.close()

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
