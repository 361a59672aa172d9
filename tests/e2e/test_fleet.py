"""
End to end on a real distributed Airflow: a backfill of the export example on two Celery workers,
into an S3 API, against a stand-in with Asana's limits; then the same backfill again while one worker
is killed.

Every service runs on this machine, on free ports, in temporary directories, and is ended by process
group (``tests/helpers/services.py``): Postgres (the metadata database), Redis (the Celery broker, and
the shared request budget's store once the connection option ``budget_redis_conn_id`` is honoured),
moto's server mode (an S3 API; the bucket is made by the test). The deployment
(``tests/helpers/deployment.py``) runs the API server, scheduler, DAG processor, triggerer and two
``airflow celery worker`` processes. The stand-in runs in this process with Asana's limits (1,500
requests a minute as a token bucket, 50 requests in flight, 200 ms a request) and a few thousand events
a day.

The DAGs folder holds the export example with one change, ``concurrency=8`` (requests at a time of
each task); its retries (3, exponential backoff from 5 minutes) are kept, and the deployment caps the
wait between tries at 2 seconds (``[core] max_task_retry_delay``, a global setting) so that a retry
comes at once.

1. ``airflow backfill create`` over 15 days, 4 runs at a time: every file, read back from S3, holds
   exactly the stand-in's events of its day (byte for byte the documented format), at least 4 tasks
   ran at once, and the archive check over ``s3://`` says WHOLE. The requests refused with 429 are
   reported.
2. ``airflow backfill create --reprocess-behavior completed`` over the same days; once a task runs on
   the first worker and another day is done, every process of that worker (its process group and the
   task runners, which lead groups of their own) is SIGKILLed. The scheduler finds the lost task
   instances by their missing heartbeats (``[scheduler] task_instance_heartbeat_timeout``, set low),
   they are retried on the other worker, the backfill completes, and every file is still exact.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_3_PLUS
from tests.helpers.dags import EXAMPLE_DAGS
from tests.helpers.deployment import CeleryDeployment, celery_deployment, kill_session, session_members
from tests.helpers.exports import midnight, serialise
from tests.helpers.services import Service, aws_connection, moto_s3, postgres, redis, s3_client

pytestmark = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="needs Airflow 3: `airflow backfill create` runs backfills in the scheduler, and the task "
    "runners of Celery workers talk to the Execution API; written against 3.3",
)

EXPORT, EXPORT_TASK = "example_asana_audit_export", "export_audit_log"
#: The backfilled days: the DAYS days before yesterday.
DAYS = 15
FIRST_DAY_AGO, LAST_DAY_AGO = DAYS + 1, 2
#: Runs of the backfill at a time, and requests at a time of each task.
MAX_ACTIVE_RUNS, CONCURRENCY = 4, 8
#: The stand-in: a few thousand events a day, Asana's limits and a realistic latency.
SEED, PER_DAY = 16, 2_000
REQUESTS_PER_MINUTE, MAX_IN_FLIGHT, LATENCY = 1_500, 50, 0.2
#: The bucket and the export's base path; ``aws_default@`` names the connection to moto.
BUCKET, PREFIX = "bucket", "asana"
BASE = f"s3://aws_default@{BUCKET}/{PREFIX}"
VERIFY_BASE = f"s3://{BUCKET}/{PREFIX}"
#: Deadlines (seconds): for the components and workers to come up; for a backfill to finish.
STARTUP, BACKFILL = 180.0, 240.0
#: The most of the requests that may be refused with 429. With the budget shared through Redis (the
#: connection's ``budget_redis_conn_id``) the fleet keeps to the token's limits; without it, each task
#: process adapting on its own, 11-14% were refused here.
REFUSED_SHARE = 0.01
CONFIG = {
    "core": {
        "dags_are_paused_at_creation": "False",
        "parallelism": "16",
        # The example retries after 5, 10, 20 minutes; a global cap makes a retry come at once.
        "max_task_retry_delay": "2",
    },
    "scheduler": {
        # A task instance whose runner stopped heartbeating (its worker died) is failed, and retried,
        # after this many seconds instead of 5 minutes.
        "task_instance_heartbeat_timeout": "20",
        "task_instance_heartbeat_timeout_detection_interval": "2",
    },
    "dag_processor": {"parsing_processes": "1"},
    "api": {"workers": "1"},
}


@dataclass(frozen=True)
class TaskInstance:
    """A task instance of the export DAG in a backfill run."""

    run_id: str
    logical_date: datetime
    state: str | None
    try_number: int
    pid: int | None
    start_date: datetime | None
    end_date: datetime | None


def _task_instances(airflow: CeleryDeployment, backfill_id: int) -> list[TaskInstance]:
    rows = airflow.query(
        "SELECT ti.run_id, dr.logical_date, ti.state, ti.try_number, ti.pid, ti.start_date, ti.end_date "
        "FROM task_instance ti JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
        "WHERE ti.dag_id = ? AND ti.task_id = ? AND dr.backfill_id = ?",
        (EXPORT, EXPORT_TASK, backfill_id),
    )
    return [TaskInstance(*row) for row in rows]


def _completed(airflow: CeleryDeployment, backfill_id: int) -> bool:
    rows = airflow.query("SELECT completed_at FROM backfill WHERE id = ?", (backfill_id,))
    return bool(rows and rows[0][0] is not None)


def _backfill(airflow: CeleryDeployment, first: datetime, last: datetime, *extra: str) -> int:
    """``airflow backfill create`` over the export DAG; return the new backfill's id."""
    before = {row[0] for row in airflow.query("SELECT id FROM backfill")}
    airflow.airflow(
        "backfill",
        "create",
        "--dag-id",
        EXPORT,
        "--from-date",
        f"{first:%Y-%m-%d}",
        "--to-date",
        f"{last:%Y-%m-%d}",
        "--max-active-runs",
        str(MAX_ACTIVE_RUNS),
        *extra,
    )
    (backfill_id,) = {row[0] for row in airflow.query("SELECT id FROM backfill")} - before
    return int(backfill_id)


