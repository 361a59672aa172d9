"""Seals: the Merkle root, making and verifying seals, their chain, and an archive against them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_asana_audit.evidence import (
    EvidenceProblem,
    Keyring,
    Record,
    Seal,
    SealLink,
    SigningKey,
    audit_seals,
    make_seal,
    merkle_root,
    record_sha256,
    seal_hash,
    seal_objects,
    sign_record,
    verify_seal,
)
from airflow_provider_asana_audit.evidence.canonical import canonical_json
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogSignatureError
from airflow_provider_asana_audit.layout import default_relative_path
from airflow_provider_asana_audit.timeutils import format_instant
from tests.evidence.archive import DAY0, FILTERS, WORKSPACE

KEY = SigningKey.generate()
KEYRING = Keyring([KEY.public_key])
LEAVES = [(f"2026-11-{22 + day}T00:00:00.000Z", hashlib.sha256(bytes([day])).hexdigest()) for day in range(5)]


def _leaf(leaf: tuple[str, str]) -> bytes:
    return hashlib.sha256(b"\x00" + canonical_json(list(leaf))).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _record(day: int, *, events: int = 5, supersedes: Record | None = None) -> Record:
    start = DAY0 + timedelta(days=day)
    return sign_record(
        key=KEY,
        workspace_gid=WORKSPACE,
        filters=FILTERS,
        start_at=format_instant(start),
        end_at=format_instant(start + timedelta(days=1)),
        path=default_relative_path(
            workspace_gid=WORKSPACE, start_at=start, end_at=start + timedelta(days=1), filters=FILTERS
        ),
        sha256=hashlib.sha256(f"{day}/{events}".encode()).hexdigest(),
        bytes=100 + events,
        events=events,
        manifest_sha256="b" * 64,
        exported_at=format_instant(start + timedelta(days=1, hours=1)),
        exported_by=None,
        supersedes=supersedes,
    )


def _seal(records: list[Record], previous: Seal | None = None, *, day: int = 10) -> Seal:
    return make_seal(
        key=KEY,
        workspace_gid=WORKSPACE,
        filters=FILTERS,
        records=records,
        previous=previous,
        sealed_at=DAY0 + timedelta(days=day),
    )


def test_the_merkle_root_follows_rfc_6962() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle_root(LEAVES[:1]) == _leaf(LEAVES[0]).hex()
    a, b, c = (_leaf(leaf) for leaf in LEAVES[:3])
    assert merkle_root(LEAVES[:3]) == _node(_node(a, b), c).hex()
    assert merkle_root(reversed(LEAVES[:3])) == merkle_root(LEAVES[:3])  # leaves are sorted


@pytest.mark.parametrize("index", range(len(LEAVES)))
@pytest.mark.parametrize("part", [0, 1])
def test_the_merkle_root_changes_when_any_leaf_changes(index: int, part: int) -> None:
    changed = list(LEAVES)
    start, sha = changed[index]
    changed[index] = (start.replace("T00", "T01"), sha) if part == 0 else (start, "f" * 64)
    assert merkle_root(changed) != merkle_root(LEAVES)
    assert merkle_root(LEAVES[:index] + LEAVES[index + 1 :]) != merkle_root(LEAVES)


def test_leaves_are_ordered_by_instant_not_by_text() -> None:
    early, late = ("2026-11-22T00:00:00.000Z", "a" * 64), ("2026-11-22T00:00:00.000500Z", "b" * 64)
    assert late[0] < early[0]  # as text, the later instant sorts first
    assert merkle_root([late, early]) == _node(_leaf(early), _leaf(late)).hex()


def test_a_seal_verifies_and_round_trips() -> None:
    records = [_record(day) for day in range(3)]
    seal = _seal(records)
    verify_seal(seal, KEYRING)
    assert (seal.sequence, seal.previous, seal.intervals, seal.series) == (1, None, 3, "unfiltered")
    assert (seal.first_start_at, seal.last_end_at) == (records[0].start_at, records[2].end_at)
    assert [i.record for i in seal.covered] == [record_sha256(r) for r in records]
    assert seal.merkle_root == merkle_root((r.start_at, record_sha256(r)) for r in records)
    ((path, stored),) = seal_objects(seal).items()
    assert (
        path
        == f"workspace_gid={WORKSPACE}/_seals/series=unfiltered/seal_00000001_{seal_hash(seal)[:16]}.json"
    )
    assert Seal.from_json(stored) == seal
    assert seal_hash(Seal.from_json(stored)) == seal_hash(seal)
    verify_seal(Seal.from_json(stored), KEYRING)


def test_seals_form_a_chain_and_never_cover_less() -> None:
    first = _seal([_record(0), _record(1)])
    second = _seal([_record(0), _record(1), _record(2)], first, day=11)
    assert (second.sequence, second.previous) == (2, seal_hash(first))
    with pytest.raises(AsanaAuditLogConfigError, match="have no record now"):
        _seal([_record(0), _record(2)], second, day=12)
    with pytest.raises(AsanaAuditLogConfigError, match="Two records of one file"):
        _seal([_record(0), _record(0, events=6)])


def test_an_edited_seal_fails() -> None:
    seal = _seal([_record(day) for day in range(3)])
    value = json.loads(seal.to_json())
    value["covered"] = value["covered"][1:]
    with pytest.raises(AsanaAuditLogSignatureError, match="changed after it was signed"):
        verify_seal(Seal.from_json(json.dumps(value)), KEYRING)
    with pytest.raises(AsanaAuditLogSignatureError, match="not in the keyring"):
        verify_seal(seal, Keyring([SigningKey.generate().public_key]))
    with pytest.raises(ValueError, match="exactly the keys"):
        Seal.from_json(json.dumps({**value, "extra": 1}))


def _audit(*, seals: list[tuple[str, Seal]], **kwargs: Any) -> list[EvidenceProblem]:
    """:func:`audit_seals` as the check calls it: every seal's link, and the newest seal whole."""
    newest = max(seals, key=lambda item: (item[1].sequence, item[0]))[1]
    return audit_seals(chain=[SealLink.of(seal, path=path) for path, seal in seals], newest=newest, **kwargs)


