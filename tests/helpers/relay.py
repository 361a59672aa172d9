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
from collections.abc import Callable, Iterable
from types import TracebackType
from urllib.parse import urlsplit

from airflow_provider_asana_audit.testing.responses import Response
from airflow_provider_asana_audit.testing.server import HttpServer

__all__ = ["Relay"]

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
# The relay's own server writes these itself.
_OWN = {"content-type", "content-length", "server", "date"}


class Relay:
    """
    Forward requests to the stand-in at ``target`` (``http://127.0.0.1:<port>``).

    It is an application of the stand-in's HTTP transport, which also counts the client connections.

    :param target: the origin requests without a host are forwarded to.
    :param refuse: given a request's full URL, the status to answer it with instead (Asana's error
        envelope), or ``None`` to forward it.
    """

    def __init__(self, target: str, *, refuse: Callable[[str], int | None] | None = None) -> None:
        self.target = target.rstrip("/")
        self.refuse = refuse
        self.urls: list[str] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._http = HttpServer(self._forward)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the proxy URL."""
        return self._http.base_url

    @property
    def base_url(self) -> str:
        """The API base URL through this relay used as a gateway."""
        return f"{self.url}/api/1.0"

    @property
    def connections(self) -> int:
        """Client connections accepted so far."""
        return self._http.connections

    def __enter__(self) -> Relay:
        self._http.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.stop()

    def _forward(self, method: str, target: str, headers: Iterable[tuple[str, str]]) -> Response:
        url = target if target.startswith("http://") else self.target + target
        status = self.refuse(url) if self.refuse is not None else None
        with self._lock:
            (self.refused if status is not None else self.urls).append(url)
        if status is not None:
            return Response(status, json.dumps({"errors": [{"message": "Not Authorized"}]}).encode())
        parts = urlsplit(url)
        upstream = http.client.HTTPConnection(parts.netloc, timeout=30)
        try:
            sent = {name: value for name, value in headers if name.lower() not in _HOP_BY_HOP}
            upstream.request(method, f"{parts.path}?{parts.query}", headers=sent)
            answer = upstream.getresponse()
            body = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP | _OWN}
            content_type = answer.getheader("Content-Type", "application/octet-stream")
            return Response(answer.status, body, content_type, kept)
        finally:
            upstream.close()
