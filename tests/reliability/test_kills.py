"""
``SIGKILL`` the export at random points: while it fetches, while it writes, just before it commits the
file, just before it commits the manifest; 22 kills in all.

After every kill the destination holds the earlier complete file or nothing (or, killed after the file's
commit, the new complete file), any manifest describes the bytes beside it, and the killed attempt left
at most its hidden, private staging object. A re-run then holds exactly the truth. Every round appends
events first, so the killed export would have written other bytes than the earlier file.

The exports run in children forked by the worker (``worker.py``); the kill goes to the child's process
group. Kill points come from a seeded RNG (``ASANA_RELIABILITY_SEED``).
"""

from __future__ import annotations

import math
import random
import time
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from tests.helpers.exports import midnight, read_events, serialise
from tests.helpers.waiting import wait_until

from .support import (
    SEED,
    Export,
    Worker,
    assert_consistent,
    export,
    hold_request,
    leftovers,
    manifest_of,
    mode,
    record,
)

START, END = midnight(3), midnight(2)
PAGE_SIZE = 50
#: Kills at each point, 22 in all.
KILLS = {"fetching": 6, "writing": 6, "committing the file": 5, "committing the manifest": 5}


def _new_leftover(directory: Path, before: set[Path]) -> Path:
    (new,) = set(leftovers(directory)) - before
    return new


@pytest.mark.parametrize("point", list(KILLS))
def test_a_killed_export_leaves_a_complete_file_or_nothing_and_a_rerun_is_exact(
    point: str, worker: Worker, day_fake: FakeAsana, tmp_path: Path
) -> None:
    rng = random.Random(f"{SEED}-{point}")
    compressed = point != "writing"  # the plain file grows with every page: any byte can be the last
    destination = tmp_path / ("day.jsonl.gz" if compressed else "day.jsonl")
    job = {
        "connection": day_fake.connection_json(),
        "destination": str(destination),
        "start_at": format_instant(START),
        "end_at": format_instant(END),
        "page_size": PAGE_SIZE,
    }
    where: list[str] = []
    started = time.monotonic()
    for round_number in range(KILLS[point]):
        if round_number % 3 == 0:  # every third round starts from nothing
            destination.unlink(missing_ok=True)
            manifest_of(destination).unlink(missing_ok=True)
        previous = destination.read_bytes() if destination.exists() else None
        day_fake.append_events(rng.randint(1, 3), created_at=START + timedelta(seconds=rng.uniform(0, 86399)))
        events = day_fake.ground_truth(START, END)
        truth = serialise(events, compressed=compressed)
        before = set(leftovers(tmp_path))
        day_fake.reset_stats()
        child: Export
        expected = previous
        if point == "fetching":
            number = rng.randint(1, math.ceil(len(events) / PAGE_SIZE))
            concurrency = 8 if round_number % 2 else 1
            hold_request(day_fake, number)
            child = worker.start(**job, concurrency=concurrency)
            wait_until(
                lambda: day_fake.stats.requests >= number,  # noqa: B023  # this round's number
                message=f"the export should have sent request {number}",
            )
            where.append(f"request {number}" + (" (8 at a time)" if concurrency > 1 else ""))
        elif point == "writing":
            size = rng.randint(1, len(truth) - 1)
            child = worker.start(**job, pause={"at": "write", "bytes": size})
            child.wait_paused()
            assert _new_leftover(tmp_path, before).stat().st_size >= size, "killed mid-write"
            where.append(f"byte {size:,} of {len(truth):,}")
        elif point == "committing the file":
            child = worker.start(**job, pause={"at": "rename", "name": destination.name})
            child.wait_paused()
            assert _new_leftover(tmp_path, before).read_bytes() == truth, "complete, one step from commit"
        else:
            child = worker.start(**job, pause={"at": "rename", "name": manifest_of(destination).name})
            child.wait_paused()
            expected = truth  # the file was committed, its manifest not yet

        child.kill()
        day_fake.clear_faults()

        assert_consistent(destination, expected=expected)
        assert mode(_new_leftover(tmp_path, before)) == 0o600
        export(str(destination), start_at=START, end_at=END, page_size=PAGE_SIZE)
        assert_consistent(destination, expected=truth)
        assert read_events(destination) == events
    record(
        "kills",
        point,
        kills=KILLS[point],
        where=", ".join(where) or "paused at the move, then killed",
        seconds=time.monotonic() - started,
    )
