"""
End to end: asset watchers on ``AsanaAuditLogEventTrigger`` in a real Airflow 3.3 deployment whose
triggerer is SIGKILLed, twice, while events keep arriving.

A DAG processor, a scheduler and a triggerer run in a temporary ``AIRFLOW_HOME`` (SQLite), against the
stand-in run as its own process, appending an event every :data:`APPEND_EVERY` seconds. Two assets
are watched, with different filters (so they share one poll) and different starts:

* ``asana_e2e_everything``: every event from a fixed ``start_at`` before the stand-in started (so the
  stand-in's first events are a backlog, read when the watcher first runs);
* ``asana_e2e_users``: events by users only, from the trigger's first start (``start_at=None``).

The triggerer's process group is killed with SIGKILL, the next one started, twice. The oracle is the
stand-in's own answer for the whole period, read at the end; what was delivered is the asset events
in the metadata database and the gids in their payloads. The trigger's documented guarantee is what
is checked: every event became an asset event (none lost, neither during an outage nor in flight at
a kill), and exactly one, except events whose asset event Airflow stored within a few seconds before
a kill (the position after them may not have been stored yet), which may have become two.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.get_provider_info import CONN_TYPE
from airflow_provider_asana_audit.query import AuditLogQuery
from airflow_provider_asana_audit.testing.data import DEFAULT_WORKSPACE_GID
from airflow_provider_asana_audit.testing.fake import DEFAULT_TOKEN
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_3_PLUS
from tests.helpers.deployment import Deployment, deployment

pytestmark = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="needs Airflow 3.3+: the asset state store and shared streams of its triggerer "
    "(Airflow 2 has no asset watchers at all)",
)

#: Seconds between the stand-in's events.
APPEND_EVERY = 0.25
#: The watchers' poll interval.
POLL_INTERVAL = 0.5
#: Triggerer kills.
KILLS = 2
#: Events that are duplicated may have had their asset event stored at most this long before a kill:
#: the position after them is stored once Airflow confirms the asset event to the trigger on the
#: triggerer's next state sync (about a second; here at most 1.1 s was seen), padded for a loaded machine.
DUPLICATE_WINDOW = timedelta(seconds=8)
#: Deadlines (seconds): for the deployment to come up, and for each step after that.
STARTUP = 150.0
STEP = 60.0

EVERYTHING, USERS = "asana_e2e_everything", "asana_e2e_users"

DAG_SOURCE = """\
from __future__ import annotations

from datetime import datetime, timezone

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger

everything = Asset(
    "{everything}",
    watchers=[
        AssetWatcher(
            name="{everything}",
            trigger=AsanaAuditLogEventTrigger(
                start_at="{start_at}", poll_interval={poll_interval}, asset_name="{everything}"
            ),
        )
    ],
)
users = Asset(
    "{users}",
    watchers=[
        AssetWatcher(
            name="{users}",
            trigger=AsanaAuditLogEventTrigger(
                filters={{"actor_type": "user"}}, poll_interval={poll_interval}, asset_name="{users}"
            ),
        )
    ],
)

with DAG(
    dag_id="asana_e2e_watchers",
    schedule=(everything | users),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
):
    EmptyOperator(task_id="noop")
"""

CONFIG = {
    "core": {"dags_are_paused_at_creation": "False"},
    # Watchers are registered once the scheduler has marked the assets active and the DAG is parsed
    # again: both every few seconds rather than every minute.
    "dag_processor": {"min_file_process_interval": "3", "refresh_interval": "5"},
    "scheduler": {"parsing_cleanup_interval": "2"},
    # A new triggerer takes over the triggers of a dead one once its heartbeat is this old.
    "triggerer": {"job_heartbeat_sec": "1", "triggerer_health_check_threshold": "5"},
}


@dataclass(frozen=True)
class AssetEvent:
    """An asset event in the metadata database: the asset, the payload's gid, and when it was stored."""

    asset: str
    gid: str
    payload: dict[str, Any]
    stored_at: datetime


def _asset_events(airflow: Deployment) -> list[AssetEvent]:
    rows = airflow.query(
        "SELECT a.name, e.extra, e.timestamp FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "ORDER BY e.id"
    )
    events = []
    for name, extra, stored_at in rows:
        payload = json.loads(extra)["payload"]
        when = datetime.fromisoformat(stored_at)
        events.append(
            AssetEvent(name, str(payload["gid"]), payload, when.replace(tzinfo=when.tzinfo or timezone.utc))
        )
    return events


def _positions(airflow: Deployment) -> dict[str, dict[str, Any]]:
    rows = airflow.query("SELECT a.name, s.value FROM asset_state_store s JOIN asset a ON a.id = s.asset_id")
    return {name: json.loads(value) for name, value in rows}


def _count(airflow: Deployment, asset: str) -> int:
    return sum(1 for event in _asset_events(airflow) if event.asset == asset)


