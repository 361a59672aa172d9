"""The export operator's pieces, run directly (no DAG run): validation, retention, settling, storage."""

from __future__ import annotations

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
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

from airflow_provider_asana_audit.client import Page
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogRetentionError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from tests.operators.conftest import midnight, read_events, serialise

START, END = midnight(3), midnight(2)


def _operator(**kwargs: Any) -> AsanaAuditLogExportOperator:
    kwargs.setdefault("settle_period", timedelta(0))
    return AsanaAuditLogExportOperator(task_id="export", **kwargs)


def _context(start: datetime | None = START, end: datetime | None = END) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if start is not None:
        context["data_interval_start"] = start
    if end is not None:
        context["data_interval_end"] = end
    return context


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


# ---------------------------------------------------------------- the interval


@pytest.mark.parametrize(
    "context",
    [pytest.param(_context(START, START), id="empty"), pytest.param(_context(None, None), id="missing")],
)
def test_an_empty_or_missing_interval_fails_with_what_to_do(asana_conn: FakeAsana, tmp_path: Path, context):
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


def test_start_at_and_end_at_override_the_data_interval(asana_conn: FakeAsana, tmp_path: Path):
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
    ],
)
def test_bad_arguments_fail_before_any_request_or_write(
    asana_conn: FakeAsana, tmp_path: Path, arguments: dict[str, Any], named: str
):
    arguments.setdefault("base_path", str(tmp_path))
    operator = _operator(**arguments)

    with pytest.raises(AsanaAuditLogConfigError, match=named):
        operator.execute(_context())

    assert asana_conn.stats.requests == 0
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- retention


def test_an_interval_before_the_audit_log_epoch_fails_without_retry(asana_conn: FakeAsana, tmp_path: Path):
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz")
    old = datetime(2021, 10, 1, tzinfo=timezone.utc)

    with pytest.raises(AsanaAuditLogRetentionError, match="2021-10-08") as caught:
        operator.execute(_context(old, old + timedelta(days=1)))

    assert isinstance(caught.value, AirflowFailException)
    assert asana_conn.stats.requests == 0


def test_an_interval_past_the_90_days_fails_by_default(asana_conn: FakeAsana, tmp_path: Path):
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz")

    with pytest.raises(AsanaAuditLogRetentionError, match="90 days"):
        operator.execute(_context(midnight(100), midnight(99)))


def test_an_interval_past_the_90_days_is_skipped_when_asked(asana_conn: FakeAsana, tmp_path: Path):
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz", on_retention_violation="skip")

    with pytest.raises(AirflowSkipException, match="90 days"):
        operator.execute(_context(midnight(100), midnight(99)))

    assert _files(tmp_path) == []


def test_an_interval_partly_past_the_90_days_is_exported_with_a_warning(
    asana_conn: FakeAsana, tmp_path: Path, mocker
):
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz")

    summary = operator.execute(_context(midnight(91), midnight(89)))

    assert summary["events"] == 0
    warnings = [call.args[0] for call in log.return_value.warning.call_args_list]
    assert any("deletes events after" in text for text in warnings)


# ---------------------------------------------------------------- the settle period


def test_a_too_recent_interval_defers_until_it_has_settled(asana_conn: FakeAsana, tmp_path: Path):
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
def test_a_too_recent_interval_is_rescheduled_when_not_deferrable(asana_conn: FakeAsana, tmp_path: Path):
    from airflow.exceptions import AirflowRescheduleException

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
    asana_conn: FakeAsana, tmp_path: Path, mocker
):
    sleep = mocker.patch("airflow_provider_asana_audit.operators.audit_log.time.sleep")
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    operator = _operator(
        destination=f"{tmp_path}/x.jsonl.gz", settle_period=timedelta(minutes=30), deferrable=False
    )

    operator.execute(_context(end - timedelta(hours=1), end))

    (waited,), _ = sleep.call_args
    assert 19 * 60 < waited <= 20 * 60


def test_resuming_after_the_deferral_exports_the_interval(asana_conn: FakeAsana, tmp_path: Path):
    operator = _operator(destination=f"{tmp_path}/x.jsonl.gz", settle_period=timedelta(minutes=30))

    summary = operator.execute_complete(_context(), event={"status": "success"})

    assert read_events(Path(summary["path"])) == asana_conn.ground_truth(START, END)


# ---------------------------------------------------------------- storage and output


