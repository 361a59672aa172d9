"""The HTTP transport: what goes over the wire, connections, and a clean stop."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator

import pytest
import requests

from airflow_provider_asana_audit.testing import FakeAsana, Fault
from airflow_provider_asana_audit.testing.responses import Response
from airflow_provider_asana_audit.testing.server import HttpServer, _Handler

from .support import NaiveClient, wait_until


class EchoApp:
    """An application that answers with what it was asked, and remembers it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, method: str, target: str, headers: Iterable[tuple[str, str]]) -> Response:
        self.seen.append((method, target, dict(headers)))
        if target == "/drop":
            return Response(0, drop=True)
        body = json.dumps({"method": method, "target": target}).encode()
        return Response(201, body, headers={"X-Echo": "yes"}, truncate=target == "/truncate")


@pytest.fixture
def echo() -> Iterator[tuple[HttpServer, EchoApp]]:
    app = EchoApp()
    server = HttpServer(app)
    server.start()
    try:
        yield server, app
    finally:
        server.stop()


def test_the_app_gets_method_target_and_headers(echo: tuple[HttpServer, EchoApp]) -> None:
    server, app = echo
    response = requests.put(f"{server.base_url}/a?b=1", headers={"X-Test": "t"}, timeout=10)
    assert response.status_code == 201
    assert response.json() == {"method": "PUT", "target": "/a?b=1"}
    assert response.headers["X-Echo"] == "yes"
    ((method, target, headers),) = app.seen
    assert (method, target, headers["X-Test"]) == ("PUT", "/a?b=1", "t")


def test_the_server_counts_client_connections_not_requests(echo: tuple[HttpServer, EchoApp]) -> None:
    server, app = echo
    assert server.connections == 0
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(f"{server.base_url}/a", timeout=10).status_code == 201
    assert requests.get(f"{server.base_url}/b", timeout=10).status_code == 201
    assert (len(app.seen), server.connections) == (4, 2)
    server.stop()
    assert server.connections == 0


def test_a_dropped_request_gets_no_response(echo: tuple[HttpServer, EchoApp]) -> None:
    server, _app = echo
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base_url}/drop", timeout=10)


def test_a_truncated_response_announces_the_full_length(echo: tuple[HttpServer, EchoApp]) -> None:
    server, _app = echo
    with socket.create_connection((server.host, int(server.base_url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(b"GET /truncate HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # the server closes after the half body
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    assert b"Connection: close" in head
    assert len(body) == length // 2


def test_responses_are_utf8_json_with_their_length(client: NaiveClient) -> None:
    for response in (client.get(limit=100), client.get(limit=0)):
        assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert int(response.headers["Content-Length"]) == len(response.content)
        assert json.loads(response.content.decode("utf-8")) == response.json()


def test_the_server_names_itself(client: NaiveClient) -> None:
    assert client.get(limit=1).headers["Server"] == "FakeAsana/1.0"


def test_connections_are_kept_alive(fake: FakeAsana) -> None:
    port = fake.bound_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(b"GET /users/me HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            length = int(
                next(
                    line.split(b":")[1] for line in head.split(b"\r\n") if line.startswith(b"Content-Length")
                )
            )
            body = b""
            while len(body) < length:
                body += sock.recv(length - len(body))
            assert head.startswith(b"HTTP/1.1 404")
    assert fake.stats.requests == 3


def test_nagles_algorithm_is_off() -> None:
    # http.server writes headers and body separately: with Nagle on, delayed ACKs stall keep-alive
    # clients by about 40 ms a response, which would make the stand-in useless for throughput figures.
    assert _Handler.disable_nagle_algorithm is True


def test_base_url_needs_a_running_server() -> None:
    server = HttpServer(EchoApp())
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url


def test_a_stopped_server_starts_again(echo: tuple[HttpServer, EchoApp]) -> None:
    server, _app = echo
    server.stop()
    server.start()
    assert requests.get(f"{server.base_url}/again", timeout=10).status_code == 201


def test_stop_is_idempotent_closes_connections_and_leaves_no_threads() -> None:
    before = set(threading.enumerate())
    fake = FakeAsana(seed=3, events_per_day=10).start()
    kept_open = NaiveClient(fake)
    kept_open.get()  # a keep-alive connection the client never closes
    fake.inject(Fault.SLOW, delay=30)
    outcome: list[object] = []

    def slow_request() -> None:
        try:
            outcome.append(kept_open.get().status_code)
        except requests.RequestException as exc:  # the connection is closed under it
            outcome.append(exc)

    slow = threading.Thread(target=slow_request)
    slow.start()
    wait_until(lambda: fake.stats.requests == 2, message="the slow request arrived")
    began = time.monotonic()
    fake.stop()
    fake.stop()
    slow.join(10)
    assert time.monotonic() - began < 10  # not the 30 s of the SLOW fault
    assert len(outcome) == 1
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
