"""The OpenLineage names of what an export reads and writes (``airflow_provider_asana_audit.lineage``)."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.lineage import audit_log_dataset, export_lineage, storage_dataset


def test_the_audit_log_is_named_by_api_host_and_endpoint_path() -> None:
    dataset = audit_log_dataset(base_url="https://app.asana.com/api/1.0", workspace_gid="1200000000000001")

    assert (dataset.namespace, dataset.name) == (
        "asana://app.asana.com",
        "workspaces/1200000000000001/audit_log_events",
    )


@pytest.mark.parametrize(
    ("path", "namespace", "name"),
    [
        ("file:///data/asana/day.jsonl.gz", "file", "/data/asana/day.jsonl.gz"),
        ("/data/asana/day.jsonl.gz", "file", "/data/asana/day.jsonl.gz"),
        ("memory://bucket/asana/day.jsonl.gz", "memory://bucket", "asana/day.jsonl.gz"),
    ],
)
def test_files_are_named_as_openlineage_names_them(path: str, namespace: str, name: str) -> None:
    storage_path = ObjectStoragePath(path)
    if storage_path.protocol == "memory" and not storage_path.bucket:
        # Airflow 2's object storage does not split a bucket off memory:// paths.
        namespace, name = "memory://", str(storage_path.path)

    dataset = storage_dataset(storage_path)

    assert (dataset.namespace, dataset.name) == (namespace, name)


def test_an_exported_file_carries_its_row_count_and_size() -> None:
    dataset = storage_dataset(ObjectStoragePath("file:///data/day.jsonl.gz"), rows=42, size=1234)

    statistics = dataset.outputFacets["outputStatistics"]
    assert (statistics.rowCount, statistics.size) == (42, 1234)


def test_an_export_that_never_read_its_connection_has_no_lineage() -> None:
    lineage = export_lineage()

    assert (lineage.inputs, lineage.outputs) == ([], [])
