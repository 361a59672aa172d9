"""
The token never leaves the ``Authorization`` header, and personal data never reaches a log.

Every public path runs with debug logging on and failures injected (429, 5xx, dropped and truncated
connections, an HTML body, an expired offset, a refused token, a personal access token, an unknown
workspace): the hook's ``iter_events`` (also as a concurrent read), ``check``, ``acheck`` and
``test_connection``; both triggers; and the operator and the sensor (poke and deferrable) in a real DAG
run with ``dag.test()``, whose task logs, XComs, trigger rows and rendered fields end up in the
session's ``AIRFLOW_HOME``. Then everything is searched for the tokens: captured stdout and stderr, log
records (messages, arguments, tracebacks), every file under ``AIRFLOW_HOME`` (task logs, the metadata
database), export files (decompressed too) and manifests, XComs, trigger event payloads, exceptions
(``str``, ``repr``, arguments, attributes, tracebacks, and their ``__cause__``/``__context__`` chains),
and every request the stand-in received (path, parameters, headers other than ``Authorization``).

Audit events hold personal data (the actors' emails and the clients' IP addresses): it belongs in the
export files and in the asset events of the event trigger, and nowhere in a log or an error message.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import traceback
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.exceptions import AsanaAuditLogError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.testing import FakeAsana, Fault
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger, AsanaAuditLogTrigger
from tests.helpers.dags import load_dag, run_dag, write_dag
from tests.helpers.exports import midnight
from tests.helpers.waiting import Background, wait_until

#: The service account token: distinctive, so that any copy of it anywhere is found.
TOKEN = "0/SECRECY-service-account-token-5d8e1f0c7b2a"
#: A token Asana does not know (401) and a personal access token it refuses (403): secrets too.
WRONG_TOKEN = "0/SECRECY-revoked-token-93a4c6e1d0f7"
PERSONAL_TOKEN = "2/SECRECY-personal-access-token-4f61b9e2"
SECRETS = (TOKEN, WRONG_TOKEN, PERSONAL_TOKEN)
#: What is searched for: each token, and its part after the "/" (what a URL keeps of it, or a quoted copy).
NEEDLES = (*SECRETS, *(secret.rsplit("/", 1)[-1] for secret in SECRETS))
#: Connections, by id: the working one, a revoked token, a personal access token, an unknown workspace.
CONNECTIONS: dict[str, dict[str, Any]] = {
    "asana_audit_log_default": {},
    "asana_revoked": {"password": WRONG_TOKEN},
    "asana_personal": {"password": PERSONAL_TOKEN},
    "asana_nowhere": {"extra": {"workspace_gid": "1999999999999999"}},
}
FAILED_LOGIN = "user_login_failed"
#: Loggers whose debug output could show a request: ours, Airflow's task loggers, requests and urllib3.
DEBUG_LOGGERS = ("", "airflow_provider_asana_audit", "airflow.task", "urllib3", "requests")
#: One of every transient fault, each retried by the client.
TRANSIENT_FAULTS = (
    Fault.SERVER_ERROR_500,
    Fault.UNAVAILABLE_503,
    Fault.DROP,
    Fault.TRUNCATE,
    Fault.NOT_JSON,
    Fault.BAD_GATEWAY_502,
)


#: Outlasts every injected fault in a row, quickly.
PATIENT_RETRY = RetryPolicy(max_attempts=12, backoff_base=0.01, backoff_max=0.05, max_elapsed=30)


# --------------------------------------------------------------------------------------------- evidence


#: Where personal data must never appear: logs, error messages, requests, XComs, connection tests.
NO_PERSONAL_DATA = frozenset({"log", "exception", "request", "xcom", "answer"})


@dataclass
class Evidence:
    """
    Everything a user, an operator of Airflow or a log collector could see, by kind and place.

    Kinds: ``log``, ``exception``, ``request``, ``xcom``, ``answer`` (``test_connection``), ``payload``
    (trigger events), ``file``.
    """

    texts: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, kind: str, where: str, content: str | bytes) -> None:
        text = content if isinstance(content, str) else content.decode("utf-8", "replace")
        self.texts.append((kind, where, text))

    def text(self, kind: str) -> str:
        return "".join(text for each, _, text in self.texts if each == kind)

    def exception(self, where: str, err: BaseException) -> None:
        """The error as every tool shows it, and every error it was raised from or during."""
        seen: set[int] = set()
        pending: list[BaseException | None] = [err]
        while pending:
            current = pending.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            name = f"{where}: {type(current).__name__}"
            self.add("exception", f"{name} str", str(current))
            self.add("exception", f"{name} repr", repr(current))
            self.add("exception", f"{name} args", repr(current.args))
            self.add("exception", f"{name} attributes", repr(vars(current)))
            self.add("exception", f"{name} traceback", "".join(traceback.format_exception(current)))
            pending += [current.__cause__, current.__context__]

    def logs(self, where: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
        out, err = capfd.readouterr()
        self.add("log", f"{where}: stdout", out)
        self.add("log", f"{where}: stderr", err)
        self.add("log", f"{where}: caplog", caplog.text)
        for record in caplog.records:
            self.add(
                "log", f"{where}: {record.name}", f"{record.msg!s} {record.args!r} {record.exc_text or ''}"
            )
            if record.exc_info and record.exc_info[1] is not None:
                self.exception(f"{where}: logged exception", record.exc_info[1])
        caplog.clear()

    def files(self, where: str, root: Path, *, logs: str | None = None) -> int:
        """
        Every file under ``root``, gzip files decompressed too; returns how many were read.

        :param logs: the folder under ``root`` whose files are logs.
        """
        count = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root)
            kind = "log" if logs is not None and relative.parts[:1] == (logs,) else "file"
            data = path.read_bytes()
            self.add(kind, f"{where}: {relative}", data)
            if path.name.endswith(".gz"):
                self.add(kind, f"{where}: {relative} (decompressed)", gzip.decompress(data))
            count += 1
        return count

    def requests(self, fake: FakeAsana) -> None:
        """What the stand-in received besides the ``Authorization`` header: path, parameters, headers."""
        for number, request in enumerate(fake.requests):
            assert "authorization" not in {name.lower() for name in request.headers}
            self.add("request", f"request {number} path", request.path)
            self.add("request", f"request {number} params", json.dumps(request.params))
            self.add("request", f"request {number} headers", json.dumps(request.headers))

    def found(self, needles: tuple[str, ...]) -> list[str]:
        """Where any needle appears, with some context."""
        hits = []
        for kind, where, text in self.texts:
            for needle in needles:
                at = text.find(needle)
                if at >= 0:
                    hits.append(f"{kind} {where}: ...{text[max(0, at - 80) : at + len(needle) + 40]!r}...")
        return hits

    def personal_data(self, needles: tuple[str, ...], *, kinds: frozenset[str]) -> list[str]:
        """Where an email address or an IP address of an event appears whole, in texts of ``kinds``."""
        pattern = re.compile("|".join(rf"(?<![\w.@]){re.escape(needle)}(?!\w)" for needle in needles))
        return [
            f"{kind} {where}: {match.group(0)}"
            for kind, where, text in self.texts
            if kind in kinds
            for match in [pattern.search(text)]
            if match is not None
        ]


def personal_data_of(fake: FakeAsana) -> tuple[str, ...]:
    """The actors' and resources' emails and the clients' IP addresses of the stand-in's events."""
    found: set[str] = set()
    for event in fake.events:
        for part in (event.get("actor") or {}, event.get("resource") or {}):
            if part.get("email"):
                found.add(str(part["email"]))
        ip = (event.get("context") or {}).get("client_ip_address")
        if ip:
            found.add(str(ip))
    return tuple(sorted(found))


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def secret_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAsana]:
    """A stand-in with the distinctive token, and the four connections in the environment."""
    with FakeAsana(seed=11, events_per_day=60, token=TOKEN, denied_tokens={PERSONAL_TOKEN: 403}) as fake:
        for conn_id, changes in CONNECTIONS.items():
            monkeypatch.setenv(
                f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**fake.connection_dict(), **changes})
            )
        yield fake


@pytest.fixture
def debug_logging(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """Debug logging on for every logger that could show a request."""
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "DEBUG")
    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Retries without waiting, for paths that take no retry policy (sensors, triggers).

    Every fault is still retried, and every retry still logged: only the waits are shortened.
    """
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt: 0.01)


