"""The facade: settings, generated events, Airflow connection forms, and the package's public face."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import airflow_provider_asana_audit.testing as testing
from airflow_provider_asana_audit.get_provider_info import CONN_TYPE
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import parse_instant

from .support import now_hour

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["data", "fake", "faults", "query", "responses", "server", "store", "vocabulary", "__main__"]


def test_settings_read_back_as_given() -> None:
    fake = FakeAsana(
        events=[],
        workspace_gid="42",
        token="tok",
        offset_ttl=5,
        requests_per_minute=150,
        burst=7,
        latency=0.25,
        denied_tokens={"pat": 403},
        host="127.0.0.1",
        port=0,
    )
    assert (fake.workspace_gid, fake.token, fake.offset_ttl) == ("42", "tok", 5)
    assert (fake.requests_per_minute, fake.burst, fake.latency) == (150, 7, 0.25)
    assert fake.denied_tokens == {"pat": 403}
    assert (fake.host, fake.port, fake.verbose) == ("127.0.0.1", 0, False)


def test_default_burst_is_one_seconds_worth_and_none_without_a_limit() -> None:
    assert FakeAsana(events=[], requests_per_minute=1500).burst == 25
    assert FakeAsana(events=[]).burst is None
    assert FakeAsana(events=[]).requests_per_minute is None


def test_default_events_are_the_week_before_the_hour() -> None:
    before = now_hour()
    fake = FakeAsana(seed=1, events_per_day=20)
    after = now_hour()  # the hour may turn while the stand-in is built
    events = fake.events
    assert len(events) == 140
    assert events == fake.ground_truth()
    assert all(before - timedelta(days=7) <= parse_instant(e["created_at"]) < after for e in events)


def test_event_count_gives_exactly_that_many_events() -> None:
    assert len(FakeAsana(event_count=1_001).events) == 1_001


def test_the_same_seed_gives_the_same_events() -> None:
    end = now_hour()
    assert FakeAsana(seed=9, end=end).events == FakeAsana(seed=9, end=end).events


def test_connection_forms(fake: FakeAsana) -> None:
    assert json.loads(fake.connection_json()) == {
        "conn_type": "asana_audit_log",
        "host": fake.base_url,
        "password": fake.token,
        "extra": {"workspace_gid": fake.workspace_gid},
    }
    assert fake.connection_dict() == json.loads(fake.connection_json())
    assert fake.connection_uri().startswith("asana-audit-log://http://")


def test_airflow_parses_both_connection_forms(fake: FakeAsana) -> None:
    connection_module = pytest.importorskip("airflow.models.connection")
    for conn in (
        connection_module.Connection.from_json(fake.connection_json(), conn_id="x"),
        connection_module.Connection(conn_id="x", uri=fake.connection_uri()),
    ):
        assert conn.conn_type == "asana_audit_log"
        assert conn.host == fake.base_url
        assert conn.password == fake.token
        assert conn.extra_dejson == {"workspace_gid": fake.workspace_gid}


def test_base_url_and_bound_port_agree(fake: FakeAsana) -> None:
    assert fake.base_url == f"http://127.0.0.1:{fake.bound_port}/api/1.0"


# ---------------------------------------------------------------------------------------- public face


def test_the_public_api_is_unchanged() -> None:
    assert set(testing.__all__) >= {
        "ACTOR_TYPES",
        "CONN_TYPE",
        "DEFAULT_TOKEN",
        "DEFAULT_WORKSPACE_GID",
        "EVENT_TYPES",
        "INVALID_OFFSET_MESSAGE",
        "EventType",
        "FakeAsana",
        "Fault",
        "ParsedRequest",
        "RecordedRequest",
        "Stats",
        "generate_events",
        "make_event",
    }
    assert all(hasattr(testing, name) for name in testing.__all__)


def test_conn_type_is_the_providers_own() -> None:
    assert testing.CONN_TYPE is CONN_TYPE


@pytest.mark.parametrize("module", MODULES)
def test_every_module_declares_what_it_exports(module: str) -> None:
    loaded = importlib.import_module(f"airflow_provider_asana_audit.testing.{module}")
    assert all(hasattr(loaded, name) for name in loaded.__all__)


def test_the_stand_in_imports_neither_airflow_nor_requests() -> None:
    modules = ", ".join(f"airflow_provider_asana_audit.testing.{m}" for m in MODULES)
    code = (
        f"import sys, {modules}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests'))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"