def _fail_on(airflow: CeleryDeployment, backfill_id: int, bad: set[str]) -> list[TaskInstance]:
    """The backfill's task instances; fail at once, with the task's log, when one is in a ``bad`` state."""
    tis = _task_instances(airflow, backfill_id)
    for ti in tis:
        if ti.state in bad:
            raise AssertionError(f"{EXPORT_TASK} of {ti.run_id} is {ti.state}:\n{_task_log(airflow, ti)}")
    return tis


def _task_log(airflow: CeleryDeployment, ti: TaskInstance) -> str:
    folder = airflow.home / "logs" / f"dag_id={EXPORT}" / f"run_id={ti.run_id}" / f"task_id={EXPORT_TASK}"
    parts = [
        f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
        for path in sorted(folder.glob("*.log"))
    ]
    return "\n".join(parts) or f"(no log in {folder})"


def _most_at_once(tis: list[TaskInstance]) -> int:
    """The most task instances that ran at the same time (from their start and end)."""
    edges = sorted(
        [(ti.start_date, 1) for ti in tis if ti.start_date and ti.end_date]
        + [(ti.end_date, -1) for ti in tis if ti.start_date and ti.end_date]
    )
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _export_files(s3: Any) -> dict[str, bytes]:
    """The data files in the bucket, by the day of their ``date=`` folder."""
    files = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/"):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith(".jsonl.gz"):
                day = key.split("/date=", 1)[1].split("/", 1)[0]
                files[day] = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return files


def _check_files(s3: Any, fake: FakeAsana, days: list[datetime]) -> int:
    """Every day's file holds exactly the stand-in's events of the day; return the events in all."""
    files = _export_files(s3)
    assert sorted(files) == [f"{day:%Y-%m-%d}" for day in days]
    total = 0
    for day in days:
        expected = fake.ground_truth(day, day + timedelta(days=1))
        assert len(expected) > PER_DAY / 2, f"the stand-in should hold events on {day:%Y-%m-%d}"
        data = files[f"{day:%Y-%m-%d}"]
        if data != serialise(expected, compressed=True):
            events = [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]
            assert events == expected, f"the file of {day:%Y-%m-%d} should hold exactly its events"
            raise AssertionError(
                f"the file of {day:%Y-%m-%d} holds its events, but not in the documented bytes"
            )
        total += len(expected)
    return total


