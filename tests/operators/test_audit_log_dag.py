"""
The export operator in real DAG runs (``dag.test()``) against the stand-in.

Each file is compared with the stand-in's ground truth, event for event and byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.query import FILTER_NAMES
from airflow_provider_asana_audit.testing import FakeAsana, Fault
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers.clients import FAST_RETRY_ARGS
from tests.helpers.dags import DagRunResult
from tests.helpers.exports import midnight, read_events, serialise

RunExport = Callable[..., DagRunResult]

#: One file per data interval, named by the interval's start day (exercises templating).
DAILY = "{{ data_interval_start.strftime('%Y-%m-%d') }}"


def _destination(export_dir: Path, suffix: str = ".jsonl.gz") -> str:
    return f"{export_dir}/{DAILY}{suffix}"


def _manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(path.with_name(path.name + ".manifest.json").read_text())
    return manifest


def _leftovers(export_dir: Path) -> list[str]:
    return [p.name for p in export_dir.rglob("*") if p.name.endswith(".partial")]


def test_consecutive_daily_runs_each_export_exactly_their_interval(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    run_ids: dict[int, str] = {}
    for days_ago in (4, 3, 2):
        interval_end = midnight(days_ago)
        run = run_export(interval_end, destination=_destination(export_dir), page_size=7)
        assert run.task_state == "success"
        assert run.xcom("export")["change"] is None
        run_ids[days_ago] = run.dag_run.run_id

    for days_ago in (4, 3, 2):
        start, end = midnight(days_ago + 1), midnight(days_ago)
        path = export_dir / f"{start:%Y-%m-%d}.jsonl.gz"
        truth = asana_conn.ground_truth(start, end)
        assert truth, "the stand-in should hold events on every recent day"
        assert read_events(path) == truth
        data = path.read_bytes()
        assert data == serialise(truth, compressed=True)
        manifest = _manifest(path)
        assert manifest["events"] == len(truth)
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["bytes"] == len(data)
        assert manifest["start_at"] == f"{start:%Y-%m-%dT%H:%M:%S}.000Z"
        assert manifest["end_at"] == f"{end:%Y-%m-%dT%H:%M:%S}.000Z"
        assert manifest["format"] == "jsonl.gz"
        assert manifest["workspace_gid"] == asana_conn.workspace_gid
        assert manifest["exported_by"] == {
            "dag_id": "asana_audit_export_under_test",
            "task_id": "export",
            "run_id": run_ids[days_ago],
            "map_index": -1,
            "try_number": 1,
            "data_interval_start": manifest["start_at"],
            "data_interval_end": manifest["end_at"],
        }
        assert manifest["changes"] == []
    assert _leftovers(export_dir) == []


def test_rerun_of_an_interval_rewrites_identical_bytes(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    interval_end = midnight(2)
    path = export_dir / f"{midnight(3):%Y-%m-%d}.jsonl.gz"
    assert run_export(interval_end, destination=_destination(export_dir)).task_state == "success"
    first = path.read_bytes()
    first_manifest = _manifest(path)

    rerun = run_export(interval_end, destination=_destination(export_dir), page_size=3)
    assert rerun.task_state == "success"

    assert path.read_bytes() == first
    assert first[4:8] == b"\0\0\0\0", "the gzip header's mtime must be 0"
    assert _manifest(path)["sha256"] == first_manifest["sha256"]
    # The same bytes: nothing changed, so nothing is recorded.
    assert rerun.xcom("export")["change"] is None
    assert _manifest(path)["changes"] == []
    assert _manifest(path)["exported_by"]["run_id"] == rerun.dag_run.run_id


def test_a_concurrent_export_writes_the_same_bytes_as_a_sequential_one(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    start, end = midnight(3), midnight(2)
    path = export_dir / f"{start:%Y-%m-%d}.jsonl.gz"
    assert run_export(end, destination=_destination(export_dir), page_size=5).task_state == "success"
    sequential = path.read_bytes()
    sequential_requests = asana_conn.stats.requests
    asana_conn.inject(Fault.RATE_LIMIT, retry_after=0, when=lambda request: request.has_offset)
    asana_conn.inject(Fault.UNAVAILABLE_503, count=2)
    asana_conn.inject(Fault.EXPIRE_OFFSET)

    run = run_export(end, destination=_destination(export_dir), page_size=5, concurrency=8)

    assert run.task_state == "success"
    assert asana_conn.pending_faults == []
    assert path.read_bytes() == sequential
    assert sequential == serialise(asana_conn.ground_truth(start, end), compressed=True)
    assert asana_conn.stats.requests > sequential_requests, "the concurrent export made its own requests"


def test_failure_part_way_leaves_the_previous_file_and_manifest_untouched(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    interval_end = midnight(2)
    start = midnight(3)
    path = export_dir / f"{start:%Y-%m-%d}.jsonl.gz"
    assert run_export(interval_end, destination=_destination(export_dir), page_size=5).task_state == "success"
    before = path.read_bytes()
    manifest_before = path.with_name(path.name + ".manifest.json").read_bytes()
    # New events would change the file, but the API fails for good after the first page.
    asana_conn.append_events(3, created_at=start + timedelta(hours=23))
    asana_conn.inject(Fault.SERVER_ERROR_500, count=100, when=lambda request: request.has_offset)

    run = run_export(interval_end, destination=_destination(export_dir), page_size=5)

    assert run.task_state == "failed"
    assert asana_conn.stats.by_status[200] >= 2, "the export must have started writing before failing"
    assert path.read_bytes() == before
    assert path.with_name(path.name + ".manifest.json").read_bytes() == manifest_before
    assert _leftovers(export_dir) == []


def test_transient_faults_during_export_still_give_the_exact_ground_truth(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    start, end = midnight(3), midnight(2)
    for fault in (Fault.RATE_LIMIT, Fault.SERVER_ERROR_500, Fault.DROP, Fault.TRUNCATE, Fault.NOT_JSON):
        asana_conn.inject(fault, retry_after=0, when=lambda request: request.has_offset)
    asana_conn.inject(Fault.EXPIRE_OFFSET, count=2)

    run = run_export(
        end,
        destination=_destination(export_dir),
        page_size=4,
        request_retry={**FAST_RETRY_ARGS, "max_attempts": 10},
    )

    assert run.task_state == "success"
    assert asana_conn.pending_faults == []
    path = export_dir / f"{start:%Y-%m-%d}.jsonl.gz"
    truth = asana_conn.ground_truth(start, end)
    assert read_events(path) == truth
    assert path.read_bytes() == serialise(truth, compressed=True)


def test_a_run_whose_interval_has_not_settled_defers_then_exports(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=1)
    start = end - timedelta(hours=2)

    run = run_export(
        midnight(2),
        destination=f"{export_dir}/recent.jsonl.gz",
        start_at=start.isoformat(),
        end_at=end.isoformat(),
        settle_seconds=3,
        deferrable=True,
    )

    assert run.task_state == "success"
    settled_at = (end + timedelta(seconds=3)).timestamp()
    assert asana_conn.requests[0].time >= settled_at, "nothing may be read before the settle period ends"
    assert read_events(export_dir / "recent.jsonl.gz") == asana_conn.ground_truth(start, end)


def test_plain_destination_is_uncompressed_json_lines(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    start, end = midnight(3), midnight(2)

    run = run_export(end, destination=_destination(export_dir, ".jsonl"))

    assert run.task_state == "success"
    path = export_dir / f"{start:%Y-%m-%d}.jsonl"
    assert path.read_bytes() == serialise(asana_conn.ground_truth(start, end), compressed=False)
    assert _manifest(path)["format"] == "jsonl"


def test_default_destination_is_partitioned_by_workspace_and_interval(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    start, end = midnight(3), midnight(2)

    run = run_export(end, base_path=f"file://{export_dir}")

    assert run.task_state == "success"
    path = (
        export_dir
        / f"workspace_gid={asana_conn.workspace_gid}"
        / f"date={start:%Y-%m-%d}"
        / f"asana_audit_log_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.jsonl.gz"
    )
    assert read_events(path) == asana_conn.ground_truth(start, end)


def test_filters_are_templated_and_applied(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    start, end = midnight(3), midnight(2)
    event_type = asana_conn.ground_truth(start, end)[0]["event_type"]

    run = run_export(
        end,
        destination=_destination(export_dir),
        event_type="{{ params.event_type }}",
        params={"event_type": event_type},
    )

    assert run.task_state == "success"
    path = export_dir / f"{start:%Y-%m-%d}.jsonl.gz"
    assert read_events(path) == asana_conn.ground_truth(start, end, event_type=event_type)
    assert _manifest(path)["filters"] == {
        "event_type": event_type,
        "actor_type": None,
        "actor_gid": None,
        "resource_gid": None,
    }


def test_a_filter_template_that_renders_none_exports_unfiltered(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    start, end = midnight(3), midnight(2)

    run = run_export(
        end,
        destination=_destination(export_dir),
        event_type="{{ params.event_type }}",  # renders the string "None"
        params={"event_type": None},
    )

    assert run.task_state == "success"
    path = export_dir / f"{start:%Y-%m-%d}.jsonl.gz"
    assert read_events(path) == asana_conn.ground_truth(start, end)
    assert _manifest(path)["filters"] == dict.fromkeys(FILTER_NAMES)


def test_a_run_with_an_empty_data_interval_fails_and_writes_nothing(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    # schedule=None: a manual run's data interval is [logical_date, logical_date], on Airflow 2 and 3.
    run = run_export(midnight(2), schedule=None, destination=_destination(export_dir))

    assert run.task_state == "failed"
    assert list(export_dir.iterdir()) == []
    assert asana_conn.stats.requests == 0


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="every Airflow 2 run has a logical date")
def test_a_manual_airflow_3_run_without_logical_date_fails_and_writes_nothing(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    run = run_export(None, destination=f"{export_dir}/manual.jsonl.gz")

    assert run.task_state == "failed"
    assert list(export_dir.iterdir()) == []
    assert asana_conn.stats.requests == 0


def test_an_interval_outside_retention_is_skipped_when_asked(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    run = run_export(midnight(120), destination=_destination(export_dir), on_retention_violation="skip")

    assert run.task_state == "skipped"
    assert list(export_dir.iterdir()) == []
    assert asana_conn.stats.requests == 0


def test_an_interval_outside_retention_fails_by_default(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    run = run_export(midnight(120), destination=_destination(export_dir))

    assert run.task_state == "failed"
    assert list(export_dir.iterdir()) == []


def test_the_task_log_shows_progress_and_never_the_token(
    run_export: RunExport,
    asana_conn: FakeAsana,
    export_dir: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    asana_conn.inject(Fault.UNAVAILABLE_503, when=lambda request: request.has_offset)
    asana_conn.inject(Fault.EXPIRE_OFFSET)

    run = run_export(midnight(2), destination=_destination(export_dir), page_size=5)

    assert run.task_state == "success"
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "Asana audit log: read" in logged  # the client's progress summary: events, pages, events/s
    assert "events/s" in logged
    assert asana_conn.token not in logged
    files = [path for path in export_dir.rglob("*") if path.is_file()]
    assert len(files) == 2  # the export and its manifest
    for path in files:
        assert asana_conn.token.encode() not in path.read_bytes()
