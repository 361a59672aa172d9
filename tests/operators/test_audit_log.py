"""
The export operator called directly (no DAG run): the interval, validation, retention, settling, output.

Where the file goes and how it gets there whole (``airflow_provider_asana_audit.storage``) is tested in
``tests/test_storage.py``; real DAG runs are in ``test_audit_log_dag.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSkipException,
    ObjectStoragePath,
    TaskDeferred,
)
from pytest_mock import MockerFixture

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogRetentionError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.query import FILTER_NAMES, Page
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS, AirflowRescheduleException
from tests.helpers.exports import midnight, read_events, serialise

START, END = midnight(3), midnight(2)
#: What a template renders when its value is missing; each means "not set".
UNSET_RENDERINGS = pytest.mark.parametrize("unset", ["", "   ", "None"], ids=["empty", "blank", "None"])


def _operator(**kwargs: Any) -> AsanaAuditLogExportOperator:
    kwargs.setdefault("settle_period", timedelta(0))
    return AsanaAuditLogExportOperator(task_id="export", **kwargs)


def _context(start: datetime | None = START, end: datetime | None = END) -> Any:
    context: dict[str, Any] = {}
    if start is not None:
        context["data_interval_start"] = start
    if end is not None:
        context["data_interval_end"] = end
    return context


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def _pages(*pages: list[dict[str, Any]], then: BaseException | None = None) -> Any:
    """A stand-in for ``AsanaAuditLogHook.iter_pages`` that yields ``pages``, then raises ``then``."""

    def iter_pages(self: AsanaAuditLogHook, *args: Any, **kwargs: Any) -> Iterator[Page]:
        for events in pages:
            yield Page(events=events, next_offset="next")
        if then is not None:
            raise then

    return iter_pages


# ---------------------------------------------------------------- the interval


@pytest.mark.parametrize(
    "context",
    [pytest.param(_context(START, START), id="empty"), pytest.param(_context(None, None), id="missing")],
)
def test_an_empty_or_missing_interval_fails_with_what_to_do(
    asana_conn: FakeAsana, tmp_path: Path, context: Any
) -> None:
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz")

    with pytest.raises(AsanaAuditLogConfigError) as caught:
        operator.execute(context)

    message = str(caught.value)
    assert "CronDataIntervalTimetable" in message
    assert "timedelta" in message
    assert "start_at and end_at" in message
    assert isinstance(caught.value, AirflowFailException)
    assert _files(tmp_path) == []
    assert asana_conn.stats.requests == 0


def test_start_at_and_end_at_override_the_data_interval(asana_conn: FakeAsana, tmp_path: Path) -> None:
    start, end = START + timedelta(hours=6), START + timedelta(hours=18)
    operator = _operator(
        destination=f"{tmp_path}/x.jsonl",
        start_at=start.isoformat(),
        end_at=end.isoformat().replace("+00:00", "Z"),
    )

    summary = operator.execute(_context(None, None))

    assert read_events(tmp_path / "x.jsonl") == asana_conn.ground_truth(start, end)
    assert summary["start_at"] == f"{start:%Y-%m-%dT%H:%M:%S}.000Z"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"start_at": "yesterday"}, "start_at"),
        ({"page_size": 0}, "page_size"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"on_retention_violation": "ignore"}, "on_retention_violation"),
        ({"settle_period": timedelta(minutes=-1)}, "settle_period"),
        ({"destination": "exports/x.jsonl"}, "relative path"),
        ({"destination": "  "}, "destination is an empty string"),
    ],
)
def test_bad_arguments_fail_before_any_request_or_write(
    asana_conn: FakeAsana, tmp_path: Path, arguments: dict[str, Any], named: str
) -> None:
    arguments.setdefault("base_path", str(tmp_path))
    operator = _operator(**arguments)

    with pytest.raises(AsanaAuditLogConfigError, match=named):
        operator.execute(_context())

    assert asana_conn.stats.requests == 0
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- templated arguments


def test_a_filter_template_of_a_missing_param_renders_to_the_string_none() -> None:
    # The case the "not set" rule is for: Jinja renders a None param as "None".
    operator = _operator(event_type="{{ params.event_type }}")

    operator.render_template_fields({"params": {"event_type": None}})

    assert operator.event_type == "None"


@UNSET_RENDERINGS
def test_a_start_at_that_rendered_to_nothing_defaults_to_the_data_interval_start(
    asana_conn: FakeAsana, tmp_path: Path, unset: str
) -> None:
    summary = _operator(destination=f"{tmp_path}/x.jsonl", start_at=unset).execute(_context())

    assert summary["start_at"] == format_instant(START)
    assert read_events(tmp_path / "x.jsonl") == asana_conn.ground_truth(START, END)


@UNSET_RENDERINGS
def test_an_end_at_that_rendered_to_nothing_defaults_to_the_data_interval_end(
    asana_conn: FakeAsana, tmp_path: Path, unset: str
) -> None:
    summary = _operator(destination=f"{tmp_path}/x.jsonl", end_at=unset).execute(_context())

    assert summary["end_at"] == format_instant(END)
    assert read_events(tmp_path / "x.jsonl") == asana_conn.ground_truth(START, END)


@UNSET_RENDERINGS
@pytest.mark.parametrize("name", FILTER_NAMES)
def test_a_filter_that_rendered_to_nothing_is_not_applied(
    asana_conn: FakeAsana, tmp_path: Path, name: str, unset: str
) -> None:
    _operator(destination=f"{tmp_path}/x.jsonl", **{name: unset}).execute(_context())

    assert all(name not in request.params for request in asana_conn.requests)
    assert read_events(tmp_path / "x.jsonl") == asana_conn.ground_truth(START, END)
    manifest = json.loads((tmp_path / "x.jsonl.manifest.json").read_text())
    assert manifest["filters"] == dict.fromkeys(FILTER_NAMES)


# ---------------------------------------------------------------- retention


def test_an_interval_before_the_audit_log_epoch_fails_without_retry(
    asana_conn: FakeAsana, tmp_path: Path
) -> None:
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz")
    old = datetime(2021, 10, 1, tzinfo=timezone.utc)

    with pytest.raises(AsanaAuditLogRetentionError, match="2021-10-08") as caught:
        operator.execute(_context(old, old + timedelta(days=1)))

    assert isinstance(caught.value, AirflowFailException)
    assert asana_conn.stats.requests == 0


def test_an_interval_past_the_90_days_fails_by_default(asana_conn: FakeAsana, tmp_path: Path) -> None:
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz")

    with pytest.raises(AsanaAuditLogRetentionError, match="90 days"):
        operator.execute(_context(midnight(100), midnight(99)))


def test_an_interval_past_the_90_days_is_skipped_when_asked(asana_conn: FakeAsana, tmp_path: Path) -> None:
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz", on_retention_violation="skip")

    with pytest.raises(AirflowSkipException, match="90 days"):
        operator.execute(_context(midnight(100), midnight(99)))

    assert _files(tmp_path) == []


def test_an_interval_partly_past_the_90_days_is_exported_with_a_warning(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz")

    summary = operator.execute(_context(midnight(91), midnight(89)))

    assert summary["events"] == 0
    warnings = [call.args[0] for call in log.return_value.warning.call_args_list]
    assert any("deletes events after" in text for text in warnings)


# ---------------------------------------------------------------- the settle period


def test_a_too_recent_interval_defers_until_it_has_settled(asana_conn: FakeAsana, tmp_path: Path) -> None:
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    operator = _operator(
        destination=f"{tmp_path}/x.jsonl.gz", settle_period=timedelta(minutes=30), deferrable=True
    )

    with pytest.raises(TaskDeferred) as caught:
        operator.execute(_context(end - timedelta(hours=1), end))

    assert caught.value.method_name == "execute_complete"
    moment = caught.value.trigger.moment
    assert abs(moment - (end + timedelta(minutes=30))) < timedelta(minutes=1)
    assert asana_conn.stats.requests == 0
    assert _files(tmp_path) == []


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 does not honour reschedules of operators")
def test_a_too_recent_interval_is_rescheduled_when_not_deferrable(
    asana_conn: FakeAsana, tmp_path: Path
) -> None:
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    operator = _operator(
        destination=f"{tmp_path}/x.jsonl.gz", settle_period=timedelta(minutes=30), deferrable=False
    )

    with pytest.raises(AirflowRescheduleException) as caught:
        operator.execute(_context(end - timedelta(hours=1), end))

    assert caught.value.reschedule_date == end + timedelta(minutes=30)
    assert asana_conn.stats.requests == 0


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="Airflow 3 reschedules instead")
def test_a_too_recent_interval_waits_in_the_worker_on_airflow_2_when_not_deferrable(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    sleep = mocker.patch("airflow_provider_asana_audit.operators.audit_log.time.sleep")
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    operator = _operator(
        destination=f"{tmp_path}/x.jsonl.gz", settle_period=timedelta(minutes=30), deferrable=False
    )

    operator.execute(_context(end - timedelta(hours=1), end))

    (waited,), _ = sleep.call_args
    assert 19 * 60 < waited <= 20 * 60


def test_resuming_after_the_deferral_exports_the_interval(asana_conn: FakeAsana, tmp_path: Path) -> None:
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz", settle_period=timedelta(minutes=30))

    summary = operator.execute_complete(_context(), event={"status": "success"})

    assert read_events(Path(summary["path"])) == asana_conn.ground_truth(START, END)


# ---------------------------------------------------------------- output


def test_the_summary_and_manifest_describe_the_file_and_hold_no_token(
    asana_conn: FakeAsana, tmp_path: Path
) -> None:
    operator = _operator(destination=ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz"))

    before = datetime.now(timezone.utc).replace(microsecond=0)
    summary = operator.execute(_context())
    after = datetime.now(timezone.utc)

    truth = asana_conn.ground_truth(START, END)
    assert set(summary) == {
        "path",
        "events",
        "start_at",
        "end_at",
        "pages",
        "sha256",
        "manifest",
        "change",
        "budget",
        "record",
    }
    assert summary["events"] == len(truth)
    assert summary["record"] is None, "no record without a signing key"
    # What the export's requests cost the token's budget, under the token's hash.
    assert summary["budget"] == {
        "token_sha256": hashlib.sha256(asana_conn.token.encode()).hexdigest()[:16],
        "requests": asana_conn.stats.requests,
        "refused": 0,
        "failed": 0,
        "waited_seconds": summary["budget"]["waited_seconds"],
    }
    assert summary["budget"]["requests"] >= summary["pages"]
    assert summary["pages"] >= 1
    assert summary["change"] is None, "a first export changes no previous file"
    assert (tmp_path / "day.jsonl.gz").read_bytes() == serialise(truth, compressed=True)
    manifest = json.loads((tmp_path / "day.jsonl.gz.manifest.json").read_text())
    assert set(manifest) == {
        "events",
        "start_at",
        "end_at",
        "filters",
        "sha256",
        "bytes",
        "path",
        "format",
        "exported_at",
        "package_version",
        "workspace_gid",
        "exported_by",
        "changes",
    }
    assert manifest["sha256"] == summary["sha256"]
    assert manifest["package_version"] == __version__
    assert manifest["exported_by"] is None, "called outside a task run, no task instance wrote it"
    assert manifest["changes"] == []
    exported_at = datetime.fromisoformat(manifest["exported_at"].replace("Z", "+00:00"))
    assert before <= exported_at <= after
    for text in (json.dumps(summary), json.dumps(manifest)):
        assert asana_conn.token not in text


def test_events_outside_the_interval_are_dropped(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    truth = asana_conn.ground_truth(START, END)
    before = {**truth[0], "gid": "1", "created_at": "2000-01-01T00:00:00.000Z"}
    after = {**truth[-1], "gid": "2", "created_at": format_instant(END)}
    pages = [[before, truth[0], truth[1]], [*truth[2:], after]]
    mocker.patch.object(AsanaAuditLogHook, "iter_pages", _pages(*pages))

    summary = _operator(destination=f"{tmp_path}/day.jsonl").execute(_context())

    assert read_events(tmp_path / "day.jsonl") == truth
    assert summary["events"] == len(truth)


# ---------------------------------------------------------------- several workers


def _fleet_warnings(log: Any) -> list[str]:
    calls = log.return_value.warning.call_args_list
    return [call.args[0] % call.args[1:] for call in calls if "several hosts" in call.args[0]]


@pytest.mark.parametrize(
    ("executor", "task_executor", "warned"),
    [
        ("CeleryExecutor", None, "CeleryExecutor"),
        ("KubernetesExecutor", None, "KubernetesExecutor"),
        (
            "airflow.providers.edge3.executors.EdgeExecutor",
            None,
            "airflow.providers.edge3.executors.EdgeExecutor",
        ),
        ("LocalExecutor,CeleryExecutor", None, None),  # the first is the default
        ("LocalExecutor,CeleryExecutor", "CeleryExecutor", "CeleryExecutor"),
        ("CeleryExecutor,k8s:KubernetesExecutor", "k8s", "KubernetesExecutor"),
        ("CeleryExecutor,airflow.executors.local_executor.LocalExecutor", "LocalExecutor", None),
        ("LocalExecutor", None, None),
        ("SequentialExecutor", None, None),
    ],
)
def test_a_local_default_base_under_an_executor_of_several_hosts_is_warned_about_once(
    asana_conn: FakeAsana,
    tmp_path: Path,
    mocker: MockerFixture,
    monkeypatch: pytest.MonkeyPatch,
    executor: str,
    task_executor: str | None,
    warned: str | None,
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # the default base: $AIRFLOW_HOME/asana_audit_log
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _operator(executor=task_executor).execute(_context())

    assert summary["path"].startswith(f"file://{tmp_path}/asana_audit_log/")
    if warned is None:
        assert _fleet_warnings(log) == []
    else:
        (warning,) = _fleet_warnings(log)
        assert f"the executor {warned} runs tasks on several hosts" in warning
        assert summary["path"] in warning
        assert "Set base_path (or the option [asana_audit_log] base_path)" in warning
        assert "'s3://bucket/asana'" in warning
        assert asana_conn.token not in warning


@pytest.mark.parametrize("where", ["base_path", "destination"])
def test_a_local_base_path_or_destination_under_celery_is_warned_about(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)
    value = str(tmp_path) if where == "base_path" else f"file://{tmp_path}/day.jsonl.gz"

    _operator(**{where: value}).execute(_context())

    assert len(_fleet_warnings(log)) == 1
