"""The default folder layout (``airflow_provider_asana_audit.layout``): names, and paths read back."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.layout import (
    default_relative_path,
    layout_entry,
    manifest_path,
    staged_file_name,
    staging_path,
)

START, END = datetime(2026, 11, 24, tzinfo=timezone.utc), datetime(2026, 11, 25, tzinfo=timezone.utc)
UNFILTERED = dict.fromkeys(("event_type", "actor_type", "actor_gid", "resource_gid"))


@pytest.mark.parametrize("filters", [UNFILTERED, {**UNFILTERED, "event_type": "user_login_failed"}])
def test_a_default_path_reads_back_as_its_workspace_interval_and_filters(
    filters: dict[str, str | None],
) -> None:
    relative = default_relative_path(workspace_gid="12", start_at=START, end_at=END, filters=filters)

    entry = layout_entry(relative)

    assert entry is not None
    assert (entry.kind, entry.workspace_gid, entry.date, entry.start_at, entry.end_at) == (
        "file",
        "12",
        "2026-11-24",
        START,
        END,
    )
    assert bool(entry.filter_suffix) == (filters != UNFILTERED)
    assert entry.file_relative_path == relative
    assert entry.manifest_relative_path == f"{relative}.manifest.json"


def test_manifests_and_staging_objects_read_back_as_the_file_they_belong_to() -> None:
    relative = default_relative_path(workspace_gid="12", start_at=START, end_at=END, filters=UNFILTERED)
    file = ObjectStoragePath(f"file:///base/{relative}")

    staging = staging_path(file)
    manifest = layout_entry(str(manifest_path(file)).removeprefix("file:///base/"))
    staged = layout_entry(f"{relative.rsplit('/', 1)[0]}/{staging.name}")

    assert staged_file_name(staging.name) == file.name
    assert staging.parent == file.parent
    assert staging.name.startswith(".")
    assert staging.name.endswith(".partial")
    assert manifest is not None
    assert (manifest.kind, manifest.file_name) == ("manifest", file.name)
    assert staged is not None
    assert (staged.kind, staged.file_name) == ("staging", file.name)


@pytest.mark.parametrize(
    "relative",
    [
        "workspace_gid=12/date=2026-11-24/notes.txt",
        "workspace_gid=x/date=2026-11-24/asana_audit_log_20261124T000000Z_20261125T000000Z.jsonl.gz",
        "date=2026-11-24/asana_audit_log_20261124T000000Z_20261125T000000Z.jsonl.gz",
        "workspace_gid=12/date=2026-11-24/asana_audit_log_20261199T000000Z_20261125T000000Z.jsonl.gz",
    ],
)
def test_anything_the_export_does_not_write_is_not_a_layout_entry(relative: str) -> None:
    assert layout_entry(relative) is None
    assert staged_file_name("day.jsonl.gz") is None