def test_the_audit_of_an_archive_against_its_seals() -> None:
    records = {day: _record(day) for day in range(3)}
    first = _seal(list(records.values()))
    late = _record(1, events=6, supersedes=records[1])
    second = _seal([records[0], late, records[2]], first, day=11)
    seals = [("s1", first), ("s2", second)]
    history = {record_sha256(r): r for r in [*records.values(), late]}
    files = {r.path for r in records.values()}
    current = {r.path: r for r in (records[0], late, records[2])}

    assert _audit(seals=seals, current=current, history=history, files=files) == []
    # A later re-export than the newest seal's, chained to it, is no problem.
    later = _record(1, events=7, supersedes=late)
    later_history = {**history, record_sha256(later): later}
    assert (
        _audit(seals=seals, current={**current, late.path: later}, history=later_history, files=files) == []
    )
    # An older version in place of the sealed one is.
    rolled_back = {**current, late.path: records[1]}
    found = _audit(seals=seals, current=rolled_back, history=history, files=files)
    assert [(p.kind, p.path) for p in found] == [("version_rolled_back", late.path)]
    # A sealed interval whose file is gone.
    found = _audit(seals=seals, current=current, history=history, files=files - {records[2].path})
    assert [(p.kind, p.path) for p in found] == [("interval_removed", records[2].path)]
    # The first seal gone: the chain no longer starts at 1.
    found = _audit(seals=seals[1:], current=current, history=history, files=files)
    assert [(p.kind, p.path) for p in found] == [("seal_chain_broken", "s2")]
    # The newest seal gone: only a published hash tells.
    assert _audit(seals=seals[:1], current=current, history=history, files=files) == []
    found = _audit(
        seals=seals[:1], current=current, history=history, files=files, published=seal_hash(second)
    )
    assert [p.kind for p in found] == ["seal_unpublished_mismatch"]
    assert (
        _audit(seals=seals, current=current, history=history, files=files, published=seal_hash(second)) == []
    )
    # A forked chain: two seals numbered 2.
    fork = replace(second, sealed_at="2026-12-01T00:00:00.000Z")
    found = _audit(seals=[*seals, ("s2b", fork)], current=current, history=history, files=files)
    assert [p.kind for p in found] == ["seal_chain_broken"]