def _held_by(position: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether ``event`` is at or before a stored position (read already when it was stored)."""
    instant, last = parse_instant(event["created_at"]), parse_instant(position["last_created_at"])
    return instant < last or (instant == last and event["gid"] in position["gids_at_last"])


def _check_delivery(
    delivered: list[AssetEvent], truth: list[dict[str, Any]], kills: list[datetime], asset: str
) -> list[timedelta]:
    """
    Every truth event became an asset event; an asset event was repeated only after a kill that came
    at most :data:`DUPLICATE_WINDOW` after the previous one was stored. Return those intervals.
    """
    by_gid: dict[str, list[datetime]] = defaultdict(list)
    for event in delivered:
        by_gid[event.gid].append(event.stored_at)
    missing = [event["gid"] for event in truth if not by_gid[event["gid"]]]
    assert not missing, (
        f"{asset}: {len(missing)} of {len(truth)} events never became an asset event: {missing}"
    )
    explained: list[timedelta] = []
    unexplained: dict[str, list[datetime]] = {}
    for gid, stored in by_gid.items():
        for previous, again in itertools.pairwise(sorted(stored)):
            kill = next((k for k in kills if previous <= k <= again), None)
            if kill is None or kill - previous > DUPLICATE_WINDOW:
                unexplained[gid] = stored
            else:
                explained.append(kill - previous)
    assert not unexplained, (
        f"{asset}: asset events repeated but not just before a kill: {unexplained} {kills}"
    )
    return explained


def test_each_event_becomes_one_asset_event_across_triggerer_kills(tmp_path: Path) -> None:
    started = time.monotonic()
    start_at = datetime.now(timezone.utc).replace(microsecond=0)
    with deployment(tmp_path / "airflow", config=CONFIG) as airflow:
        standin = airflow.start_process(
            [
                sys.executable,
                "-m",
                "airflow_provider_asana_audit.testing",
                "--port=0",
                f"--append-every={APPEND_EVERY}",
                "--days=1",
                "--events-per-day=24",
                "--verbose",
            ],
            name="standin",
        )
        base_url = airflow.wait_for_log(standin, "ASANA_STANDIN_URL=", timeout=STEP).split("=", 1)[1].strip()
        airflow.env["AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT"] = json.dumps(
            {
                "conn_type": CONN_TYPE,
                "host": base_url,
                "password": DEFAULT_TOKEN,
                "extra": {"workspace_gid": DEFAULT_WORKSPACE_GID},
            }
        )
        (airflow.dags_folder / "asana_e2e_watchers.py").write_text(
            DAG_SOURCE.format(
                everything=EVERYTHING,
                users=USERS,
                start_at=format_instant(start_at),
                poll_interval=POLL_INTERVAL,
            )
        )
        airflow.migrate()
        airflow.start("dag-processor")
        airflow.start("scheduler")
        triggerer = airflow.start("triggerer")

        # Both watchers run once each has stored a position; events keep arriving meanwhile.
        airflow.wait_until(
            lambda: set(_positions(airflow)) == {EVERYTHING, USERS} and _count(airflow, EVERYTHING) > 0,
            timeout=STARTUP,
            message="both watchers should run, store a position and deliver the backlog",
        )
        users_from = _positions(airflow)[USERS]
        kills: list[datetime] = []
        for _ in range(KILLS):
            delivered = _count(airflow, EVERYTHING)
            airflow.wait_until(
                lambda: _count(airflow, EVERYTHING) >= delivered + 8,  # noqa: B023  # read at once
                timeout=STEP,
                message="the triggerer should deliver events",
            )
            triggerer.kill()
            kills.append(datetime.now(timezone.utc))
            # Events keep arriving while no triggerer runs (the next one also waits for the dead
            # one's heartbeat to age before taking its triggers over).
            triggerer = airflow.start("triggerer")
            restarted = datetime.now(timezone.utc)
            # The new triggerer has caught up once it has stored a position past its own start.
            airflow.wait_until(
                lambda: parse_instant(_positions(airflow)[EVERYTHING]["last_created_at"]) > restarted,  # noqa: B023
                timeout=STEP,
                message="the new triggerer should take the watchers over, deliver and store its position",
            )

        end = datetime.now(timezone.utc)
        # The watchers' requests so far (the oracle's own, with a filter, come next).
        requests = [line for line in standin.log().splitlines() if "audit_log_events?" in line]
        with AsanaAuditLogClient(
            token=DEFAULT_TOKEN, workspace_gid=DEFAULT_WORKSPACE_GID, base_url=base_url
        ) as api:
            truth_all = list(api.iter_events(AuditLogQuery(start_at=start_at, end_at=end)))
            truth_users = [
                event
                for event in api.iter_events(AuditLogQuery(start_at=start_at, end_at=end, actor_type="user"))
                if not _held_by(users_from, event)
            ]
        wanted = {EVERYTHING: {e["gid"] for e in truth_all}, USERS: {e["gid"] for e in truth_users}}

        def caught_up() -> bool:
            got = defaultdict(set)
            for event in _asset_events(airflow):
                got[event.asset].add(event.gid)
            return all(gids <= got[asset] for asset, gids in wanted.items())

        # Checked precisely below, whether or not every event made it in time.
        airflow.eventually(caught_up, timeout=STEP)
        asset_events = _asset_events(airflow)
        everything = [event for event in asset_events if event.asset == EVERYTHING]
        users = [event for event in asset_events if event.asset == USERS]
        repeated = _check_delivery(everything, truth_all, kills, EVERYTHING)
        repeated_users = _check_delivery(
            [event for event in users if event.gid in wanted[USERS]], truth_users, kills, USERS
        )
        assert {event.gid for event in everything} <= wanted[EVERYTHING] | _after(end, everything)
        assert all(event.payload["actor"]["actor_type"] == "user" for event in users)
        # One shared poll: the users watcher's filter was never sent to Asana.
        assert requests
        assert not [line for line in requests if "actor_type=" in line]
    print(
        f"e2e: {len(truth_all)} events ({len(truth_users)} by users) over {KILLS} triggerer kills; "
        f"{len(repeated)} (+{len(repeated_users)}) asset events repeated, each stored at most "
        f"{max(repeated + repeated_users, default=timedelta(0)).total_seconds():.1f} s before a kill; "
        f"{len(requests)} requests; {time.monotonic() - started:.0f} s"
    )


def _after(end: datetime, events: list[AssetEvent]) -> set[str]:
    """The gids of delivered events created at or after ``end`` (outside the oracle's period)."""
    return {event.gid for event in events if parse_instant(event.payload["created_at"]) >= end}
