"""
The evidence check over a small archive in the real layout (tests/evidence/archive.py): untouched, it
reports nothing, late-event re-exports included; each kind of tampering is reported exactly, once.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from airflow_provider_asana_audit.evidence import (
    EVIDENCE_PROBLEM_KINDS,
    LocalArchive,
    MemoryArchive,
    Seal,
    SigningKey,
    check_evidence,
    current_records,
    history_path,
    make_seal,
    newest_seal,
    record_path,
    record_sha256,
    seal_hash,
    sign_record,
)
from airflow_provider_asana_audit.evidence import check as check_module
from airflow_provider_asana_audit.evidence.records import Record
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.layout import MANIFEST_SUFFIX
from tests.evidence.archive import DAY0, FILTERS, WORKSPACE, EvidenceArchive, events_of

SERIES = f"workspace_gid={WORKSPACE}/_seals/series=unfiltered"


@dataclass
class Built:
    """The archive, its two seals, and the first versions of the two re-exported days."""

    archive: EvidenceArchive
    seals: list[Seal]
    first_versions: dict[int, dict[str, bytes]]

    def restore_first_version(self, day: int, *, with_record: bool = True) -> None:
        for path, data in self.first_versions[day].items():
            if with_record or not path.endswith(".record.json"):
                self.archive.write(path, data)


def _snapshot(archive: EvidenceArchive, day: int) -> dict[str, bytes]:
    file = archive.file(day)
    return {path: archive.read(path) for path in (file, file + MANIFEST_SUFFIX, record_path(file))}


@pytest.fixture
def built(tmp_path: Path) -> Built:
    """
    Four days exported and sealed; day 0 re-exported with 2 late events and sealed again; day 1
    re-exported with 1 late event after the newest seal.
    """
    archive = EvidenceArchive(tmp_path / "archive")
    for day in range(4):
        archive.export(day, events_of(day, 5), exported_at=DAY0 + timedelta(days=day + 1, hours=1))
    seals = [archive.seal(at=DAY0 + timedelta(days=4, hours=2))]
    first_versions = {0: _snapshot(archive, 0)}
    archive.export(0, events_of(0, 7), exported_at=DAY0 + timedelta(days=5))
    seals.append(archive.seal(at=DAY0 + timedelta(days=5, hours=1)))
    first_versions[1] = _snapshot(archive, 1)
    archive.export(1, events_of(1, 6), exported_at=DAY0 + timedelta(days=6))
    return Built(archive, seals, first_versions)


def test_the_untouched_archive_reports_nothing(built: Built) -> None:
    archive = built.archive
    assert archive.found() == []
    assert archive.found(published=(seal_hash(built.seals[-1]),)) == []
    # What the fixture claims: re-exports chained to the records they replace, and sealed where said.
    assert archive.current(0).supersedes == record_sha256(
        Record.from_json(built.first_versions[0][record_path(archive.file(0))])
    )
    assert archive.current(1).supersedes is not None
    assert built.seals[1].previous == seal_hash(built.seals[0])
    assert built.seals[1].sequence == 2
    assert {interval.record for interval in built.seals[1].covered} >= {record_sha256(archive.current(0))}
    assert record_sha256(archive.current(1)) not in {interval.record for interval in built.seals[1].covered}
    # The late events are recorded by the manifest of the re-export.
    manifest = json.loads(archive.read(archive.file(1) + MANIFEST_SUFFIX))
    assert manifest["changes"][0]["added_events"] == 1


def test_a_file_changed_with_its_manifest_rewritten_to_match(built: Built) -> None:
    archive = built.archive
    file = archive.file(2)
    archive.write_export(2, events_of(2, 4), exported_at=DAY0 + timedelta(days=7), changes=[])
    problems = archive.check()
    assert [(p.kind, p.path) for p in problems] == [("record_mismatch", file)]
    assert "sha256" in problems[0].message
    assert "the manifest was changed" in problems[0].message


def test_a_day_deleted_with_its_manifest_and_record(built: Built) -> None:
    archive = built.archive
    file = archive.file(2)
    for path in (file, file + MANIFEST_SUFFIX, record_path(file)):
        (archive.base / path).unlink()
    assert archive.found() == [("interval_removed", file)]


def test_a_whole_date_folder_deleted_is_found_by_the_seal(built: Built) -> None:
    archive = built.archive
    shutil.rmtree((archive.base / archive.file(3)).parent)
    assert archive.found() == [("interval_removed", archive.file(3))]


def test_a_date_folder_deleted_before_any_seal_covers_it_goes_unnoticed(built: Built) -> None:
    """The limit docs/evidence.md states: what no seal covers can vanish with its records."""
    archive = built.archive
    archive.export(4, events_of(4, 3), exported_at=DAY0 + timedelta(days=6, hours=3))
    shutil.rmtree((archive.base / archive.file(4)).parent)
    assert archive.found() == []


def test_a_record_re_signed_with_another_key(built: Built) -> None:
    archive = built.archive
    original = archive.current(1)
    fields = {
        name: getattr(original, name)
        for name in (
            "workspace_gid",
            "filters",
            "start_at",
            "end_at",
            "path",
            "sha256",
            "bytes",
            "events",
            "manifest_sha256",
            "exported_at",
            "exported_by",
        )
    }
    forged = sign_record(key=SigningKey.generate(), **fields)
    archive.write(record_path(original.path), forged.to_json())
    assert archive.found() == [("signature_unknown_key", record_path(original.path))]


def test_a_record_edited(built: Built) -> None:
    archive = built.archive
    path = record_path(archive.file(3))
    value = json.loads(archive.read(path))
    value["events"] += 1
    archive.write(path, json.dumps(value).encode())
    problems = archive.check()
    assert [(p.kind, p.path) for p in problems] == [("signature_bad", path)]
    assert "changed after it was signed" in problems[0].message


def test_an_older_version_restored_with_its_record(built: Built) -> None:
    built.restore_first_version(0)
    assert built.archive.found() == [("version_rolled_back", built.archive.file(0))]


def test_an_older_file_and_manifest_restored_under_the_newest_record(built: Built) -> None:
    built.restore_first_version(0, with_record=False)
    assert built.archive.found() == [("version_rolled_back", built.archive.file(0))]


def test_an_older_version_restored_and_the_newer_record_deleted_is_found_by_the_seal(built: Built) -> None:
    archive = built.archive
    newer = archive.current(0)
    built.restore_first_version(0)
    (archive.base / history_path(newer.path, record_sha256(newer))).unlink()
    problems = archive.check()
    assert [(p.kind, p.path) for p in problems] == [("version_rolled_back", archive.file(0))]
    assert "seal" in problems[0].message


def test_a_rollback_of_an_unsealed_reexport_without_its_history_goes_unnoticed(built: Built) -> None:
    """The limit docs/evidence.md states: a re-export is protected from rollback once it is sealed."""
    archive = built.archive
    newer = archive.current(1)
    built.restore_first_version(1)
    assert archive.found() == [("version_rolled_back", archive.file(1))]  # its history still shows it
    (archive.base / history_path(newer.path, record_sha256(newer))).unlink()
    assert archive.found() == []


def test_a_record_deleted_while_its_file_remains(built: Built) -> None:
    archive = built.archive
    (archive.base / record_path(archive.file(3))).unlink()
    assert archive.found() == [("record_missing", archive.file(3))]


def test_a_record_copied_over_another_days_record(built: Built) -> None:
    archive = built.archive
    archive.write(record_path(archive.file(2)), archive.read(record_path(archive.file(3))))
    assert archive.found() == [("record_mismatch", record_path(archive.file(2)))]


def test_the_middle_seal_deleted_breaks_the_chain(built: Built) -> None:
    archive = built.archive
    third = archive.seal(at=DAY0 + timedelta(days=7))
    _first, second, newest = archive.seal_files()
    assert newest.name.startswith("seal_00000003_")
    assert third.sequence == 3
    second.unlink()
    assert archive.found() == [("seal_chain_broken", newest.relative_to(archive.base).as_posix())]


def test_every_seal_deleted(built: Built) -> None:
    for path in built.archive.seal_files():
        path.unlink()
    assert built.archive.found() == [("seal_missing", SERIES)]


def test_the_newest_seal_edited(built: Built) -> None:
    archive = built.archive
    newest = archive.seal_files()[-1]
    value = json.loads(newest.read_bytes())
    value["covered"] = value["covered"][1:]
    newest.write_bytes(json.dumps(value).encode())
    assert archive.found() == [("signature_bad", newest.relative_to(archive.base).as_posix())]


def test_an_older_seal_edited_is_verified_and_breaks_the_chain(built: Built) -> None:
    archive = built.archive
    archive.seal(at=DAY0 + timedelta(days=7))
    _first, second, newest = (path.relative_to(archive.base).as_posix() for path in archive.seal_files())
    value = json.loads(archive.read(second))
    value["covered"] = value["covered"][1:]
    archive.write(second, json.dumps(value).encode())
    # Its bytes no longer have the hash the newest seal names, so it is verified in full.
    assert archive.found() == [("signature_bad", second), ("seal_chain_broken", newest)]


def test_an_older_seal_stored_in_another_form_is_no_problem(built: Built) -> None:
    archive = built.archive
    older = archive.seal_files()[0].relative_to(archive.base).as_posix()
    archive.write(older, json.dumps(json.loads(archive.read(older)), indent=2).encode())
    assert archive.found(published=(seal_hash(built.seals[0]), seal_hash(built.seals[-1]))) == []


def test_only_the_newest_seal_is_verified_the_chain_vouches_for_the_rest(
    built: Built, mocker: MockerFixture
) -> None:
    archive = built.archive
    for day in range(3):
        archive.seal(at=DAY0 + timedelta(days=7 + day))
    verified = mocker.spy(check_module, "verify_seal")
    assert archive.found(published=tuple(seal_hash(seal) for seal in built.seals)) == []
    assert len(archive.seal_files()) == 5
    assert [call.kwargs["where"] for call in verified.call_args_list] == [
        archive.seal_files()[-1].relative_to(archive.base).as_posix()
    ]


@pytest.mark.parametrize("deleted", [1, 2])
def test_truncated_seals_are_found_only_against_a_published_hash(built: Built, deleted: int) -> None:
    archive = built.archive
    published = seal_hash(archive.seal(at=DAY0 + timedelta(days=7)))
    for path in archive.seal_files()[-deleted:]:
        path.unlink()
    assert archive.found() == []
    assert archive.found(published=(published,)) == [("seal_unpublished_mismatch", None)]


def test_a_day_deleted_with_the_seals_that_cover_it_is_found_only_against_a_published_hash(
    built: Built,
) -> None:
    archive = built.archive
    archive.export(4, events_of(4, 3), exported_at=DAY0 + timedelta(days=6, hours=3))
    published = seal_hash(archive.seal(at=DAY0 + timedelta(days=7)))
    shutil.rmtree((archive.base / archive.file(4)).parent)
    archive.seal_files()[-1].unlink()
    assert archive.found() == []
    assert archive.found(published=(published,)) == [("seal_unpublished_mismatch", None)]


def test_an_archive_checked_by_another_keyring_trusts_nothing(built: Built) -> None:
    problems = check_evidence(built.archive.view, EvidenceArchive(built.archive.base).keyring)
    kinds = {problem.kind for problem in problems}
    assert kinds == {"signature_unknown_key", "seal_missing"}
    assert all(problem.kind in EVIDENCE_PROBLEM_KINDS for problem in problems)


def test_the_check_reads_the_same_through_memory(built: Built) -> None:
    view = LocalArchive(built.archive.base)
    memory = MemoryArchive({path: view.read_bytes(path) for path in view.list()})
    file = built.archive.file(2)
    memory.objects[file] = memory.objects[file][:-1]
    problems = check_evidence(memory, built.archive.keyring)
    assert [(p.kind, p.path) for p in problems] == [("record_mismatch", file)]


def test_sealing_refuses_to_drop_a_sealed_interval(built: Built) -> None:
    archive = built.archive
    (archive.base / archive.file(2)).unlink()
    view, keyring = archive.view, archive.keyring
    records = current_records(view, keyring, workspace_gid=WORKSPACE, filters=FILTERS)
    assert archive.file(2) not in {record.path for record in records}
    with pytest.raises(AsanaAuditLogConfigError, match="have no record now"):
        make_seal(
            key=archive.key,
            workspace_gid=WORKSPACE,
            filters=FILTERS,
            records=records,
            previous=newest_seal(view, keyring, workspace_gid=WORKSPACE, filters=FILTERS),
        )


def test_the_local_view_stays_below_its_base(tmp_path: Path) -> None:
    (tmp_path / "outside").write_bytes(b"x")
    (tmp_path / "base").mkdir()
    with pytest.raises(FileNotFoundError):
        LocalArchive(tmp_path / "base").read_bytes("../outside")