def _refused(fake: FakeAsana) -> tuple[int, int, dict[str, int]]:
    """Requests answered, 429s among them, and the 429s by limit."""
    stats = fake.stats
    return stats.requests, stats.by_status[429], dict(stats.refused)


def _connections(fake: FakeAsana, moto: Service, broker: Service) -> dict[str, str]:
    asana = fake.connection_dict()
    # The shared request budget's store: a Redis connection (the broker's server, another database),
    # named by the Asana connection.
    asana["extra"] = {**asana["extra"], "budget_redis_conn_id": "asana_budget_redis"}
    aws = aws_connection(moto)
    budget = {"conn_type": "redis", "host": "127.0.0.1", "port": broker.port, "extra": {"db": 1}}
    return {
        "AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT": json.dumps(asana),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "AIRFLOW_CONN_ASANA_BUDGET_REDIS": json.dumps(budget),
    }


def _install_dag(airflow: CeleryDeployment) -> None:
    """The export example, unchanged but for ``concurrency=8``."""
    source = (EXAMPLE_DAGS / f"{EXPORT}.py").read_text()
    anchor = "        deferrable=True,\n"
    assert source.count(anchor) == 1, "the export example changed: update how the test sets its concurrency"
    (airflow.dags_folder / f"{EXPORT}.py").write_text(
        source.replace(anchor, f"{anchor}        concurrency={CONCURRENCY},\n")
    )


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Service, Service, Service]]:
    """Postgres, Redis and moto's S3 server, each in its own directory and process group."""
    folder = tmp_path / "services"
    folder.mkdir()
    with postgres(folder) as database, redis(folder) as broker, moto_s3(folder) as s3:
        yield database, broker, s3


