"""
docs/manifest.schema.json describes the manifests the export operator really writes.

Real manifests, from exports of the stand-in (``tests/docs/conftest.py``: gzip files in the default
layout and a filtered plain ``.jsonl`` file, written by the operator outside a task; and the example DAGs'
archive, written by real task instances, one day re-exported after late events), validate against it;
its properties are exactly the keys a manifest has; and the examples in docs/output.md validate too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.docs.conftest import LATE_EVENTS, DocsArchive, DocsExports
from tests.docs.markdown import REPO, blocks

SCHEMA_PATH = REPO / "docs" / "manifest.schema.json"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _manifests(exports: DocsExports) -> list[Path]:
    found = sorted(exports.base.rglob("*.manifest.json"))
    found.append(exports.filtered.with_name(exports.filtered.name + ".manifest.json"))
    return found


def _load(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def _validate(manifest: Any) -> None:
    jsonschema.Draft202012Validator(_schema()).validate(manifest)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_real_manifests_validate(docs_exports: DocsExports, docs_archive: DocsArchive) -> None:
    manifests = _manifests(docs_exports) + docs_archive.manifests()
    assert len(manifests) == 4 + len(docs_archive.days)
    formats = set()
    for path in manifests:
        manifest = _load(path)
        _validate(manifest)
        formats.add(manifest["format"])
        data = path.with_name(path.name.removesuffix(".manifest.json")).read_bytes()
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["bytes"] == len(data)
    assert formats == {"jsonl", "jsonl.gz"}


def test_outside_a_task_nothing_is_recorded_of_airflow(docs_exports: DocsExports) -> None:
    for path in _manifests(docs_exports):
        manifest = _load(path)
        assert manifest["exported_by"] is None
        assert manifest["changes"] == []


def test_a_task_records_itself(docs_archive: DocsArchive) -> None:
    day = docs_archive.days[1]
    manifest = _load(docs_archive.file(day).with_name(docs_archive.file(day).name + ".manifest.json"))
    by = manifest["exported_by"]
    assert (by["dag_id"], by["task_id"], by["map_index"], by["try_number"]) == (
        "example_asana_audit_export",
        "export_audit_log",
        -1,
        1,
    )
    assert (by["data_interval_start"], by["data_interval_end"]) == (manifest["start_at"], manifest["end_at"])


def test_a_reexport_with_late_events_records_the_change(docs_archive: DocsArchive) -> None:
    first, again = docs_archive.first_manifest, docs_archive.reexport_manifest
    _validate(again)
    assert first["changes"] == []
    (change,) = again["changes"]
    assert change == docs_archive.reexport_xcom["change"]
    assert change["detected_at"] == again["exported_at"]
    assert (change["previous_sha256"], change["previous_bytes"], change["previous_events"]) == (
        first["sha256"],
        first["bytes"],
        first["events"],
    )
    assert change["previous_exported_at"] == first["exported_at"]
    assert (change["added_events"], change["removed_events"]) == (LATE_EVENTS, 0)
    assert change["previous_damaged"] is False
    assert again["events"] == first["events"] + LATE_EVENTS
    created = sorted(event["created_at"] for event in docs_archive.late)
    assert change["added_created_at"] == {"first": created[0], "last": created[-1]}
    assert again["exported_by"]["dag_id"] == "example_asana_audit_archive"


def test_filters_are_recorded(docs_exports: DocsExports) -> None:
    path = docs_exports.filtered.with_name(docs_exports.filtered.name + ".manifest.json")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    assert manifest["filters"] == {
        "event_type": "user_login_failed",
        "actor_type": None,
        "actor_gid": None,
        "resource_gid": None,
    }


def test_the_schema_names_exactly_the_keys_of_a_manifest(
    docs_exports: DocsExports, docs_archive: DocsArchive
) -> None:
    schema = _schema()
    for path in _manifests(docs_exports) + docs_archive.manifests():
        keys = set(_load(path))
        assert keys == set(schema["properties"]) == set(schema["required"]), path
    defs = schema["$defs"]
    assert set(docs_archive.reexport_manifest["exported_by"]) == set(defs["exportedBy"]["properties"])
    assert set(defs["exportedBy"]["properties"]) == set(defs["exportedBy"]["required"])
    (change,) = docs_archive.reexport_manifest["changes"]
    assert set(change) == set(defs["change"]["properties"]) == set(defs["change"]["required"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sha256", "not-a-digest"),
        ("events", -1),
        ("format", "csv"),
        ("start_at", "2026-11-24"),
        ("workspace_gid", "acme"),
        ("filters", {"event_type": None}),
        ("exported_by", "example_asana_audit_export"),
        ("exported_by", {"dag_id": "example_asana_audit_export"}),
        ("changes", None),
        ("changes", [{"added_events": 3}]),
    ],
)
def test_the_schema_rejects_a_wrong_manifest(docs_exports: DocsExports, key: str, value: Any) -> None:
    manifest = _load(_manifests(docs_exports)[0])
    manifest[key] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate(manifest)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("previous_sha256", "8911abe7"),
        ("added_events", -1),
        ("previous_exported_at", "yesterday"),
        ("added_created_at", {"first": "2026-11-22T13:07:00.000Z"}),
        ("previous_damaged", None),
        ("previous_damaged", "false"),
    ],
)
def test_the_schema_rejects_a_wrong_change(docs_archive: DocsArchive, key: str, value: Any) -> None:
    manifest = json.loads(json.dumps(docs_archive.reexport_manifest))
    manifest["changes"][0][key] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate(manifest)


def test_the_schema_requires_every_key_of_a_change(docs_archive: DocsArchive) -> None:
    for key in docs_archive.reexport_manifest["changes"][0]:
        manifest = json.loads(json.dumps(docs_archive.reexport_manifest))
        del manifest["changes"][0][key]
        with pytest.raises(jsonschema.ValidationError):
            _validate(manifest)


def test_the_examples_in_output_md_validate() -> None:
    examples = [
        json.loads(block.code)
        for block in blocks(Path("docs/output.md"))
        if block.language == "json" and '"sha256"' in block.code
    ]
    assert len(examples) == 2, "a first export's manifest and a re-export's"
    for example in examples:
        _validate(example)
        assert set(example) == set(_schema()["properties"])
    assert [len(example["changes"]) for example in examples] == [0, 1]


def test_every_manifest_key_is_described_in_output_md() -> None:
    page = (REPO / "docs" / "output.md").read_text(encoding="utf-8")
    defs = _schema()["$defs"]
    for key in [*_schema()["properties"], *defs["exportedBy"]["properties"], *defs["change"]["properties"]]:
        assert f"`{key}`" in page, key