def test_the_summary_and_manifest_describe_the_file_and_hold_no_token(asana_conn: FakeAsana, tmp_path: Path):
    operator = _operator(destination=ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz"))

    summary = operator.execute(_context())

    truth = asana_conn.ground_truth(START, END)
    assert set(summary) == {"path", "events", "start_at", "end_at", "pages", "sha256", "manifest"}
    assert summary["events"] == len(truth)
    assert summary["pages"] >= 1
    assert (tmp_path / "day.jsonl.gz").read_bytes() == serialise(truth, compressed=True)
    manifest = json.loads((tmp_path / "day.jsonl.gz.manifest.json").read_text())
    assert manifest["sha256"] == summary["sha256"]
    assert manifest["package_version"]
    assert datetime.fromisoformat(manifest["exported_at"].replace("Z", "+00:00"))
    for text in (json.dumps(summary), json.dumps(manifest)):
        assert asana_conn.token not in text


def test_the_default_base_path_comes_from_the_airflow_config(
    asana_conn: FakeAsana, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__BASE_PATH", f"file://{tmp_path}/configured")

    summary = _operator().execute(_context())

    assert summary["path"].startswith(f"file://{tmp_path}/configured/workspace_gid=")
    assert f"date={START:%Y-%m-%d}" in summary["path"]


@pytest.mark.parametrize(
    ("destination", "advice"),
    [
        ("s3://bucket/asana/day.jsonl.gz", "apache-airflow-providers-amazon"),
        ("gs://bucket/asana/day.jsonl.gz", "apache-airflow-providers-google"),
        ("abfs://container/asana/day.jsonl.gz", "apache-airflow-providers-microsoft-azure"),
        ("nosuchfs://bucket/day.jsonl.gz", "install the Airflow provider that registers"),
    ],
)
def test_a_destination_without_filesystem_support_names_what_to_install(
    asana_conn: FakeAsana, destination: str, advice: str
):
    operator = _operator(destination=destination)

    with pytest.raises(AsanaAuditLogConfigError, match=advice):
        operator.execute(_context())

    assert asana_conn.stats.requests == 0


def _pages(*pages: list[dict[str, Any]], then: BaseException | None = None) -> Any:
    def iter_pages(self: AsanaAuditLogHook, *args: Any, **kwargs: Any) -> Iterator[Page]:
        for events in pages:
            yield Page(events=events, next_offset="next")
        if then is not None:
            raise then

    return iter_pages


def test_a_killed_export_leaves_the_previous_file_and_no_staging_object(
    asana_conn: FakeAsana, tmp_path: Path, mocker
):
    destination = tmp_path / "day.jsonl.gz"
    _operator(destination=str(destination)).execute(_context())
    before = destination.read_bytes()
    manifest_before = (tmp_path / "day.jsonl.gz.manifest.json").read_bytes()
    first_page = asana_conn.ground_truth(START, END)[:3]
    mocker.patch.object(AsanaAuditLogHook, "read_pages", _pages(first_page, then=KeyboardInterrupt()))

    with pytest.raises(KeyboardInterrupt):
        _operator(destination=str(destination)).execute(_context())

    assert destination.read_bytes() == before
    assert (tmp_path / "day.jsonl.gz.manifest.json").read_bytes() == manifest_before
    assert _files(tmp_path) == ["day.jsonl.gz", "day.jsonl.gz.manifest.json"]


def test_events_outside_the_interval_are_dropped(asana_conn: FakeAsana, tmp_path: Path, mocker):
    truth = asana_conn.ground_truth(START, END)
    before = {**truth[0], "gid": "1", "created_at": "2000-01-01T00:00:00.000Z"}
    after = {**truth[-1], "gid": "2", "created_at": format_instant(END)}
    pages = [[before, truth[0], truth[1]], [*truth[2:], after]]
    mocker.patch.object(AsanaAuditLogHook, "read_pages", _pages(*pages))

    summary = _operator(destination=f"{tmp_path}/day.jsonl").execute(_context())

    assert read_events(tmp_path / "day.jsonl") == truth
    assert summary["events"] == len(truth)


def test_a_stale_manifest_is_removed_before_different_bytes_replace_the_file(
    asana_conn: FakeAsana, tmp_path: Path, mocker
):
    destination = tmp_path / "day.jsonl"
    _operator(destination=str(destination)).execute(_context())
    asana_conn.append_events(2, created_at=START + timedelta(hours=1))
    seen: list[bool] = []
    rename = ObjectStoragePath.rename

    def spy(self: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        if str(target).endswith("day.jsonl"):
            seen.append((tmp_path / "day.jsonl.manifest.json").exists())
        return rename(self, target, *args, **kwargs)

    mocker.patch.object(ObjectStoragePath, "rename", spy)

    summary = _operator(destination=str(destination)).execute(_context())

    assert seen == [False]
    manifest = json.loads((tmp_path / "day.jsonl.manifest.json").read_text())
    assert manifest["sha256"] == summary["sha256"]
    assert read_events(destination) == asana_conn.ground_truth(START, END)
