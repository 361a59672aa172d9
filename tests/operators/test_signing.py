"""
Signed exports and seals through the operators: the export's ``signing_conn_id``, the sealing operator,
and the verify operator's ``public_keys``; the private key never reaches a log line, an XCom or a file.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.evidence import Record, SigningKey, record_sha256
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.operators.seal import AsanaAuditLogSealOperator
from airflow_provider_asana_audit.operators.verify import AsanaAuditLogVerifyOperator
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.exports import midnight

CONN_ID = "asana_audit_signing"
DAYS = [midnight(n) for n in (4, 3, 2)]


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    """A signing key in the connection ``asana_audit_signing``'s password."""
    key = SigningKey.generate()
    connection = {"conn_type": "generic", "password": key.export_private_pem()}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    return key


def _export(base: Path, day: Any, **kwargs: Any) -> dict[str, Any]:
    summary: dict[str, Any] = AsanaAuditLogExportOperator(
        task_id="export",
        base_path=f"file://{base}",
        start_at=day,
        end_at=day + timedelta(days=1),
        settle_period=timedelta(0),
        **kwargs,
    ).execute(context={})
    return summary


def _secret_parts(key: SigningKey) -> list[str]:
    """The private key's PEM and each line of its body: any copy of them, anywhere, is a leak."""
    pem = key.export_private_pem()
    return [pem, *(line for line in pem.splitlines() if line and not line.startswith("-----"))]


def test_a_signed_export_and_its_seal_leak_no_private_key(
    asana_conn: FakeAsana,
    key: SigningKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path / "archive"
    caplog.set_level(logging.DEBUG)

    summaries = [_export(base, day, signing_conn_id=CONN_ID) for day in DAYS]
    sealed = AsanaAuditLogSealOperator(
        task_id="seal", signing_conn_id=CONN_ID, base_path=f"file://{base}"
    ).execute(context={})

    records = sorted(base.rglob("*.record.json"))
    assert len(records) == len(DAYS)
    assert [summary["record"] for summary in summaries] == [
        record_sha256(Record.from_json(path.read_bytes())) for path in records
    ]
    (seal,) = sealed["seals"]
    out, err = capsys.readouterr()
    # Airflow 3's task loggers write through structlog to the standard streams; Airflow 2's to records.
    logged = out + err + caplog.text
    assert f"Publish this seal hash outside the archive: {seal['seal_sha256']}" in logged
    written = b"".join(path.read_bytes() for path in base.rglob("*") if path.is_file())
    shown = logged + json.dumps(summaries) + json.dumps(sealed)
    for part in _secret_parts(key):
        assert part not in shown
        assert part.encode() not in written
    assert key.fingerprint in shown  # what names the key is public


def test_sealing_again_with_nothing_new_writes_no_seal(
    asana_conn: FakeAsana, key: SigningKey, tmp_path: Path
) -> None:
    base = tmp_path / "archive"
    _export(base, DAYS[0], signing_conn_id=CONN_ID)
    seal = AsanaAuditLogSealOperator(task_id="seal", signing_conn_id=CONN_ID, base_path=f"file://{base}")
    assert len(seal.execute(context={})["seals"]) == 1

    assert seal.execute(context={})["seals"] == []
    assert len(list(base.rglob("seal_*.json"))) == 1


def test_signing_needs_the_default_layout_and_fails_before_reading(
    asana_conn: FakeAsana, key: SigningKey, tmp_path: Path
) -> None:
    operator = AsanaAuditLogExportOperator(
        task_id="export",
        destination=f"file://{tmp_path}/day.jsonl.gz",
        start_at=DAYS[0],
        end_at=DAYS[0] + timedelta(days=1),
        signing_conn_id=CONN_ID,
    )
    with pytest.raises(AsanaAuditLogConfigError, match="give base_path instead of destination"):
        operator.execute(context={})
    assert asana_conn.stats.requests == 0
    assert list(tmp_path.iterdir()) == []


def test_a_signing_connection_without_a_password_fails_before_reading(
    asana_conn: FakeAsana, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_SIGNING", json.dumps({"conn_type": "generic"}))
    with pytest.raises(AsanaAuditLogConfigError, match="has no password"):
        _export(tmp_path / "archive", DAYS[0], signing_conn_id=CONN_ID)
    assert asana_conn.stats.requests == 0
    assert not (tmp_path / "archive").exists()


def test_the_verify_operator_checks_the_evidence_with_the_public_keys(
    asana_conn: FakeAsana, key: SigningKey, tmp_path: Path
) -> None:
    base = tmp_path / "archive"
    for day in DAYS:
        _export(base, day, signing_conn_id=CONN_ID)
    (seal,) = AsanaAuditLogSealOperator(
        task_id="seal", signing_conn_id=CONN_ID, base_path=f"file://{base}"
    ).execute(context={})["seals"]
    public = tmp_path / "evidence.pub"
    public.write_text(key.public_key.pem)

    def verify(**kwargs: Any) -> dict[str, Any]:
        xcom: dict[str, Any] = AsanaAuditLogVerifyOperator(
            task_id="verify", base_path=f"file://{base}", fail_when_not_whole=False, **kwargs
        ).execute(context={})
        return xcom

    checked = verify(public_keys=[str(public)], published_seal_hashes=[seal["seal_sha256"]])
    assert checked["whole"] is True
    assert checked["evidence"] == {"keys": [key.fingerprint], "published_seal_hashes": 1, "problems": 0}

    other = SigningKey.generate().public_key
    refused = verify(public_keys=[other.pem])
    assert refused["whole"] is False
    # No seal this keyring accepts: the series counts as unsealed too.
    assert set(refused["problems"]) == {"signature_unknown_key", "seal_missing"}
    assert refused["evidence"]["keys"] == [other.fingerprint]
