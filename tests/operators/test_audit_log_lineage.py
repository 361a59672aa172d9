"""
The export operator's OpenLineage: the audit log in, the file and its manifest out, by their final names.

Airflow's own lineage from object-storage writes would name the hidden ``.partial`` staging object; the
operator's ``get_openlineage_facets_on_complete`` takes precedence. The last test runs a real DAG through
``airflow dags test`` with the OpenLineage listener writing to a file, and reads what it emitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.clients import FAST_RETRY_ARGS
from tests.helpers.exports import midnight

START, END = midnight(3), midnight(2)
#: What the operator reads of a task's context when called directly.
_CONTEXT: Any = {"data_interval_start": START, "data_interval_end": END}


def _names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(dataset.namespace, dataset.name) for dataset in datasets]


def _host(fake: FakeAsana) -> str:
    return fake.base_url.split("://", 1)[1].split("/", 1)[0]


def test_the_lineage_names_the_audit_log_and_the_final_file_and_manifest(
    asana_conn: FakeAsana, export_dir: Path
) -> None:
    operator = AsanaAuditLogExportOperator(
        task_id="export", destination=f"{export_dir}/day.jsonl.gz", settle_period=timedelta(0)
    )
    summary = operator.execute(_CONTEXT)

    lineage = operator.get_openlineage_facets_on_complete(None)

    assert _names(lineage.inputs) == [
        (f"asana://{_host(asana_conn)}", f"workspaces/{asana_conn.workspace_gid}/audit_log_events")
    ]
    assert _names(lineage.outputs) == [
        ("file", f"{export_dir}/day.jsonl.gz"),
        ("file", f"{export_dir}/day.jsonl.gz.manifest.json"),
    ]
    statistics = lineage.outputs[0].outputFacets["outputStatistics"]
    assert statistics.rowCount == summary["events"] == len(asana_conn.ground_truth(START, END))
    assert statistics.size == (export_dir / "day.jsonl.gz").stat().st_size


def test_a_failed_export_names_only_what_it_read(asana_conn: FakeAsana, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    operator = AsanaAuditLogExportOperator(
        task_id="export", destination=f"{blocker}/day.jsonl.gz", settle_period=timedelta(0)
    )
    with pytest.raises(AsanaAuditLogConfigError, match="Cannot write the export to"):
        operator.execute(_CONTEXT)  # under a regular file; the point is the lineage afterwards

    lineage = operator.get_openlineage_facets_on_complete(None)

    assert [name for _, name in _names(lineage.inputs)] == [
        f"workspaces/{asana_conn.workspace_gid}/audit_log_events"
    ]
    assert lineage.outputs == []


def test_the_openlineage_listener_emits_the_final_file_not_the_staging_object(
    export_dag_file: Path, asana_conn: FakeAsana, export_dir: Path, tmp_path: Path
) -> None:
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "asana-audit-tests",
        "ASANA_EXPORT_TEST_OPTIONS": json.dumps(
            {"destination": f"{export_dir}/day.jsonl.gz", "request_retry": FAST_RETRY_ARGS}
        ),
    }
    # A process of its own: the OpenLineage provider reads its configuration once per process.
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "asana_audit_export_under_test", END.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (export_dir / "day.jsonl.gz.manifest.json").exists()

    emitted = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    completes = [
        event
        for event in emitted
        if event.get("eventType") == "COMPLETE" and event["job"]["name"].endswith(".export")
    ]
    assert len(completes) == 1, [(e.get("eventType"), e["job"]["name"]) for e in emitted]
    (complete,) = completes
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == [
        ("file", f"{export_dir}/day.jsonl.gz"),
        ("file", f"{export_dir}/day.jsonl.gz.manifest.json"),
    ]
    assert [d["name"] for d in complete["inputs"]] == [
        f"workspaces/{asana_conn.workspace_gid}/audit_log_events"
    ]
    assert ".partial" not in events_file.read_text()
