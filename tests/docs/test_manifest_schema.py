"""
docs/manifest.schema.json describes the manifests the export operator really writes.

Real manifests, from exports of the stand-in (``tests/docs/conftest.py``: gzip files in the default
layout and a filtered plain ``.jsonl`` file), validate against it; its properties are exactly the keys
a manifest has; and the example in docs/output.md validates too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.docs.conftest import DocsExports
from tests.docs.markdown import REPO, blocks

SCHEMA_PATH = REPO / "docs" / "manifest.schema.json"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _manifests(exports: DocsExports) -> list[Path]:
    found = sorted(exports.base.rglob("*.manifest.json"))
    found.append(exports.filtered.with_name(exports.filtered.name + ".manifest.json"))
    return found


def _validate(manifest: Any) -> None:
    jsonschema.Draft202012Validator(_schema()).validate(manifest)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_real_manifests_validate(docs_exports: DocsExports) -> None:
    manifests = _manifests(docs_exports)
    assert len(manifests) == 4
    formats = set()
    for path in manifests:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        _validate(manifest)
        formats.add(manifest["format"])
        data = path.with_name(path.name.removesuffix(".manifest.json")).read_bytes()
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["bytes"] == len(data)
    assert formats == {"jsonl", "jsonl.gz"}


def test_filters_are_recorded(docs_exports: DocsExports) -> None:
    path = docs_exports.filtered.with_name(docs_exports.filtered.name + ".manifest.json")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    assert manifest["filters"] == {
        "event_type": "user_login_failed",
        "actor_type": None,
        "actor_gid": None,
        "resource_gid": None,
    }


def test_the_schema_names_exactly_the_keys_of_a_manifest(docs_exports: DocsExports) -> None:
    schema = _schema()
    for path in _manifests(docs_exports):
        keys = set(json.loads(path.read_text(encoding="utf-8")))
        assert keys == set(schema["properties"]) == set(schema["required"]), path


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sha256", "not-a-digest"),
        ("events", -1),
        ("format", "csv"),
        ("start_at", "2026-11-24"),
        ("workspace_gid", "acme"),
        ("filters", {"event_type": None}),
    ],
)
def test_the_schema_rejects_a_wrong_manifest(docs_exports: DocsExports, key: str, value: Any) -> None:
    manifest = json.loads(_manifests(docs_exports)[0].read_text(encoding="utf-8"))
    manifest[key] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate(manifest)


def test_the_example_in_output_md_validates() -> None:
    examples = [
        json.loads(block.code)
        for block in blocks(Path("docs/output.md"))
        if block.language == "json" and '"sha256"' in block.code
    ]
    assert len(examples) == 1
    _validate(examples[0])
    assert set(examples[0]) == set(_schema()["properties"])


def test_every_manifest_key_is_described_in_output_md() -> None:
    page = (REPO / "docs" / "output.md").read_text(encoding="utf-8")
    for key in _schema()["properties"]:
        assert f"`{key}`" in page, key
