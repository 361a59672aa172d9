"""
The stand-in's HTTP transport: a threaded HTTP/1.1 server on the standard library.

It knows nothing about Asana: each request is handed to an application callable, which returns a
:class:`~airflow_provider_asana_audit.testing.responses.Response` to send, to truncate or to drop.
Every connection gets its own thread, so slow answers overlap, and :meth:`HttpServer.stop` closes
every open connection and joins every thread.

Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_asana_audit.testing.responses import Response

__all__ = ["App", "HttpServer"]

#: Answers one request: ``app(method, target, headers) -> Response``.
App = Callable[[str, str, Iterable[tuple[str, str]]], Response]


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections so it can close them all on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App, verbose: bool) -> None:
        self.app = app
        self.verbose = verbose
        self._active: dict[threading.Thread, socket.socket] = {}
        self._active_lock = threading.Lock()
        self.connections = 0
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-asana-conn-{client_address[1]}",
            daemon=True,
        )
        with self._active_lock:
            self._active[thread] = request
            self.connections += 1
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if self.verbose and not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut every open connection down and wait for their threads to end."""
        with self._active_lock:
            active = dict(self._active)
        for sock in active.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in active:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAsana/1.0"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    # http.server writes the headers and the body separately; with Nagle's algorithm on, a keep-alive
    # client's delayed ACK then stalls every response by about 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        response = self.server.app(self.command, self.path, self.headers.items())
        if response.drop:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body[: len(response.body) // 2] if response.truncate else response.body)
        self.wfile.flush()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET


class HttpServer:
    """
    Serves an application over HTTP in background threads; restartable.

    :param app: answers each request.
    :param host: the interface to listen on.
    :param port: the port; 0 picks a free one.
    :param verbose: log every request and every error to stderr.
    """

    def __init__(self, app: App, *, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.verbose = verbose
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and serve in a background thread; no-op when already serving."""
        with self._lock:
            if self._server is not None:
                return
            server = _Server((self.host, self.port), self.app, self.verbose)
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-asana", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop listening, close every connection and join every thread; idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join()

    @property
    def connections(self) -> int:
        """Client connections accepted since the last :meth:`start`."""
        server = self._server
        return 0 if server is None else server.connections

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>`` actually listened on; :class:`RuntimeError` when not serving."""
        server = self._server
        if server is None:
            raise RuntimeError("FakeAsana is not running; call start() or use it as a context manager")
        host, port = server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"
