"""
What killed attempts leave: hidden ``.<name>.<uuid>.partial`` staging objects. A later successful export
of the same destination removes those whose lease ran out, never the staging file of an attempt that is
still writing; the sweep command clears a whole base path.

The leftovers are made by real attempts killed in the worker (``worker.py``); their age is then set
back, as if they had been killed more than the grace period ago.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_provider_asana_audit.storage import STAGING_GRACE_PERIOD
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from tests.helpers.exports import midnight, read_events, serialise
from tests.helpers.waiting import DEADLINE, wait_until

from .support import (
    ROOT,
    Worker,
    assert_consistent,
    export,
    leftovers,
    manifest_of,
    record,
    stop_process_group,
)

START, END = midnight(3), midnight(2)
#: Long enough ago that a staging object last modified then is stale, for an export (the grace period)
#: and for the sweep command (1 h by default).
LONG_AGO = time.time() - max(2 * STAGING_GRACE_PERIOD.total_seconds(), 2 * 3600)


def _job(fake: FakeAsana, **job: Any) -> dict[str, Any]:
    return {
        "connection": fake.connection_json(),
        "start_at": format_instant(START),
        "end_at": format_instant(END),
        "page_size": 50,
        **job,
    }


def _kill_at(worker: Worker, job: dict[str, Any], pause: dict[str, Any], directory: Path) -> Path:
    """Start an export, kill it where ``pause`` says; return the staging object it left, aged."""
    before = set(leftovers(directory))
    child = worker.start(**job, pause=pause)
    child.wait_paused()
    child.kill()
    (left,) = set(leftovers(directory)) - before
    os.utime(left, (LONG_AGO, LONG_AGO))
    return left


def test_a_later_export_removes_the_staging_objects_that_killed_attempts_left(
    worker: Worker, day_fake: FakeAsana, tmp_path: Path
) -> None:
    destination = tmp_path / "day.jsonl.gz"
    job = _job(day_fake, destination=str(destination))
    dead = [
        _kill_at(worker, job, {"at": "write", "bytes": 1}, tmp_path),
        _kill_at(worker, job, {"at": "rename", "name": destination.name}, tmp_path),
        _kill_at(worker, job, {"at": "rename", "name": manifest_of(destination).name}, tmp_path),
    ]
    other = tmp_path / "other.jsonl.gz"
    other_dead = _kill_at(
        worker, _job(day_fake, destination=str(other)), {"at": "write", "bytes": 1}, tmp_path
    )

    export(str(destination), start_at=START, end_at=END)

    assert not any(path.exists() for path in dead)
    assert leftovers(tmp_path) == [other_dead], "only the leftovers of the destination exported"
    assert_consistent(destination, expected=serialise(day_fake.ground_truth(START, END), compressed=True))
    record("staging leftovers", "a later export of the destination", removed=len(dead), kept=1)


def test_a_later_export_leaves_the_staging_file_of_a_live_attempt_alone(
    worker: Worker, day_fake: FakeAsana, tmp_path: Path
) -> None:
    destination = tmp_path / "day.jsonl.gz"
    truth = serialise(day_fake.ground_truth(START, END), compressed=True)
    # The live attempt renews its lease every 0.1 s (the grace period / 6000), not every minute.
    live = worker.start(
        **_job(day_fake, destination=str(destination)),
        pause={"at": "write", "bytes": len(truth) // 2},
        lease_renewals=6000,
    )
    live.wait_paused()
    (staging,) = leftovers(tmp_path)
    os.utime(staging, (LONG_AGO, LONG_AGO))
    wait_until(
        lambda: staging.stat().st_mtime > time.time() - DEADLINE,
        message="the live attempt should have renewed the lease on its staging file",
    )

    export(str(destination), start_at=START, end_at=END)

    assert leftovers(tmp_path) == [staging]
    live.resume()
    assert live.wait_ended() == 0, live.outcome()
    assert_consistent(destination, expected=truth)
    assert leftovers(tmp_path) == []
    record("staging leftovers", "a live attempt during a later export", removed=0, kept=1)


def test_the_sweep_command_removes_what_killed_attempts_left_under_a_base_path(
    worker: Worker, day_fake: FakeAsana, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    intervals = [(START, END), (END, midnight(1))]
    files = [
        Path(export(None, base_path=str(base), start_at=start, end_at=end)["path"].removeprefix("file://"))
        for start, end in intervals
    ]
    dead = [
        _kill_at(worker, _job(day_fake, destination=str(path)), {"at": "write", "bytes": 1}, base)
        for path in files
    ]
    command = [sys.executable, "-m", "airflow_provider_asana_audit.storage", "sweep", str(base), "--delete"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group, ended as a whole below
    )
    try:
        out, err = process.communicate(timeout=DEADLINE)
    finally:
        stop_process_group(process)

    assert process.returncode == 0, err
    assert leftovers(base) == []
    for path in dead:
        assert f"removed file://{path} " in out
    assert "2 staging object(s) older than 1h" in out
    for path, (start, end) in zip(files, intervals, strict=True):
        assert read_events(path) == day_fake.ground_truth(start, end), "exports are never touched"
    record("staging leftovers", "the sweep command over a base path", removed=len(dead), kept=0)
