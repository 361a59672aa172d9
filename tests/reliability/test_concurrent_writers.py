"""
Several exports at once, in separate processes, to the same storage (the default layout under one base
path): adjacent days, an interval overlapping both, the same day twice (a retry racing a zombie), and a
concurrent read. They all read at the same time, then each holds just before its commit until all are
there, and all commit together: every file ends exact, and nothing is left behind.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from airflow_provider_asana_audit.query import FILTER_NAMES
from airflow_provider_asana_audit.storage import default_destination
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from tests.helpers.exports import midnight, serialise

from .support import Worker, assert_consistent, leftovers, record

D3, D2, D1 = midnight(3), midnight(2), midnight(1)
#: (start, end, concurrency) of each writer.
WRITERS: list[tuple[datetime, datetime, int]] = [
    (D3, D2, 1),
    (D2, D1, 1),  # adjacent to the first
    (D3 + timedelta(hours=12), D2 + timedelta(hours=12), 1),  # overlaps both
    (D3, D2, 8),  # the first day again, read 8 requests at a time: the same file, written twice
    (D3 + timedelta(hours=6), D3 + timedelta(hours=18), 8),  # inside the first day
]


def test_concurrent_exports_of_overlapping_and_adjacent_intervals_each_write_an_exact_file(
    worker: Worker, day_fake: FakeAsana, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    started = time.monotonic()
    exports = []
    for start, end, concurrency in WRITERS:
        path = Path(
            default_destination(
                base_path=str(base),
                workspace_gid=day_fake.workspace_gid,
                start_at=start,
                end_at=end,
                filters=dict.fromkeys(FILTER_NAMES),
            ).path
        )
        child = worker.start(
            connection=day_fake.connection_json(),
            base_path=str(base),
            start_at=format_instant(start),
            end_at=format_instant(end),
            page_size=50,
            concurrency=concurrency,
            pause={"at": "rename", "name": path.name},
        )
        exports.append((child, path, start, end))
    for child, *_ in exports:
        child.wait_paused()
    for child, *_ in exports:
        child.resume()

    for child, *_ in exports:
        assert child.wait_ended() == 0, child.outcome()
    for _, path, start, end in exports:
        assert_consistent(path, expected=serialise(day_fake.ground_truth(start, end), compressed=True))
    assert leftovers(base) == []
    record(
        "concurrent writers",
        f"{len(WRITERS)} processes, 4 files, one written twice",
        requests=day_fake.stats.requests,
        seconds=time.monotonic() - started,
    )
