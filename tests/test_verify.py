"""
The archive check (``python -m airflow_provider_asana_audit.verify``) on a real archive, whole and damaged.

The archive is what the export example DAG writes for 7 consecutive days, in real DAG runs against the
stand-in (``tests/helpers/archive.py``); it is built once per session. Each test copies it, damages the
copy in one way, the way that damage happens, and runs the command with ``--json -``: its exit status,
its JSON report and its summary must all say that the archive is not whole, and report exactly the
kinds of problem that damage makes (an event copied into another day's file is both a duplicate and
outside its interval), no other. What to re-export must cover exactly the damaged days, with the
backfill command of the DAG the manifests name. Where the mend is that re-export, its effect (the export
operator exporting the named days again, as the backfill's runs do) must make the archive whole again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fsspec
import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath
from pytest_mock import MockerFixture

from airflow_provider_asana_audit.evidence import EVIDENCE_PROBLEM_KINDS
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.storage.__main__ import main as storage_main
from airflow_provider_asana_audit.timeutils import format_duration, format_instant
from airflow_provider_asana_audit.verify import PROBLEM_KINDS, verify_archive
from airflow_provider_asana_audit.verify.check import parse_bound
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers.archive import (
    EXPORT_DAG_ID,
    Archive,
    check_not_whole,
    export_lines,
    manifest_of,
    read_export,
    reexported_days,
    rewrite_events,
    rewrite_export,
    run_verify,
    write_manifest,
)

DAY = timedelta(days=1)
#: A staging object's name: ``.<file>.<32 hex digits>.partial``.
ATTEMPT = "0123456789abcdef0123456789abcdef"


def backfill(first: datetime, last: datetime, dag_id: str = EXPORT_DAG_ID) -> str:
    """The command that re-runs the export DAG's runs of the days ``first`` to ``last``."""
    if AIRFLOW_V_3_0_PLUS:
        return (
            f"airflow backfill create --dag-id {dag_id} --from-date {first:%Y-%m-%d} "
            f"--to-date {last:%Y-%m-%d} --reprocess-behavior completed"
        )
    return (
        f"airflow dags backfill --reset-dagruns --yes --start-date {first:%Y-%m-%d} "
        f"--end-date {last:%Y-%m-%d} {dag_id}"
    )


def reexport(archive: Archive, day: datetime) -> dict[str, Any]:
    """
    What the backfill of ``day`` does: the export operator exports the day again into the archive,
    from the stand-in that serves the archive's events, as the export DAG does (no allow_event_removal).
    """
    with archive.standin() as fake:
        summary: dict[str, Any] = archive.export(fake, day)
    return summary


def logged_warnings(log: Any) -> list[str]:
    """The warnings logged through a mocked operator log, formatted."""
    texts = [call.args[0] % call.args[1:] for call in log.return_value.warning.call_args_list]
    # Airflow warns that execute() is called outside of a task run, as these tests do on purpose.
    return [text for text in texts if ".execute cannot be called outside" not in text]


# ------------------------------------------------------------------------------------ a clean archive


def test_the_archive_the_export_dag_wrote_for_7_days_is_whole(archive: Archive) -> None:
    manifests = [manifest_of(path) for path in archive.files()]

    result = run_verify(archive.uri, "--json", "-")

    assert result.code == 0, result.stderr
    report = result.report
    assert report["whole"] is True
    assert (report["files"], report["problems"], report["reexport"]) == (7, [], [])
    assert report["events"] == sum(manifest["events"] for manifest in manifests) > 0
    assert report["bytes"] == sum(manifest["bytes"] for manifest in manifests)
    (series,) = report["series"]
    assert (series["workspace_gid"], series["first_start_at"], series["last_end_at"]) == (
        archive.workspace_gid,
        format_instant(archive.first),
        format_instant(archive.end),
    )
    assert f"WHOLE: 7 files and {report['events']} events checked" in result.stderr
    assert result.stderr.count("NOT WHOLE") == 0
    # Every manifest names the DAG run that wrote it, whose data interval is the file's.
    assert {manifest["exported_by"]["dag_id"] for manifest in manifests} == {EXPORT_DAG_ID}


