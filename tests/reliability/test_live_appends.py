"""
Events that arrive while an interval is exported, in that interval and in the next one (at the
boundary instant too), never cause a duplicate or a gap: the running export holds each event at most
once and every event that existed when it began; the next interval's export, and a re-export of the
first, hold exactly the truth.

The events are appended by the stand-in itself as the export's third request arrives, so they arrive
while the export runs, whatever the timing. (An event appended behind the export's cursor is not seen
by it: Asana's capture delay, which the settle period and re-exports cover.)
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.exports import midnight, read_events

from .support import export, on_request, record

FIRST = (midnight(3), midnight(2))
SECOND = (midnight(2), midnight(1))


@pytest.mark.parametrize("concurrency", [1, 8])
def test_events_appended_during_an_export_cause_no_duplicate_or_gap_in_a_later_export(
    concurrency: int, day_fake: FakeAsana, tmp_path: Path
) -> None:
    existing = {event["gid"] for event in day_fake.ground_truth(*FIRST)}
    appended: list[dict[str, Any]] = []

    def append() -> None:
        for created_at in (
            FIRST[0] + timedelta(minutes=1),  # long behind the cursor: captured late
            FIRST[1] - timedelta(milliseconds=1),  # the last instant of the current interval
            SECOND[0],  # the first instant of the next interval
            SECOND[0] + timedelta(hours=12),
        ):
            appended.extend(day_fake.append_events(5, created_at=created_at))

    on_request(day_fake, 3, append)
    first = tmp_path / "first.jsonl"
    export(str(first), start_at=FIRST[0], end_at=FIRST[1], page_size=50, concurrency=concurrency)

    assert len(appended) == 20, "the events were appended while the export ran"
    running = read_events(first)
    gids = [event["gid"] for event in running]
    assert len(gids) == len(set(gids)), "no event twice"
    assert existing <= set(gids), "no event that existed when the export began is missing"
    assert running == [event for event in day_fake.ground_truth(*FIRST) if event["gid"] in set(gids)]

    second = tmp_path / "second.jsonl"
    export(str(second), start_at=SECOND[0], end_at=SECOND[1], page_size=50, concurrency=concurrency)
    assert read_events(second) == day_fake.ground_truth(*SECOND)

    export(str(first), start_at=FIRST[0], end_at=FIRST[1], page_size=50, concurrency=concurrency)
    assert read_events(first) == day_fake.ground_truth(*FIRST)

    appended_gids = {event["gid"] for event in appended}
    record(
        "events appended during an export",
        f"{concurrency} at a time",
        appended=len(appended),
        seen_by_the_running_export=len(appended_gids & set(gids)),
        in_the_next_export=len(appended_gids & {event["gid"] for event in read_events(second)}),
        in_the_re_export=len(appended_gids & {event["gid"] for event in read_events(first)}),
    )