def test_a_celery_fleet_backfills_exactly_into_s3_and_survives_a_killed_worker(
    tmp_path: Path, services: tuple[Service, Service, Service]
) -> None:
    started = time.monotonic()
    timeline: dict[str, float] = {}
    database, broker, moto = services
    today = midnight(0)
    first, last = today - timedelta(days=FIRST_DAY_AGO), today - timedelta(days=LAST_DAY_AGO)
    days = [first + timedelta(days=n) for n in range(DAYS)]
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=BUCKET)
    with (
        FakeAsana(
            seed=SEED,
            start=first,
            end=last + timedelta(days=1),
            events_per_day=PER_DAY,
            requests_per_minute=REQUESTS_PER_MINUTE,
            max_in_flight=MAX_IN_FLIGHT,
            latency=LATENCY,
        ) as fake,
        celery_deployment(
            tmp_path / "airflow",
            database_url=database.url,
            broker_url=broker.url,
            worker_concurrency=MAX_ACTIVE_RUNS,
            config=CONFIG,
        ) as airflow,
    ):
        airflow.env.update(
            {
                **_connections(fake, moto, broker),
                "ASANA_AUDIT_EXPORT_START": f"{today:%Y-%m-%d}",  # only the backfills make runs
                "ASANA_AUDIT_EXPORT_BASE": BASE,
                "ASANA_AUDIT_SETTLE_MINUTES": "0",
            }
        )
        _install_dag(airflow)
        airflow.migrate()
        timeline["migrated"] = time.monotonic() - started
        fleet = airflow.start_fleet(workers=2)
        airflow.wait_until(
            lambda: airflow.api_ready() and airflow.workers_ready(["worker1", "worker2"]),
            timeout=STARTUP,
            message="the API server should answer and both Celery workers be ready",
        )
        airflow.wait_until(
            lambda: airflow.query("SELECT 1 FROM dag WHERE dag_id = ?", (EXPORT,)),
            timeout=STARTUP,
            message="the DAG processor should serialize the export DAG",
        )
        timeline["up"] = time.monotonic() - started

        # 1. The backfill: 15 days, 4 at a time, on two workers.
        first_backfill = _backfill(airflow, first, last)
        airflow.wait_until(
            lambda: (
                _fail_on(airflow, first_backfill, {"failed", "up_for_retry", "upstream_failed"})
                and _completed(airflow, first_backfill)
            ),
            timeout=BACKFILL,
            message="the backfill should export every day and be marked completed",
            interval=0.5,
        )
        timeline["first backfill"] = time.monotonic() - started
        tis = _task_instances(airflow, first_backfill)
        assert sorted(ti.logical_date for ti in tis) == days
        assert {ti.state for ti in tis} == {"success"}
        at_once = _most_at_once(tis)
        assert at_once >= MAX_ACTIVE_RUNS, f"{MAX_ACTIVE_RUNS} tasks should have run at once, not {at_once}"
        events = _check_files(s3, fake, days)
        requests, refused, by_limit = _refused(fake)
        first_pass = (requests, refused, by_limit)
        before = _export_files(s3)

        # 2. Again, every day reprocessed; one worker is killed while it runs a task.
        fake.reset_stats()
        second_backfill = _backfill(airflow, first, last, "--reprocess-behavior", "completed")
        victim = fleet["worker1"]
        lost: list[TaskInstance] = []

        def worker1_busy_and_a_day_done() -> bool:
            tis = _fail_on(airflow, second_backfill, {"failed", "upstream_failed"})
            running = [
                ti for ti in tis if ti.state == "running" and ti.pid and ti.pid in session_members(victim.pid)
            ]
            lost[:] = running
            return bool(running) and any(ti.state == "success" for ti in tis)

        airflow.wait_until(
            worker1_busy_and_a_day_done,
            timeout=BACKFILL,
            message="the first worker should run a task of the second backfill after another day is done",
            interval=0.2,
        )
        killed = kill_session(victim)
        timeline["worker killed"] = time.monotonic() - started
        assert not any(pid in killed for pid in session_members(victim.pid))
        airflow.wait_until(
            lambda: (
                _fail_on(airflow, second_backfill, {"failed", "upstream_failed"})
                and _completed(airflow, second_backfill)
            ),
            timeout=BACKFILL,
            message="the second backfill should finish on the other worker",
            interval=0.5,
        )
        timeline["second backfill"] = time.monotonic() - started
        final = {ti.run_id: ti for ti in _task_instances(airflow, second_backfill)}
        assert sorted(ti.logical_date for ti in final.values()) == days
        assert {ti.state for ti in final.values()} == {"success"}
        # A task may have ended in the instant before the kill; the others were lost with the worker.
        retried = [ti.run_id for ti in lost if final[ti.run_id].try_number > ti.try_number]
        assert retried, "the tasks killed with the first worker should have been retried:\n" + "\n".join(
            _task_log(airflow, final[ti.run_id]) for ti in lost
        )
        assert fleet["worker2"].running()
        assert _check_files(s3, fake, days) == events
        assert _export_files(s3) == before
        second_pass = _refused(fake)
        verify_env = {
            **os.environ,
            "AIRFLOW_CONN_AWS_DEFAULT": airflow.env["AIRFLOW_CONN_AWS_DEFAULT"],
        }

    # 3. The archive check over s3:// passes both backfills' archive.
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_asana_audit.verify",
            VERIFY_BASE,
            "--conn-id",
            "aws_default",
            "--since",
            f"{first:%Y-%m-%d}",
            "--until",
            f"{last + timedelta(days=1):%Y-%m-%d}",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=verify_env,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"\nWHOLE: {DAYS} files and {events} events checked" in check.stdout, check.stdout
    shares = [refused / requests if requests else 0.0 for requests, refused, _ in (first_pass, second_pass)]
    print(
        f"e2e fleet: {DAYS} days, {events} events, exported twice by 2 Celery workers (one killed: "
        f"{len(retried)} task(s) retried); at most {at_once} tasks at once; requests refused (429): "
        f"first backfill {first_pass[1]} of {first_pass[0]} ({shares[0]:.1%}, {first_pass[2]}), "
        f"second {second_pass[1]} of {second_pass[0]} ({shares[1]:.1%}, {second_pass[2]}); seconds: "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timeline.items())
        + f"; total {time.monotonic() - started:.0f}"
    )
    assert max(shares) <= REFUSED_SHARE, (
        f"more than {REFUSED_SHARE:.0%} of the requests were refused: {shares}"
    )
    # The fleet never sent more than the token's rate: the stand-in's bucket never ran dry.
    assert first_pass[2].get("rate", 0) == 0, first_pass
