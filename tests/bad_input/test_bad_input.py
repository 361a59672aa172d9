"""
Every bad input is answered with a clear error, and nothing is written.

Each run of :data:`tests.bad_input.cases.RUNS` is one bad input given to one public entry point, the way a
user would give it (a connection in ``AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT``, arguments to the operator,
the sensor, a hook method, a trigger, the client...). It must:

- raise exactly the case's error class (a trigger: yield an error event whose ``permanent`` says
  whether the class fails a task without retries; ``test_connection``: return ``(False, message)``);
  configuration errors are ``AsanaAuditLogConfigError``, which fails the task without retries;
- say what is wrong and what to change: every fragment of the case is in the message;
- make no request where none is needed (``requests == 0``), and at most the ones it needs otherwise;
- write nothing: no file, no staging object, no manifest; and, when no request was needed, not even
  a directory.

The table users read, ``docs/bad-input.md``, is generated from the same cases and checked here, and
the table must cover every user-facing parameter and connection field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.testing import FakeAsana
from tests.bad_input.cases import (
    ACCEPTED,
    CASES,
    DOC,
    REQUIRED,
    RUNS,
    TABLE_END,
    TABLE_START,
    Case,
    Run,
    plan,
    render_tables,
)
from tests.bad_input.world import (
    ENTRIES,
    PAT_402,
    PAT_403,
    TOKEN,
    WRONG_TOKEN,
    World,
    snapshot,
)

CONNECTION_VARIABLE = "AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT"
SECRETS = (TOKEN, WRONG_TOKEN, PAT_402, PAT_403)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = tmp_path / "world"
    out = root / "out"
    out.mkdir(parents=True)
    with FakeAsana(
        seed=7, events_per_day=60, token=TOKEN, denied_tokens={PAT_402: 402, PAT_403: 403}
    ) as fake:
        world = World(fake=fake, root=root, out=out)
        try:
            yield world
        finally:
            world.close()


def _resolve(value: Any, world: World) -> Any:
    return value(world) if callable(value) else value


def _connection(run: Run, world: World) -> dict[str, Any] | None:
    case = run.case
    conn = world.connection() if case.connection is None else case.connection(world)
    if conn is None:
        return None
    for name, raw in run.connection_changes.items():
        value = _resolve(raw, world)
        if name == "extra.workspace_gid":
            conn["extra"] = {**conn.get("extra", {}), "workspace_gid": value}
        else:
            conn[name] = value
    return conn


@pytest.mark.parametrize("run", RUNS, ids=[run.id for run in RUNS])
def test_bad_input_is_answered_with_a_clear_error_and_nothing_is_written(
    run: Run, world: World, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    case = run.case
    reason = case.skip() if case.skip is not None else None
    if reason:
        pytest.skip(reason)
    conn = _connection(run, world)
    if conn is None:
        request.getfixturevalue("airflow_db")  # Airflow 2 looks for the missing connection in the database
        monkeypatch.delenv(CONNECTION_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(CONNECTION_VARIABLE, json.dumps(conn))
    world.conn = conn
    if case.prepare is not None:
        case.prepare(world)
    params = {name: _resolve(value, world) for name, value in run.params.items()}
    before = snapshot(world.root)

    outcome = ENTRIES[run.entry].run(world, params)

    message = outcome.message
    assert message is not None, f"{run.entry} did not refuse {case.bad}: {outcome.instead}"
    if outcome.error is not None:
        assert type(outcome.error) is case.error, f"{type(outcome.error).__name__}: {outcome.error}"
        if issubclass(case.error, AsanaAuditLogConfigError):
            assert isinstance(outcome.error, AirflowFailException)  # fails the task without retries
    if outcome.event is not None:
        assert outcome.event["permanent"] is issubclass(case.error, AirflowFailException), outcome.event
    for fragment in case.fragments(run.variant):
        assert fragment in message, f"{fragment!r} is not in the message: {message}"
    for secret in SECRETS:
        # Also its part after the "/", which is what is left of it when a URL is cut at the slash.
        assert secret not in message
        assert secret.rsplit("/", 1)[-1] not in message
    requests = world.requests()
    if case.requests is None:
        assert requests >= 1
    else:
        assert requests == case.requests, f"{requests} requests made, expected {case.requests}"
    after = snapshot(world.root)
    files_before = {path: entry for path, entry in before.items() if not entry[0]}
    files_after = {path: entry for path, entry in after.items() if not entry[0]}
    assert files_after == files_before, "a file was written, changed or left behind"
    if case.requests == 0:
        assert after == before, "a directory was created before the input was checked"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_case_runs_through_every_entry_point_it_lists(case: Case) -> None:
    assert [name for name in case.entries if name not in ENTRIES] == []
    assert sorted({run.entry for run in plan(case)}) == sorted(case.entries), "an entry takes no variant"


def test_the_table_covers_every_user_facing_parameter_and_connection_field() -> None:
    covered = set().union(*(run.covers() for run in RUNS))
    accepted = {key for row in ACCEPTED for key in row.keys}

    assert sorted(REQUIRED - covered - accepted) == [], "add a case, or a row of ACCEPTED with the reason"
    assert sorted((covered | accepted) - REQUIRED) == [], "no such parameter (renamed or removed?)"
    assert sorted(covered & accepted) == [], "a parameter with a case is not one without bad values"


def test_the_docs_table_is_the_tested_table() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert TABLE_START in doc
    assert TABLE_END in doc
    start, end = doc.index(TABLE_START), doc.index(TABLE_END) + len(TABLE_END)

    assert doc[start:end] == render_tables(), f"{DOC} is out of date: run `python -m tests.bad_input`"