def test_the_command_prints_its_summary_and_writes_the_report_to_a_file(
    archive: Archive, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"

    result = run_verify(archive.uri, "--json", str(out))

    assert result.code == 0
    assert result.stdout.splitlines()[-1].startswith("WHOLE: 7 files")
    assert json.loads(out.read_text())["whole"] is True


def test_python_dash_m_runs_the_command(archive: Archive) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_asana_audit.verify", str(archive.base), "--json", "-"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["whole"] is True
    assert "WHOLE: 7 files" in done.stderr


# ------------------------------------------------------------------------------------ each damage


def _delete_day(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    day = archive.days[3]
    archive.file(day).unlink()
    archive.manifest(day).unlink()
    return [f"[{format_instant(day)}, {format_instant(day + DAY)})"]


def _overlapping_export(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The export operator writes [noon of day 2, noon of day 3) into the layout, beside the days."""
    noon = archive.days[2] + timedelta(hours=12)
    with archive.standin() as fake:
        archive.export(fake, noon)
    return [
        f"asana_audit_log_{noon:%Y%m%dT%H%M%SZ}_{noon + DAY:%Y%m%dT%H%M%SZ}.jsonl.gz",
        archive.file(archive.days[2]).name,
        archive.file(archive.days[3]).name,
    ]


def _delete_manifest(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    archive.manifest(archive.days[1]).unlink()
    return [archive.file(archive.days[1]).name]


def _delete_file(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    archive.file(archive.days[4]).unlink()
    return [archive.manifest(archive.days[4]).name]


def _edit_manifest(
    name: str, change: Callable[[Any], Any]
) -> Callable[[Archive, pytest.MonkeyPatch], list[str]]:
    def damage(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        file = archive.file(archive.days[2])
        manifest = manifest_of(file)
        manifest[name] = change(manifest[name])
        write_manifest(file, manifest)
        return [file.name, f"{name} {manifest[name]!r} in the manifest"]

    return damage


def _manifest_not_json(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    path = archive.manifest(archive.days[5])
    path.write_text(path.read_text()[:40])  # cut short, as by a full disk
    return [path.name, "is not valid JSON"]


def _manifest_without_digest(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    file = archive.file(archive.days[5])
    manifest = manifest_of(file)
    del manifest["sha256"]
    write_manifest(file, manifest)
    return [f"{file.name}.manifest.json lacks sha256"]


def _truncate_gzip(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The end of the gzip stream is cut off; the manifest describes the whole file."""
    file = archive.file(archive.days[6])
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])
    return [file.name, "cannot be decompressed after line", "sha256", "bytes"]


def _insert_garbage(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A line of garbage in the middle of a file, written with a manifest that describes the new bytes."""
    file = archive.file(archive.days[0])
    lines = export_lines(file)
    rewrite_export(file, [*lines[:10], b"\x00garbage, not an event", *lines[10:]])
    return [file.name, "1 line is not a JSON audit event", "line 11"]


def _move_event_out_of_its_day(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One event's created_at moved to the next day, in its own file (with a matching manifest)."""
    file = archive.file(archive.days[3])
    events = read_export(file)
    moved = events[5]
    moved["created_at"] = format_instant(archive.days[4] + timedelta(hours=12))
    rewrite_events(file, events)
    return [file.name, f"gid {moved['gid']} created_at {moved['created_at']}"]


def _copy_event_into_another_day(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An event of day 1 copied into day 5's file (with a matching manifest)."""
    source, target = archive.file(archive.days[1]), archive.file(archive.days[5])
    copied = read_export(source)[7]
    rewrite_events(target, [*read_export(target), copied])
    return [source.name, target.name, f"gid {copied['gid']}"]


def _stale_staging(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What a killed export attempt leaves: its staging object, last modified two hours ago."""
    file = archive.file(archive.days[2])
    staging = file.with_name(f".{file.name}.{ATTEMPT}.partial")
    staging.write_bytes(file.read_bytes()[:100])
    two_hours_ago = time.time() - 2 * 3600
    os.utime(staging, (two_hours_ago, two_hours_ago))
    return [staging.name, "did not finish"]


@dataclass(frozen=True)
class Damage:
    """
    One way to damage the archive.

    :param damage: damages the archive; returns texts the report's problems must hold (names of the
        files concerned, details).
    :param kinds: the problems it makes, by kind: exactly these.
    :param days: the days (indexes into the archive's days) whose re-export mends it.
    """

    id: str
    damage: Callable[[Archive, pytest.MonkeyPatch], list[str]]
    kinds: dict[str, int]
    days: tuple[int, ...] = field(default=())


DAMAGES = (
    Damage("day-deleted", _delete_day, {"gap": 1}, (3,)),
    Damage("overlapping-file", _overlapping_export, {"overlap": 2, "duplicate_gid": 2}, (2, 3)),
    Damage("manifest-deleted", _delete_manifest, {"missing_manifest": 1}, (1,)),
    Damage("file-deleted", _delete_file, {"orphan_manifest": 1}, (4,)),
    Damage(
        "manifest-sha256-edited",
        _edit_manifest("sha256", lambda value: "0" * 64),
        {"manifest_mismatch": 1},
        (2,),
    ),
    Damage(
        "manifest-bytes-edited",
        _edit_manifest("bytes", lambda value: value + 1),
        {"manifest_mismatch": 1},
        (2,),
    ),
    Damage(
        "manifest-events-edited",
        _edit_manifest("events", lambda value: value - 1),
        {"manifest_mismatch": 1},
        (2,),
    ),
    Damage("manifest-not-json", _manifest_not_json, {"bad_manifest": 1}, (5,)),
    Damage("manifest-without-sha256", _manifest_without_digest, {"bad_manifest": 1}, (5,)),
    Damage("gzip-truncated", _truncate_gzip, {"unreadable_file": 1, "manifest_mismatch": 1}, (6,)),
    Damage("garbage-line", _insert_garbage, {"invalid_json": 1}, (0,)),
    Damage("event-outside-its-day", _move_event_out_of_its_day, {"outside_interval": 1}, (3,)),
    Damage(
        "event-copied-into-another-day",
        _copy_event_into_another_day,
        {"duplicate_gid": 1, "outside_interval": 1},
        (1, 5),
    ),
    Damage("stale-staging-object", _stale_staging, {"stale_staging": 1}),
)


@pytest.mark.parametrize("case", DAMAGES, ids=[case.id for case in DAMAGES])
def test_each_damage_is_reported_and_nothing_else(
    case: Damage, damaged: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = case.damage(damaged, monkeypatch)

    result = run_verify(damaged.uri, "--json", "-")

    report = check_not_whole(result, case.kinds)
    problems = json.dumps(report["problems"], ensure_ascii=False)
    for text in texts:
        assert text in problems, f"{text!r} is not in the report's problems: {problems}"
    assert reexported_days(report) == {damaged.days[n] for n in case.days}


#: The damages that put an event where its created_at does not belong, and the day of that file.
_MISPLACED = (("event-outside-its-day", 3), ("event-copied-into-another-day", 5))


def test_every_kind_of_problem_is_made_by_some_damage() -> None:
    # The evidence kinds are made by the tamper suite (tests/evidence/test_tamper.py).
    kinds = set(PROBLEM_KINDS) - set(EVIDENCE_PROBLEM_KINDS)
    assert {kind for case in DAMAGES for kind in case.kinds} == kinds


# ------------------------------------------------------------------------------------ details


def test_a_missing_day_is_re_exported_by_a_backfill_of_that_day(
    damaged: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = damaged.days[3]
    _delete_day(damaged, monkeypatch)

    result = run_verify(damaged.uri, "--json", "-")

    report = check_not_whole(result, {"gap": 1})
    (item,) = report["reexport"]
    assert item["command"] == backfill(day, day)
    assert (item["start_at"], item["end_at"], item["expired"]) == (
        format_instant(day),
        format_instant(day + DAY),
        False,
    )
    assert result.stderr.endswith(f"Re-export:\n  {backfill(day, day)}\n")
    assert "\nNOT WHOLE: 1 problem (1 gap)\n" in result.stderr


def test_adjacent_damaged_days_are_re_exported_by_one_backfill(damaged: Archive) -> None:
    for day in damaged.days[2:5]:
        damaged.file(day).unlink()
        damaged.manifest(day).unlink()

    report = check_not_whole(run_verify(damaged.uri, "--json", "-"), {"gap": 1})

    assert [item["command"] for item in report["reexport"]] == [backfill(damaged.days[2], damaged.days[4])]


def test_the_re_export_commands_name_the_dag_given(damaged: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    _delete_day(damaged, monkeypatch)

    report = run_verify(damaged.uri, "--dag-id", "my_export", "--json", "-").report

    assert [item["command"] for item in report["reexport"]] == [
        backfill(damaged.days[3], damaged.days[3], dag_id="my_export")
    ]


def test_a_duplicate_names_both_files_and_both_are_re_exported(
    damaged: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = _copy_event_into_another_day(damaged, monkeypatch)

    report = check_not_whole(
        run_verify(damaged.uri, "--json", "-"), {"duplicate_gid": 1, "outside_interval": 1}
    )

    (duplicate,) = (problem for problem in report["problems"] if problem["kind"] == "duplicate_gid")
    source, target = damaged.file(damaged.days[1]), damaged.file(damaged.days[5])
    assert duplicate["message"] == f"1 gid appears in 2 files: file://{source}, file://{target}"
    assert duplicate["count"] == 1
    (example,) = duplicate["examples"]
    assert example.startswith(f"{texts[2]} in {source.name} line 8, {target.name} line ")
    assert [item["command"] for item in report["reexport"]] == [
        backfill(damaged.days[1], damaged.days[1]),
        backfill(damaged.days[5], damaged.days[5]),
    ]


@pytest.mark.parametrize(
    ("case", "misplaced_day"),
    [(case, day) for case in DAMAGES for id, day in _MISPLACED if case.id == id],
    ids=[id for id, _ in _MISPLACED],
)
def test_the_backfill_the_check_advises_for_misplaced_events_makes_the_archive_whole(
    archive: Archive,
    damaged: Archive,
    monkeypatch: pytest.MonkeyPatch,
    mocker: MockerFixture,
    case: Damage,
    misplaced_day: int,
) -> None:
    """
    An event whose created_at lies outside its file's interval does not belong there: re-exporting the
    days the check names (what its backfill does) leaves it out, without allow_event_removal.
    """
    case.damage(damaged, monkeypatch)
    report = check_not_whole(run_verify(damaged.uri, "--json", "-"), case.kinds)
    day = damaged.days[misplaced_day]
    file = damaged.file(day)
    previous = manifest_of(file)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    changes = {each: reexport(damaged, each)["change"] for each in sorted(reexported_days(report))}

    assert set(changes) == {damaged.days[n] for n in case.days}
    change = changes.pop(day)
    assert change is not None
    assert (change["previous_sha256"], change["previous_events"], change["removed_events"]) == (
        previous["sha256"],
        previous["events"],
        0,
    )
    assert change["previous_damaged"] is True
    assert manifest_of(file)["changes"] == [change]
    # The other day the check named (the copied event's own day) was sound: written again byte for byte.
    # An event moved out of its day names that day alone: nothing else was re-exported.
    assert changes == {damaged.days[n]: None for n in case.days if n != misplaced_day}
    warnings = logged_warnings(log)
    assert (
        f"The previous export at file://{file} holds 1 events whose created_at lies outside "
        f"[{format_instant(day)}, {format_instant(day + DAY)}): they belong to other intervals' files, and "
        "the re-export leaves them out"
    ) in warnings
    assert not any("Late events" in text or "lacks" in text for text in warnings)

    result = run_verify(damaged.uri, "--json", "-")

    assert result.code == 0, result.stderr
    assert result.report["whole"] is True
    late = result.report["late_events"]
    assert (late["changed_reexports"], late["added_events"], late["repairs"]) == (0, 0, 1)
    assert "\n  repairs: 1 re-export replaced a damaged file (not counted as late events)\n" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("WHOLE: 7 files")
    # Each event is back once, in its own day: the files are the ones first exported, byte for byte.
    assert [path.read_bytes() for path in damaged.files()] == [path.read_bytes() for path in archive.files()]


def test_a_plain_export_beside_the_gzip_export_of_the_same_day_is_an_overlap(damaged: Archive) -> None:
    """Two files of one series with the same interval: reported, in the order of their names."""
    day = damaged.days[2]
    gzip_file = damaged.file(day)
    plain = gzip_file.with_name(gzip_file.name.removesuffix(".gz"))
    with damaged.standin() as fake:
        damaged.export(fake, day, destination=f"file://{plain}")

    report = check_not_whole(run_verify(damaged.uri, "--json", "-"), {"overlap": 1, "duplicate_gid": 1})

    (overlap,) = (problem for problem in report["problems"] if problem["kind"] == "overlap")
    window = f"[{format_instant(day)}, {format_instant(day + DAY)})"
    folder = f"workspace_gid={damaged.workspace_gid}/date={day:%Y-%m-%d}"
    assert overlap["message"] == (
        f"{folder}/{gzip_file.name} {window} overlaps {folder}/{plain.name} {window} by 1d"
    )
    assert reexported_days(report) == {day}


def test_a_gid_twice_in_one_file_is_a_duplicate(damaged: Archive) -> None:
    file = damaged.file(damaged.days[2])
    events = read_export(file)
    rewrite_events(file, [*events[:3], events[2], *events[3:]])

    report = check_not_whole(run_verify(damaged.uri, "--json", "-"), {"duplicate_gid": 1})

    (problem,) = report["problems"]
    assert problem["message"] == f"1 gid appears twice in file://{file}"
    assert problem["examples"] == [f"gid {events[2]['gid']} in {file.name} line 3, {file.name} line 4"]


def test_a_truncated_file_is_unreadable_even_when_its_manifest_describes_the_truncated_bytes(
    damaged: Archive,
) -> None:
    file = damaged.file(damaged.days[6])
    manifest = manifest_of(file)
    data = file.read_bytes()[:-8]  # the gzip trailer (CRC and size) is gone
    file.write_bytes(data)
    rewrite = dict(manifest, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    write_manifest(file, rewrite)

    report = check_not_whole(run_verify(damaged.uri, "--json", "-"), {"unreadable_file": 1})

    assert "cannot be decompressed after line" in report["problems"][0]["message"]
    with pytest.raises(EOFError):
        gzip.decompress(data)


def test_a_filtered_export_beside_the_unfiltered_one_is_a_series_of_its_own(damaged: Archive) -> None:
    """Both hold the day's logins: the same gids in two series are not duplicates."""
    day = damaged.days[2]
    with damaged.standin() as fake:
        logins = fake.ground_truth(day, day + DAY, event_type="user_login_succeeded")
        damaged.export(fake, day, event_type="user_login_succeeded")
    assert logins, "the day should hold logins"

    result = run_verify(damaged.uri, "--json", "-")

    assert result.code == 0, result.stderr
    series = result.report["series"]
    assert [(item["files"], item["filter_suffix"] is None) for item in series] == [(7, True), (1, False)]
    assert series[1]["events"] == len(logins)


# ------------------------------------------------------------------------------------ staging objects


def test_a_staging_object_of_an_export_in_progress_is_only_noted(damaged: Archive) -> None:
    file = damaged.file(damaged.days[2])
    file.with_name(f".{file.name}.{ATTEMPT}.partial").write_bytes(b"\x1f\x8b")  # modified just now

    result = run_verify(damaged.uri, "--json", "-")

    assert result.code == 0, result.stderr
    assert result.report["whole"] is True
    assert result.report["notes"] == ["1 staging object younger than 10m: an export in progress"]
    assert "note: 1 staging object younger than 10m" in result.stderr


def test_the_sweep_the_summary_advises_removes_the_stale_staging_objects(damaged: Archive) -> None:
    """Also one older than the check's grace period (10 minutes) but younger than the sweep's default."""
    file = damaged.file(damaged.days[2])
    staging = file.with_name(f".{file.name}.{ATTEMPT}.partial")
    staging.write_bytes(b"\x1f\x8b")
    half_an_hour_ago = time.time() - 1800
    os.utime(staging, (half_an_hour_ago, half_an_hour_ago))
    result = run_verify(damaged.uri, "--json", "-")
    check_not_whole(result, {"stale_staging": 1})
    (advice,) = (line for line in result.stderr.splitlines() if "storage sweep" in line)
    assert advice == (
        "Remove the stale staging objects: python -m airflow_provider_asana_audit.storage sweep "
        f"{damaged.uri} --older-than 600s --delete"
    )
    command = advice.split("python -m airflow_provider_asana_audit.storage ", 1)[1].split()

    assert run_verify(*command, main=storage_main).code == 0

    assert not staging.exists()
    assert run_verify(damaged.uri).code == 0


def test_staging_objects_outside_since_and_until_are_not_reported(damaged: Archive) -> None:
    """The check's range limits the staging objects it reports, as it limits the files it reads."""
    stale: list[Path] = []
    for day in (damaged.days[0], damaged.days[4]):
        file = damaged.file(day)
        staging = file.with_name(f".{file.name}.{ATTEMPT}.partial")
        staging.write_bytes(b"\x1f\x8b")
        two_hours_ago = time.time() - 2 * 3600
        os.utime(staging, (two_hours_ago, two_hours_ago))
        stale.append(staging)
    young = damaged.file(damaged.days[1])
    young.with_name(f".{young.name}.{ATTEMPT}.partial").write_bytes(b"\x1f\x8b")  # modified just now
    since, until = f"{damaged.days[2]:%Y-%m-%d}", f"{damaged.end:%Y-%m-%d}"

    inside = run_verify(damaged.uri, "--since", since, "--until", until, "--json", "-")
    before = run_verify(
        damaged.uri, "--since", since, "--until", f"{damaged.days[4]:%Y-%m-%d}", "--json", "-"
    )
    everything = run_verify(damaged.uri, "--json", "-")

    (problem,) = check_not_whole(inside, {"stale_staging": 1})["problems"]
    assert problem["path"] == f"file://{stale[1]}"
    assert inside.report["notes"] == []
    assert before.code == 0, before.stderr
    assert (before.report["problems"], before.report["notes"]) == ([], [])
    assert before.stderr.splitlines()[-1].startswith("WHOLE: 2 files")
    assert "note:" not in before.stderr
    report = check_not_whole(everything, {"stale_staging": 2})
    assert sorted(problem["path"] for problem in report["problems"]) == sorted(f"file://{p}" for p in stale)
    assert report["notes"] == ["1 staging object younger than 10m: an export in progress"]


# ------------------------------------------------------------------------------------ the checked range


def test_since_and_until_beyond_the_archive_are_gaps_at_its_edges(damaged: Archive) -> None:
    since, until = damaged.first - 2 * DAY, damaged.end + DAY

    result = run_verify(
        damaged.uri, "--since", f"{since:%Y-%m-%d}", "--until", until.isoformat(), "--json", "-"
    )

    report = check_not_whole(result, {"gap": 2})
    assert (report["since"], report["until"]) == (format_instant(since), format_instant(until))
    assert [problem["message"] for problem in report["problems"]] == [
        f"workspace {damaged.workspace_gid}: no export file covers "
        f"[{format_instant(since)}, {format_instant(damaged.first)}) (2d)",
        f"workspace {damaged.workspace_gid}: no export file covers "
        f"[{format_instant(damaged.end)}, {format_instant(until)}) (1d)",
    ]
    assert [item["command"] for item in report["reexport"]] == [
        backfill(since, damaged.first - DAY),
        backfill(damaged.end, damaged.end),
    ]


def test_only_the_files_between_since_and_until_are_read(
    damaged: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edit_manifest("sha256", lambda value: "0" * 64)(damaged, monkeypatch)  # day 2
    damaged.manifest(damaged.days[6]).unlink()

    inside = run_verify(
        damaged.uri,
        "--since",
        f"{damaged.days[3]:%Y-%m-%d}",
        "--until",
        f"{damaged.days[6]:%Y-%m-%d}",
        "--json",
        "-",
    )
    around = run_verify(
        damaged.uri,
        "--since",
        f"{damaged.days[2]:%Y-%m-%d}",
        "--until",
        f"{damaged.days[6]:%Y-%m-%d}",
        "--json",
        "-",
    )

    assert inside.code == 0, inside.stderr
    assert inside.report["files"] == 3
    check_not_whole(around, {"manifest_mismatch": 1})


def test_an_empty_base_path_is_not_a_whole_archive(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    result = run_verify(f"file://{empty}", "--json", "-")
    bounded = run_verify(str(empty), "--since", "2026-01-01", "--until", "2026-01-08", "--json", "-")
    missing = run_verify(str(tmp_path / "no-such-folder"), "--json", "-")

    report = check_not_whole(result, {"gap": 1})
    assert report["files"] == 0
    assert f"no export file under file://{empty}" in report["problems"][0]["message"]
    (gap,) = check_not_whole(bounded, {"gap": 1})["problems"]
    assert "[2026-01-01T00:00:00.000Z, 2026-01-08T00:00:00.000Z)" in gap["message"]
    check_not_whole(missing, {"gap": 1})


def test_objects_outside_the_layout_are_noted_and_ignored(damaged: Archive) -> None:
    (damaged.base / "README.txt").write_text("not an export\n")
    (damaged.day_folder(damaged.days[0]) / "notes.json").write_text("{}\n")

    result = run_verify(damaged.uri, "--json", "-")

    assert result.code == 0
    assert result.report["notes"] == [
        "2 objects under the base path are not part of the export layout (ignored)"
    ]


# ------------------------------------------------------------------------------------ retention


def test_a_damaged_range_older_than_90_days_is_to_be_restored_from_a_backup(
    damaged: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = damaged.days[3]
    _delete_day(damaged, monkeypatch)

    report = verify_archive(damaged.uri, now=day + timedelta(days=95))

    (item,) = report.reexports
    assert (item.command, item.expired) == (None, True)
    summary = report.summary()
    assert (
        f"[{format_instant(day)}, {format_instant(day + DAY)}) of workspace {damaged.workspace_gid}: "
        "Asana no longer holds these events (older than 90 days); restore the files from a backup"
    ) in summary
    assert "airflow " not in summary


def test_a_range_partly_older_than_90_days_is_re_exported_with_a_warning(damaged: Archive) -> None:
    first, last = damaged.days[3], damaged.days[4]
    for day in (first, last):
        damaged.file(day).unlink()
        damaged.manifest(day).unlink()

    # Asana still holds the second half of the range.
    report = verify_archive(damaged.uri, now=last + timedelta(days=90, hours=12))

    (item,) = report.reexports
    assert (item.command, item.expired) == (backfill(first, last), True)
    assert f"(part of [{format_instant(first)}, {format_instant(last + DAY)}) is older than 90 days" in (
        report.summary()
    )


# ------------------------------------------------------------------------------------ late events


def test_late_events_recorded_by_a_re_export_are_summed_up(damaged: Archive) -> None:
    day = damaged.days[3]
    exported_at = manifest_of(damaged.file(day))["exported_at"]
    with damaged.standin() as fake:
        fake.append_events(1, created_at=day + timedelta(hours=23))  # captured late
        damaged.export(fake, day)

    result = run_verify(damaged.uri, "--json", "-")

    assert result.code == 0, result.stderr
    late = result.report["late_events"]
    assert (late["changed_reexports"], late["added_events"], late["removed_events"]) == (1, 1, 0)
    lag = parse_bound(exported_at, name="exported_at") - (day + DAY)
    assert late["captured_after_end_at_least_seconds"] == lag.total_seconds()
    assert late["repairs"] == 0
    (example,) = late["examples"]
    assert example["path"] == f"file://{damaged.file(day)}"
    assert example["previous_damaged"] is False
    assert (
        "\n  late events: 1 change recorded by re-exports, adding 1 event and removing 0; Asana captured "
        f"some at least {format_duration(lag)} after their interval's end\n"
    ) in result.stderr
    assert "repairs:" not in result.stderr


def test_a_re_export_that_repaired_a_damaged_file_is_counted_as_a_repair_not_as_late_events(
    damaged: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events a re-export of a truncated file adds were in its lost part: they were not late."""
    late_day, cut_day = damaged.days[3], damaged.days[6]
    exported_at = manifest_of(damaged.file(late_day))["exported_at"]
    _truncate_gzip(damaged, monkeypatch)  # the file of days[6]
    check_not_whole(run_verify(damaged.uri, "--json", "-"), {"unreadable_file": 1, "manifest_mismatch": 1})
    with damaged.standin() as fake:
        fake.append_events(2, created_at=late_day + timedelta(hours=23))  # captured late
        for day in (late_day, cut_day):
            damaged.export(fake, day)
    (repair,) = manifest_of(damaged.file(cut_day))["changes"]
    assert repair["previous_damaged"] is True
    assert repair["added_events"] > 0

    result = run_verify(damaged.uri, "--json", "-")

    assert result.code == 0, result.stderr
    late = result.report["late_events"]
    lag = parse_bound(exported_at, name="exported_at") - (late_day + DAY)
    assert {key: value for key, value in late.items() if key != "examples"} == {
        "changed_reexports": 1,
        "added_events": 2,  # the late events alone, not the repair's
        "removed_events": 0,
        "repairs": 1,
        "captured_after_end_at_least_seconds": lag.total_seconds(),
    }
    assert [example["path"] for example in late["examples"]] == [f"file://{damaged.file(late_day)}"]
    assert (
        "\n  late events: 1 change recorded by re-exports, adding 2 events and removing 0; Asana captured "
        f"some at least {format_duration(lag)} after their interval's end\n"
        "  repairs: 1 re-export replaced a damaged file (not counted as late events)\n"
    ) in result.stderr


# ------------------------------------------------------------------------------------ object storage


@pytest.fixture
def memory_archive(archive: Archive) -> Iterator[ObjectStoragePath]:
    """The archive copied to fsspec's in-memory filesystem, attached to Airflow's object storage."""
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.io.store import attach
    else:  # Airflow 2
        from airflow.io.store import attach  # type: ignore[no-redef]
    fs = fsspec.filesystem("memory")
    attach(protocol="memory", fs=fs)
    root = f"/verify-{time.monotonic_ns()}/asana"
    for path in archive.base.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(archive.base)}", path.read_bytes())
    try:
        yield ObjectStoragePath(f"memory://{root}")
    finally:
        fs.rm(root.rsplit("/", 1)[0], recursive=True)


def test_an_archive_on_object_storage_is_checked_the_same_way(
    memory_archive: ObjectStoragePath, archive: Archive
) -> None:
    whole = verify_archive(memory_archive)
    day = archive.days[3]
    relative = archive.file(day).relative_to(archive.base)
    (memory_archive / str(relative)).unlink()

    damaged = verify_archive(str(memory_archive))

    assert (whole.whole, whole.files, whole.problems) == (True, 7, [])
    assert damaged.counts() == {"orphan_manifest": 1}
    assert damaged.problems[0].path == str(memory_archive / f"{relative}.manifest.json")
    assert [item.command for item in damaged.reexports] == [backfill(day, day)]


# ------------------------------------------------------------------------------------ bad command lines


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["exports"], "base path 'exports' is a relative path"),
        (["/tmp", "--since", "2026-01-02", "--until", "2026-01-01"], "must be before until"),
        (["/tmp", "--since", "last week"], "--since='last week' is not an ISO 8601 date-time"),
        (["/tmp", "--until", "2026-01-01T00:00:00"], "has no timezone"),
        (["foo://bucket/asana"], "foo://"),
    ],
    ids=["relative", "reversed", "since-unparsable", "until-naive", "scheme"],
)
def test_a_bad_command_line_exits_with_2_and_says_why(args: list[str], says: str) -> None:
    result = run_verify(*args)

    assert result.code == 2
    assert says in result.stderr
    assert result.stdout == ""


def test_verify_archive_takes_dates_and_strings_as_bounds_and_refuses_naive_ones(archive: Archive) -> None:
    by_date = verify_archive(archive.base, since=archive.first.date(), until=archive.end.isoformat())

    assert (by_date.whole, by_date.since, by_date.until) == (True, archive.first, archive.end)
    with pytest.raises(AsanaAuditLogConfigError, match="has no timezone"):
        verify_archive(archive.base, since=datetime(2026, 1, 1))
    assert parse_bound("2026-01-01", name="since") == datetime(2026, 1, 1, tzinfo=timezone.utc)
