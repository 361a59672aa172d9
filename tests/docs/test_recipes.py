"""
The recipes of docs/recipes.md against a real export: the DuckDB query answers its question right,
also with a filtered export of the same events kept under the same base.

The exports are made from the stand-in by the export operator (``tests/docs/conftest.py``); the
answer is computed again here, in Python, from the stand-in's ground truth.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.timeutils import parse_instant
from tests.docs.conftest import DocsExports
from tests.docs.markdown import Block, blocks
from tests.docs.samples import substitute

THIS_FILE = "tests/docs/test_recipes.py"


def _recipes() -> list[Block]:
    """The blocks of docs/recipes.md that this file runs."""
    return [
        block
        for block in blocks(Path("docs/recipes.md"))
        if block.directive == "run by" and block.argument == THIS_FILE
    ]


def _query(exports: DocsExports, base: Path | None = None) -> str:
    """The recipe's SQL, reading the exports under ``base`` (default: ``exports.base``)."""
    (block,) = _recipes()
    assert block.language == "sql"
    address = exports.fake.base_url.split("://", 1)[1].split("/", 1)[0]
    return substitute(block.code, standin_address=address, export_directory=base or exports.base)


def _glob(sql: str) -> str:
    """The files the query reads."""
    globs: list[str] = re.findall(r"read_ndjson_objects\('([^']+)'\)", sql)
    (glob,) = globs
    return glob


def _expected_failed_logins(exports: DocsExports) -> list[tuple[Any, ...]]:
    """Who failed to log in most in the last 7 days, from the ground truth of the exported days."""
    since = datetime.now(timezone.utc) - timedelta(days=7)
    counts: Counter[str | None] = Counter()
    addresses: defaultdict[str | None, set[str]] = defaultdict(set)
    for event in exports.fake.ground_truth(exports.start, exports.end, event_type="user_login_failed"):
        if parse_instant(event["created_at"], name="created_at") < since:
            continue
        account = (event.get("resource") or {}).get("email")
        counts[account] += 1
        address = (event.get("context") or {}).get("client_ip_address")
        if address is not None:
            addresses[account].add(address)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
    return [(account, count, len(addresses[account])) for account, count in ranked[:10]]


def _fetch(sql: str) -> list[tuple[Any, ...]]:
    relation = duckdb.sql(sql)
    assert relation is not None, "the query returns no rows"
    return relation.fetchall()


def test_recipes_has_exactly_the_duckdb_query_for_this_file() -> None:
    assert [block.language for block in _recipes()] == ["sql"]


def test_duckdb_recipe_finds_who_failed_to_log_in_most(docs_exports: DocsExports) -> None:
    expected = _expected_failed_logins(docs_exports)
    assert len(expected) >= 3, "the exported days should hold failed logins by several accounts"
    assert expected[0][1] > 1

    rows = _fetch(_query(docs_exports))

    assert rows == expected


def test_duckdb_recipe_reads_only_the_export_files(docs_exports: DocsExports) -> None:
    """The recipe's glob takes the events files, not the manifests beside them."""
    glob = _glob(_query(docs_exports))
    ((count,),) = _fetch(f"SELECT count(*) FROM read_ndjson_objects('{glob}')")
    assert count == len(docs_exports.fake.ground_truth(docs_exports.start, docs_exports.end))
    assert sorted(p.name for p in docs_exports.base.rglob("*.manifest.json")) != []


def test_duckdb_recipe_counts_once_beside_a_filtered_export(
    docs_exports: DocsExports, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filtered export of the failed logins in the same layout (``_f<hash>``) is not read twice."""
    base = tmp_path / "exports"
    shutil.copytree(docs_exports.base, base)
    newest = docs_exports.end - timedelta(days=1)
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", docs_exports.fake.connection_json())
    AsanaAuditLogExportOperator(
        task_id="export_failed_logins",
        start_at=newest,
        end_at=docs_exports.end,
        base_path=f"file://{base}",
        event_type="user_login_failed",
        settle_period=timedelta(0),
        request_retry=RetryPolicy(backoff_base=0.01, backoff_max=0.05),
    ).execute(context={})
    (filtered,) = base.rglob("*_f*.jsonl.gz")
    failed_that_day = len(
        docs_exports.fake.ground_truth(newest, docs_exports.end, event_type="user_login_failed")
    )
    assert failed_that_day > 0
    sql = _query(docs_exports, base)
    every_file = _glob(sql).rsplit("/", 1)[0] + "/*.jsonl.gz"
    ((naive,),) = _fetch(f"SELECT count(*) FROM read_ndjson_objects('{every_file}')")
    ((counted,),) = _fetch(f"SELECT count(*) FROM read_ndjson_objects('{_glob(sql)}')")

    assert naive == counted + failed_that_day, f"{filtered} should be where a careless glob finds it"
    assert counted == len(docs_exports.fake.ground_truth(docs_exports.start, docs_exports.end))
    assert _fetch(sql) == _expected_failed_logins(docs_exports)