def _inject_transient_faults(fake: FakeAsana) -> None:
    fake.inject(Fault.RATE_LIMIT, retry_after=0)
    for fault in TRANSIENT_FAULTS:
        fake.inject(fault)
    fake.inject(Fault.EXPIRE_OFFSET)  # the first request with an offset


def _fast_hook(conn_id: str = "asana_audit_log_default") -> AsanaAuditLogHook:
    return AsanaAuditLogHook(conn_id, retry=PATIENT_RETRY)


def _assert_clean(evidence: Evidence, fake: FakeAsana) -> None:
    evidence.requests(fake)
    assert evidence.found(NEEDLES) == []
    assert evidence.personal_data(personal_data_of(fake), kinds=NO_PERSONAL_DATA) == []


# --------------------------------------------------------------------------------------------- the hook


def test_the_hook_never_reveals_the_token(
    secret_fake: FakeAsana, debug_logging: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    evidence = Evidence()
    start, end = midnight(3), midnight(2)

    _inject_transient_faults(secret_fake)
    events = list(_fast_hook().iter_events(start, end, page_size=5))
    assert events == secret_fake.ground_truth(start, end)
    _inject_transient_faults(secret_fake)
    assert list(_fast_hook().iter_events(start, end, page_size=5, concurrency=4)) == events

    _inject_transient_faults(secret_fake)
    assert _fast_hook().check(start_at=start, min_events=120)["count"] >= 120
    _inject_transient_faults(secret_fake)
    assert asyncio.run(_fast_hook().acheck(start_at=start, min_events=3))["count"] == 3

    refusals: list[BaseException] = []
    for conn_id in ("asana_revoked", "asana_personal", "asana_nowhere"):
        with pytest.raises(AsanaAuditLogError) as refused:
            list(_fast_hook(conn_id).iter_events(start, end))
        refusals.append(refused.value)
        with pytest.raises(AsanaAuditLogError) as refused:
            _fast_hook(conn_id).check(start_at=start)
        refusals.append(refused.value)
        with pytest.raises(AsanaAuditLogError) as refused:
            asyncio.run(_fast_hook(conn_id).acheck(start_at=start))
        refusals.append(refused.value)
        with pytest.raises(AsanaAuditLogError) as refused:  # a concurrent read: errors from its threads
            list(_fast_hook(conn_id).iter_events(start, end, concurrency=4))
        refusals.append(refused.value)
    secret_fake.inject(Fault.UNAVAILABLE_503, count=40)
    with pytest.raises(AsanaAuditLogError) as exhausted:
        list(
            AsanaAuditLogHook(retry=RetryPolicy(max_attempts=3, backoff_base=0.01)).iter_events(
                start, end, concurrency=4
            )
        )
    refusals.append(exhausted.value)
    secret_fake.clear_faults()
    secret_fake.inject(Fault.UNAVAILABLE_503, count=10)
    with pytest.raises(AsanaAuditLogError) as exhausted:
        list(AsanaAuditLogHook(retry=RetryPolicy(max_attempts=3, backoff_base=0.01)).iter_events(start, end))
    refusals.append(exhausted.value)
    secret_fake.clear_faults()

    answers = [AsanaAuditLogHook(conn_id).test_connection() for conn_id in CONNECTIONS]
    secret_fake.inject(Fault.NOT_JSON, count=10)
    answers.append(AsanaAuditLogHook().test_connection())
    secret_fake.clear_faults()

    assert [ok for ok, _ in answers] == [True, False, False, False, False]
    for number, (_, message) in enumerate(answers):
        evidence.add("answer", f"test_connection {number}", message)
    for number, error in enumerate(refusals):
        evidence.exception(f"exception {number}", error)
    evidence.logs("hook log", debug_logging, capfd)
    assert "Starting new HTTP connection" in evidence.text("log")  # debug logging was on
    _assert_clean(evidence, secret_fake)


# --------------------------------------------------------------------------------------------- triggers


async def _payloads(trigger: Any, count: int) -> list[dict[str, Any]]:
    """The first ``count`` payloads of a trigger (fewer if it ends)."""
    run: AsyncGenerator[Any, None] = trigger.run()
    payloads: list[dict[str, Any]] = []
    try:
        async for event in run:
            payloads.append(dict(event.payload))
            if len(payloads) >= count:
                break
    finally:
        await run.aclose()
    return payloads


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_the_triggers_never_reveal_the_token(
    secret_fake: FakeAsana,
    debug_logging: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    quick_backoff: None,
) -> None:
    evidence = Evidence()
    start = format_instant(midnight(3))

    def wait(conn_id: str, **kwargs: Any) -> AsanaAuditLogTrigger:
        return AsanaAuditLogTrigger(
            asana_audit_log_conn_id=conn_id, start_at=start, poll_interval=0.05, **kwargs
        )

    _inject_transient_faults(secret_fake)
    payloads = _run(_payloads(wait("asana_audit_log_default", min_events=3), 1))
    for conn_id in ("asana_revoked", "asana_personal", "asana_nowhere"):
        payloads += _run(_payloads(wait(conn_id), 1))
    soon = format_instant(datetime.now(timezone.utc) + timedelta(seconds=0.3))
    payloads += _run(
        _payloads(wait("asana_audit_log_default", filters={"event_type": "no_such"}, timeout_at=soon), 1)
    )
    assert [payload["status"] for payload in payloads] == ["success", "error", "error", "error", "timeout"]

    _inject_transient_faults(secret_fake)
    watched = _run(
        _payloads(
            AsanaAuditLogEventTrigger(
                start_at=start, filters={"event_type": FAILED_LOGIN}, poll_interval=0.05
            ),
            3,
        )
    )
    assert [payload["gid"] for payload in watched] == [
        event["gid"] for event in secret_fake.ground_truth(start, event_type=FAILED_LOGIN)[:3]
    ]
    errors: list[BaseException] = []
    for conn_id in ("asana_revoked", "asana_personal", "asana_nowhere"):
        with pytest.raises(AsanaAuditLogError) as refused:
            _run(_payloads(AsanaAuditLogEventTrigger(asana_audit_log_conn_id=conn_id, poll_interval=0.05), 1))
        errors.append(refused.value)

    for number, payload in enumerate(payloads):
        evidence.add("payload", f"trigger event {number}", json.dumps(payload))
    for number, payload in enumerate(watched):
        evidence.add("payload", f"event trigger payload {number}", json.dumps(payload))
    for number, error in enumerate(errors):
        evidence.exception(f"event trigger exception {number}", error)
    for trigger in (wait("asana_audit_log_default"), AsanaAuditLogEventTrigger(start_at=start)):
        evidence.add("payload", f"{type(trigger).__name__} kwargs", json.dumps(trigger.serialize()[1]))
    evidence.logs("trigger log", debug_logging, capfd)
    _assert_clean(evidence, secret_fake)
    # The watched asset's events carry the actors' emails and IP addresses: by design, in the payload only.
    assert evidence.personal_data(personal_data_of(secret_fake), kinds=frozenset({"payload"})) != []


# --------------------------------------------------------------------------------------------- a DAG run

_DAG_ID = "asana_secrecy_under_test"
_DAG_SOURCE = f'''\
"""Every task path of the provider, configured by ASANA_SECRECY_TEST_OPTIONS; by tests/test_secrecy.py."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG
else:
    from airflow import DAG

options = json.loads(os.environ.get("ASANA_SECRECY_TEST_OPTIONS") or "{{}}")
out = options.get("out", "/nonexistent")
start_at, end_at, now = options.get("start_at"), options.get("end_at"), options.get("now")
retry = RetryPolicy(max_attempts=12, backoff_base=0.01, backoff_max=0.05, max_elapsed=30)
export = dict(start_at=start_at, end_at=end_at, settle_period=timedelta(0), request_retry=retry, retries=0)

with DAG(
    dag_id="{_DAG_ID}",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    AsanaAuditLogExportOperator(
        task_id="export", destination=f"{{out}}/paged.jsonl.gz", page_size=7, **export
    )
    AsanaAuditLogExportOperator(
        task_id="export_concurrent", destination=f"{{out}}/concurrent.jsonl", concurrency=4, **export
    )
    AsanaAuditLogExportOperator(
        task_id="export_revoked",
        asana_audit_log_conn_id="asana_revoked",
        destination=f"{{out}}/revoked.jsonl",
        **export,
    )
    AsanaAuditLogSensor(task_id="wait_poke", start_at=start_at, min_events=3, poke_interval=0.1, retries=0)
    AsanaAuditLogSensor(
        task_id="wait_deferred",
        start_at=now,
        event_type="{FAILED_LOGIN}",
        deferrable=True,
        poke_interval=0.1,
        timeout=120,
        retries=0,
    )
    AsanaAuditLogSensor(
        task_id="wait_personal", asana_audit_log_conn_id="asana_personal", start_at=start_at, retries=0
    )
'''


def test_a_dag_run_never_reveals_the_token(
    secret_fake: FakeAsana,
    dags_folder: Path,
    airflow_home: Path,
    export_dir: Path,
    debug_logging: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    quick_backoff: None,
) -> None:
    evidence = Evidence()
    clock = datetime.now(timezone.utc)
    options = {
        "out": str(export_dir),
        "start_at": format_instant(midnight(3)),
        "end_at": format_instant(midnight(2)),
        "now": format_instant(clock.replace(microsecond=clock.microsecond // 1000 * 1000)),
    }
    monkeypatch.setenv("ASANA_SECRECY_TEST_OPTIONS", json.dumps(options))
    path = write_dag(dags_folder, _DAG_ID, _DAG_SOURCE)
    _inject_transient_faults(secret_fake)

    def waited_on() -> int:
        return sum(
            1 for r in secret_fake.requests if r.params.get("event_type") == FAILED_LOGIN and r.status == 200
        )

    def arrive() -> None:
        # Once the deferrable sensor's own check and its trigger's first poll found nothing.
        wait_until(lambda: waited_on() >= 2, timeout=120, message="the deferrable sensor should poll twice")
        secret_fake.append_events(1, event_type=FAILED_LOGIN)

    arrival = Background(arrive, name="failed-login-arrives")
    run = run_dag(load_dag(path, _DAG_ID))
    arrival.join()

    assert run.task_states == {
        "export": "success",
        "export_concurrent": "success",
        "export_revoked": "failed",
        "wait_poke": "success",
        "wait_deferred": "success",
        "wait_personal": "failed",
    }
    for task_id in run.task_states:
        evidence.add("xcom", task_id, json.dumps(run.xcom(task_id), default=str))
    assert evidence.files("export", export_dir) == 4  # two files and their manifests, nothing else
    assert evidence.files("AIRFLOW_HOME", airflow_home, logs="logs") > 0  # task logs, the database, ...
    evidence.logs("task log", debug_logging, capfd)
    logged = evidence.text("log")
    assert "Asana audit log: read" in logged  # the task logs were captured
    assert "Asana request failed with" in logged  # and the injected failures reached them
    _assert_clean(evidence, secret_fake)
