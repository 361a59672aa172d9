"""
The client's HTTP layer: the environment is read once and still honoured; requests go out as before.

The client resolves the proxy and CA bundle variables once, when it is made, instead of letting
``requests`` look them up on every request. These tests check, through real connections on
127.0.0.1, that the variables still take effect (a relay counts what passes through it as a
proxy), that each read keeps its connections open from page to page, and that the URLs are the
ones ``requests`` builds.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from airflow_provider_asana_audit.query import AuditLogQuery
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.transport import Transport, decode
from tests.helpers.clients import T0, make_client
from tests.helpers.relay import Relay

# A busy day (about 12 pages of 50), so that a read keeps its connections from page to page.
pytestmark = pytest.mark.standin(seed=12, start=T0, end=T0 + timedelta(days=1), events_per_day=600)
WINDOW = AuditLogQuery(start_at=T0, end_at=T0 + timedelta(days=1), page_size=50)
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy or CA bundle variable set, in either case, whatever the machine has."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY", "http_proxy"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_proxy_from_the_environment_carries_every_request(
    fake: FakeAsana, clean_env: pytest.MonkeyPatch, variable: str, concurrency: int
) -> None:
    with Relay(fake.base_url) as proxy:
        clean_env.setenv(variable, proxy.url)
        client = make_client(fake)
        events = list(client.iter_events(WINDOW, concurrency=concurrency))
        assert events == fake.ground_truth(T0, T0 + timedelta(days=1))
        assert len(proxy.urls) == fake.stats.requests > 1  # every request went through the proxy
        assert all(url.startswith(fake.base_url) for url in proxy.urls)


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "localhost,127.0.0.1"])
def test_no_proxy_is_honoured(fake: FakeAsana, clean_env: pytest.MonkeyPatch, no_proxy: str) -> None:
    with Relay(fake.base_url) as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        clean_env.setenv("NO_PROXY", no_proxy)
        client = make_client(fake)
        assert list(client.iter_events(WINDOW, concurrency=2)) == fake.ground_truth(
            T0, T0 + timedelta(days=1)
        )
        assert proxy.urls == []
        assert fake.stats.requests > 1


def test_the_environment_is_read_when_the_client_is_made(
    fake: FakeAsana, clean_env: pytest.MonkeyPatch
) -> None:
    with Relay(fake.base_url) as proxy:
        client = make_client(fake)
        clean_env.setenv("HTTP_PROXY", proxy.url)  # too late for this client
        assert list(client.iter_events(WINDOW)) == fake.ground_truth(T0, T0 + timedelta(days=1))
        assert proxy.urls == []
        assert len(list(make_client(fake).iter_events(WINDOW))) > 0
        assert proxy.urls != []  # a client made now uses it


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_from_the_environment_is_used(
    fake: FakeAsana, clean_env: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    missing = tmp_path / "no-such-bundle.pem"
    clean_env.setenv(variable, str(missing))
    # Nothing listens on port 9 of 127.0.0.1; requests checks the bundle before connecting.
    client = make_client(fake, "https://127.0.0.1:9/api/1.0")
    with pytest.raises(OSError, match=r"no-such-bundle\.pem"):
        client.get_page(WINDOW)


def test_a_netrc_entry_does_not_replace_the_token(
    fake: FakeAsana, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # requests would send a netrc login instead of the bearer token on every request it read it for.
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    clean_env.setenv("HOME", str(tmp_path))
    plain = requests.Session()
    plain.headers["Authorization"] = f"Bearer {fake.token}"
    assert plain.get(f"{fake.base_url}/workspaces/{fake.workspace_gid}/audit_log_events").status_code == 401
    assert list(make_client(fake).iter_events(WINDOW)) == fake.ground_truth(T0, T0 + timedelta(days=1))


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_read_keeps_its_connections_open(
    fake: FakeAsana, clean_env: pytest.MonkeyPatch, concurrency: int
) -> None:
    with Relay(fake.base_url.rsplit("/api/", 1)[0]) as gateway:
        client = make_client(fake, gateway.base_url)
        assert list(client.iter_events(WINDOW, concurrency=concurrency)) == fake.ground_truth(
            T0, T0 + timedelta(days=1)
        )
        assert len(gateway.urls) > 3 * concurrency
        assert gateway.connections == concurrency  # one per session, kept from page to page


def test_the_url_is_the_one_requests_builds() -> None:
    url = "https://app.asana.com/api/1.0/workspaces/123/audit_log_events"
    transport = Transport(requests.Session(), url, (1, 1))
    rng = random.Random(1)
    for event_type in ("user_login_succeeded", "a b+c/d~e", "ünïcødé", "x&y=z"):
        query = AuditLogQuery(
            start_at=T0, end_at=T0 + timedelta(hours=1, microseconds=5), event_type=event_type
        )
        offset = "".join(rng.choice("abcXYZ0129-_.=+/") for _ in range(120))
        for page_offset in (None, offset):
            params = query.params() | ({"offset": page_offset} if page_offset else {})
            expected = requests.Request("GET", url, params=params).prepare().url
            assert transport.url(query, page_offset) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [{"gid": "1", "n": 123456789012345678901234567890, "f": [1.5e300, -0.0]}]}',
        b'{"data": [{"gid": "1", "s": "\\ud800"}]}',  # a lone surrogate
        b'{"data": [{"gid": "1", "x": NaN}]}',
        b'\xef\xbb\xbf{"data": []}',  # a byte-order mark
        '{"data": [{"gid": "1", "name": "\u00e9t\u00e9"}]}'.encode("utf-16"),
        b'{"data": [], "data": [{"gid": "2"}]}',
    ],
)
def test_bodies_decode_to_what_json_loads_gives(body: bytes) -> None:
    assert decode(body) == json.loads(body)


@pytest.mark.parametrize(
    "body", [b"<html>upstream error</html>", b'{"data": []} trailing', b'{"data": {}}', b""]
)
def test_bodies_that_are_not_asanas_json_are_refused(body: bytes) -> None:
    assert decode(body) is None


def test_a_page_decodes_to_the_events_the_stand_in_holds(
    fake: FakeAsana, clean_env: pytest.MonkeyPatch
) -> None:
    url = f"{fake.base_url}/workspaces/{fake.workspace_gid}/audit_log_events"
    raw = requests.get(
        url, params=WINDOW.params(), headers={"Authorization": f"Bearer {fake.token}"}, timeout=10
    )
    body = decode(raw.content)
    assert body == json.loads(raw.content)
    assert body is not None
    assert body["data"] == fake.ground_truth(T0, T0 + timedelta(days=1))[:50]
