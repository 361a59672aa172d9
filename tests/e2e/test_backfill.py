"""
End to end: a real Airflow 3.3 deployment backfills a week with the export example, twice, while the
sensor example waits in the triggerer.

A DAG processor, a scheduler (LocalExecutor), a triggerer and an API server run in a temporary
``AIRFLOW_HOME`` (SQLite); the stand-in runs in this process, holding nine days of generated events, and
the deployment's ``asana_audit_log_default`` points at it. The DAGs folder holds the two examples,
unchanged: ``example_asana_audit_export`` (configured by its environment variables) and
``example_asana_audit_sensor``.

* ``airflow backfill create`` exports 7 days, 4 runs at a time, the newest first. The export DAG
  starts today (``ASANA_AUDIT_EXPORT_START``), so the scheduler makes no runs of its own: every run is
  the backfill's. Its settle period (``ASANA_AUDIT_SETTLE_MINUTES``) is chosen so that the newest day
  is still settling when its task first runs: the task defers to the triggerer and is resumed once the
  period has passed. Every file must hold exactly the stand-in's events of its day.
* Meanwhile the scheduler runs the sensor example for the last complete hour (its DAG is not paused):
  its sensor defers, and once its trigger polls in the triggerer, the test appends a failed login of
  that hour to the stand-in; the sensor must find exactly that event and the run succeed.
* ``airflow backfill create --reprocess-behavior completed`` then runs all 7 days again: the files
  must come out byte for byte the same (and be written again).
* ``python -m airflow_provider_asana_audit.verify`` then finds the archive of the week whole.

Both deferrals must have gone through the triggerer: each task instance was seen in the ``deferred``
state with its trigger assigned to the triggerer, its task log says it deferred, and the trigger's log
(written by the triggerer) says it fired.

Each backfill is created while no other component writes to the database (see the note on SQLite
below); the scheduler runs both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana, generate_events
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_3_PLUS
from tests.helpers.dags import EXAMPLE_DAGS
from tests.helpers.deployment import Deployment, deployment
from tests.helpers.exports import midnight, read_events

pytestmark = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="needs Airflow 3: `airflow backfill create` runs backfills in the scheduler (Airflow 2's "
    "`airflow dags backfill` runs them in the CLI); written against 3.3",
)

EXPORT, SENSOR = "example_asana_audit_export", "example_asana_audit_sensor"
EXPORT_TASK, SENSOR_TASK, REPORT_TASK = "export_audit_log", "wait_for_failed_logins", "report_failed_logins"
FAILED_LOGIN = "user_login_failed"
#: The backfilled days: the 7 days before yesterday (yesterday and today hold the sensor's hour).
DAYS = 7
FIRST_DAY_AGO, LAST_DAY_AGO = DAYS + 1, 2
#: Runs of the backfill at a time.
MAX_ACTIVE_RUNS = 4
#: The stand-in's events: a small, fixed, generated set.
SEED, PER_DAY = 2026, 40
#: The newest day stays unsettled this long after the metadata database is made: longer than it takes
#: to create the backfill, start the components and run its task (the newest day runs first; about
#: 30 s here), so that it defers, and not much longer than the sensor's wait (about 90 s).
SETTLE_AFTER_START = timedelta(seconds=75)
#: Deadlines (seconds): for the components to come up; for the sensor's trigger to poll (its poke
#: interval is 60 s); for a backfill to finish.
STARTUP = 180.0
SENSOR_POLL = 150.0
BACKFILL = 240.0
#: Task instance states that end a test at once: a retry of the export would wait 5 minutes.
BAD_STATES = {"failed", "up_for_retry", "upstream_failed"}

# A note on SQLite: each ``airflow backfill create`` runs while no other component writes to the
# database. On SQLite, Airflow 3.3.2 creates each run of a backfill inside a SAVEPOINT, which opens a
# deferred transaction that reads and then writes; SQLite refuses such a write at once ("database is
# locked", without waiting) when another process committed in between. With the scheduler, the DAG
# processor and the triggerer committing every few seconds, ``backfill create`` failed that way in 2 of
# 4 runs here, half-way, leaving a backfill that blocks the next one. So the first backfill is created
# before the components start (the examples serialized with ``airflow dags reserialize``), and the
# second while only the idle API server runs; a new scheduler then runs it. (Production deployments
# use Postgres or MySQL, not SQLite.)
CONFIG = {
    "core": {
        "executor": "LocalExecutor",
        # Both examples unpaused, as a user would have them: the sensor's DAG runs for the last hour;
        # the export DAG starts today, so only the backfill makes its runs.
        "dags_are_paused_at_creation": "False",
        "parallelism": "6",
    },
    "dag_processor": {"parsing_processes": "1"},
}


def _utc(value: str | None) -> datetime | None:
    """A timestamp read from the SQLite database, as an aware UTC datetime."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class TaskInstance:
    """A task instance row, with its trigger if it has one."""

    dag_id: str
    run_id: str
    task_id: str
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    trigger: str | None
    triggerer_id: int | None
    logical_date: datetime | None
    run_type: str


@dataclass
class Observer:
    """
    Polls the metadata database and remembers which task instances it saw deferred to a triggerer.

    Every wait goes through :meth:`wait`, which also fails at once, with the task's log, when a task
    instance fails or is up for retry.
    """

    airflow: Deployment
    #: (dag_id, run_id, task_id) -> the trigger's class path, for task instances seen deferred with
    #: their trigger assigned to a triggerer.
    deferred: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def task_instances(self, dag_id: str | None = None) -> list[TaskInstance]:
        rows = self.airflow.query(
            "SELECT ti.dag_id, ti.run_id, ti.task_id, ti.state, ti.try_number, ti.start_date, ti.end_date, "
            "t.classpath, t.triggerer_id, dr.logical_date, dr.run_type FROM task_instance ti "
            "JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
            "LEFT JOIN trigger t ON t.id = ti.trigger_id"
        )
        found = [
            TaskInstance(
                dag_id=row[0],
                run_id=row[1],
                task_id=row[2],
                state=row[3],
                try_number=int(row[4]),
                start_date=_utc(row[5]),
                end_date=_utc(row[6]),
                trigger=row[7],
                triggerer_id=row[8],
                logical_date=_utc(row[9]),
                run_type=row[10],
            )
            for row in rows
        ]
        return [ti for ti in found if dag_id is None or ti.dag_id == dag_id]

    def poll(self) -> list[TaskInstance]:
        """Read the task instances, remember deferred ones, and fail on a failed one."""
        tis = self.task_instances()
        for ti in tis:
            if ti.state == "deferred" and ti.trigger and ti.triggerer_id is not None:
                self.deferred[(ti.dag_id, ti.run_id, ti.task_id)] = ti.trigger
            if ti.state in BAD_STATES:
                raise AssertionError(
                    f"{ti.dag_id}.{ti.task_id} of {ti.run_id} is {ti.state}:\n{self.task_log(ti)}"
                )
        return tis

    def wait(self, predicate: Callable[[], object], *, timeout: float, message: str) -> None:
        """:meth:`Deployment.wait_until`, polling the task instances on every check."""

        def check() -> object:
            self.poll()
            return predicate()

        self.airflow.wait_until(check, timeout=timeout, message=message, interval=0.5)

    def check_fired_in_the_triggerer(self, ti: TaskInstance) -> None:
        """The task instance's first attempt deferred, and its trigger fired in the triggerer."""
        ((job_id,),) = self.airflow.query("SELECT id FROM job WHERE job_type = 'TriggererJob'")
        folder = self.log_folder(ti)
        task_log = (folder / "attempt=1.log").read_text(errors="replace")
        assert "Pausing task as DEFERRED" in task_log, self.task_log(ti)
        trigger_log = folder / f"attempt=1.log.trigger.{job_id}.log"
        assert trigger_log.is_file(), (
            f"the triggerer (job {job_id}) should log the trigger:\n{self.task_log(ti)}"
        )
        assert "Trigger fired event" in trigger_log.read_text(errors="replace"), self.task_log(ti)

    def log_folder(self, ti: TaskInstance) -> Path:
        return (
            self.airflow.home
            / "logs"
            / f"dag_id={ti.dag_id}"
            / f"run_id={ti.run_id}"
            / f"task_id={ti.task_id}"
        )

    def task_log(self, ti: TaskInstance) -> str:
        """The logs of a task instance (its attempts and its triggers), for failure messages."""
        folder = self.log_folder(ti)
        parts = [
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(folder.glob("*.log*"))
            if path.is_file()
        ]
        return "\n".join(parts) or f"(no log in {folder})"


def _stand_in(today: datetime) -> FakeAsana:
    """
    The stand-in's events: nine days of generated ones, without failed logins from yesterday on (the
    sensor's hour must hold none until the test appends one).
    """
    events = [
        event
        for event in generate_events(
            seed=SEED,
            start=today - timedelta(days=FIRST_DAY_AGO + 1),
            end=datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0),
            per_day=PER_DAY,
        )
        if not (
            event["event_type"] == FAILED_LOGIN and event["created_at"] >= _iso(today - timedelta(days=1))
        )
    ]
    return FakeAsana(events=events)


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _backfill(airflow: Deployment, first: datetime, last: datetime, *extra: str) -> int:
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


def _completed(airflow: Deployment, backfill_id: int) -> bool:
    rows = airflow.query("SELECT completed_at FROM backfill WHERE id = ?", (backfill_id,))
    return bool(rows and rows[0][0] is not None)


def _reprocessed(observer: Observer) -> bool:
    """Whether every backfilled day ran a second time, successfully."""
    tis = [ti for ti in observer.task_instances(EXPORT) if ti.run_type == "backfill"]
    return len(tis) == DAYS and all(ti.try_number == 2 and ti.state == "success" for ti in tis)


def _export_files(base: Path) -> dict[str, Path]:
    """The data files under ``base``, by the day of their ``date=`` folder."""
    return {path.parent.name.removeprefix("date="): path for path in base.rglob("*.jsonl.gz")}


def test_a_backfill_exports_every_day_exactly_and_again_identically_with_the_sensor_deferred(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    today = midnight(0)
    first, last = today - timedelta(days=FIRST_DAY_AGO), today - timedelta(days=LAST_DAY_AGO)
    days = [first + timedelta(days=n) for n in range(DAYS)]
    exports = tmp_path / "exports"
    with _stand_in(today) as fake, deployment(tmp_path / "airflow", config=CONFIG) as airflow:
        for name in (EXPORT, SENSOR):
            shutil.copy(EXAMPLE_DAGS / f"{name}.py", airflow.dags_folder / f"{name}.py")
        airflow.migrate()
        # The newest day, which ends at ``last + 1 day``, settles SETTLE_AFTER_START from now.
        settled_at = datetime.now(timezone.utc) + SETTLE_AFTER_START
        settle = settled_at - (last + timedelta(days=1))
        airflow.env.update(
            {
                "AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT": fake.connection_json(),
                "ASANA_AUDIT_EXPORT_START": f"{today:%Y-%m-%d}",
                "ASANA_AUDIT_EXPORT_BASE": f"file://{exports}",
                "ASANA_AUDIT_SETTLE_MINUTES": repr(settle.total_seconds() / 60),
            }
        )
        # 1. The week, newest day first, 4 runs at a time; created before the components start (see the
        # note on SQLite).
        airflow.airflow("dags", "reserialize")
        backfill = _backfill(airflow, first, last, "--run-backwards")
        components = {
            name: airflow.start(name) for name in ("api-server", "dag-processor", "scheduler", "triggerer")
        }
        observer = Observer(airflow)
        observer.wait(airflow.api_ready, timeout=STARTUP, message="the API server should answer")
        timeline = {"up": time.monotonic() - started}

        # 2. The scheduler also runs the sensor example for the last hour: once its trigger polls in the
        # triggerer, a failed login of that hour arrives.
        appended = _append_when_the_sensor_polls(observer, fake)
        timeline["appended"] = time.monotonic() - started
        observer.wait(
            lambda: _completed(airflow, backfill) and _sensor_state(airflow) == "success",
            timeout=BACKFILL,
            message="the backfill should run every day and be marked completed, and the sensor's run succeed",
        )
        timeline["first pass"] = time.monotonic() - started
        first_pass = _check_exports(observer, fake, exports, days)
        newest = next(ti for ti in first_pass if ti.logical_date == last)
        assert (EXPORT, newest.run_id, EXPORT_TASK) in observer.deferred, (
            f"the newest day's export should have deferred until {settled_at} (its settle period); it ran "
            f"from {newest.start_date} to {newest.end_date}: raise SETTLE_AFTER_START if the deployment "
            "is slower to start"
        )
        assert newest.end_date is not None
        assert newest.end_date >= settled_at
        _check_sensor(observer, appended)
        # Both waits ran in the triggerer: the newest export's settle period and the sensor's polls.
        sensor_run = _sensor_run(airflow)
        assert sensor_run is not None
        sensor = next(
            ti
            for ti in observer.task_instances(SENSOR)
            if (ti.run_id, ti.task_id) == (sensor_run[0], SENSOR_TASK)
        )
        assert observer.deferred[(EXPORT, newest.run_id, EXPORT_TASK)].endswith(
            ("DateTimeTrigger", "TimeDeltaTrigger")
        )
        assert observer.deferred[(SENSOR, sensor.run_id, SENSOR_TASK)].endswith("AsanaAuditLogTrigger")
        for ti in (newest, sensor):
            observer.check_fired_in_the_triggerer(ti)
        before = {day: path.read_bytes() for day, path in _export_files(exports).items()}
        manifests = {day: _manifest(path) for day, path in _export_files(exports).items()}

        # 3. The same week again, every run reprocessed: the same bytes, written again. Created while only
        # the idle API server runs (see the note on SQLite), run by a new scheduler.
        for name in ("scheduler", "triggerer", "dag-processor"):
            components[name].stop()
        second = _backfill(airflow, first, last, "--reprocess-behavior", "completed")
        airflow.start("scheduler")
        observer.wait(
            lambda: _reprocessed(observer),
            timeout=BACKFILL,
            message="the second backfill should run every day again",
        )
        timeline["second pass"] = time.monotonic() - started
        assert {
            row[0] for row in airflow.query("SELECT backfill_id FROM dag_run WHERE run_type = 'backfill'")
        } == {second}
        _check_exports(observer, fake, exports, days)
        assert {day: path.read_bytes() for day, path in _export_files(exports).items()} == before
        for day, path in _export_files(exports).items():
            again = _manifest(path)
            assert again["sha256"] == manifests[day]["sha256"]
            assert again["exported_at"] > manifests[day]["exported_at"], f"{path} should be written again"
        events = sum(len(read_events(path)) for path in _export_files(exports).values())
    # 4. The archive check passes the archive the scheduler's backfills wrote, over exactly the week.
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_asana_audit.verify",
            f"file://{exports}",
            "--since",
            f"{first:%Y-%m-%d}",
            "--until",
            f"{last + timedelta(days=1):%Y-%m-%d}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"\nWHOLE: {DAYS} files and {events} events checked" in check.stdout, check.stdout
    print(
        f"e2e backfill: {DAYS} days, {events} events, exported twice; the newest day's settle period and "
        f"the sensor deferred to the triggerer; seconds after the start: "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timeline.items())
        + f"; total {time.monotonic() - started:.0f}"
    )


def _sensor_run(airflow: Deployment) -> tuple[str, datetime, datetime] | None:
    """The sensor example's first run: its id and data interval."""
    rows = airflow.query(
        "SELECT run_id, data_interval_start, data_interval_end FROM dag_run "
        "WHERE dag_id = ? ORDER BY id LIMIT 1",
        (SENSOR,),
    )
    if not rows:
        return None
    run_id, start, end = rows[0]
    start_at, end_at = _utc(start), _utc(end)
    assert start_at is not None
    assert end_at is not None
    return str(run_id), start_at, end_at


def _sensor_state(airflow: Deployment) -> str | None:
    rows = airflow.query("SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id LIMIT 1", (SENSOR,))
    return str(rows[0][0]) if rows else None


def _append_when_the_sensor_polls(observer: Observer, fake: FakeAsana) -> dict[str, Any]:
    """
    Wait until the sensor's trigger polls in the triggerer (after the task's own check), then append a
    failed login in the sensor's hour; return it.
    """
    airflow = observer.airflow

    def polled() -> bool:
        run = _sensor_run(airflow)
        checks = [r for r in fake.requests if r.params.get("event_type") == FAILED_LOGIN]
        return run is not None and (SENSOR, run[0], SENSOR_TASK) in observer.deferred and len(checks) >= 2

    observer.wait(polled, timeout=SENSOR_POLL, message="the sensor should defer and its trigger poll")
    run = _sensor_run(airflow)
    assert run is not None
    _, start_at, end_at = run
    (event,) = fake.append_events(1, created_at=start_at + (end_at - start_at) / 2, event_type=FAILED_LOGIN)
    return event


def _check_sensor(observer: Observer, appended: dict[str, Any]) -> None:
    """The sensor found the appended failed login, and the report task ran."""
    airflow = observer.airflow
    run = _sensor_run(airflow)
    assert run is not None
    states = {ti.task_id: ti.state for ti in observer.task_instances(SENSOR) if ti.run_id == run[0]}
    assert states == {SENSOR_TASK: "success", REPORT_TASK: "success"}
    ((value,),) = airflow.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
        (SENSOR, run[0], SENSOR_TASK),
    )
    found = json.loads(value)
    assert (found["count"], found["first_gid"], found["last_gid"]) == (1, appended["gid"], appended["gid"])


def _check_exports(
    observer: Observer, fake: FakeAsana, exports: Path, days: list[datetime]
) -> list[TaskInstance]:
    """Every backfilled day's run succeeded and its file holds exactly the stand-in's events of the day."""
    tis = [ti for ti in observer.task_instances(EXPORT) if ti.run_type == "backfill"]
    assert sorted(ti.logical_date for ti in tis if ti.logical_date) == days
    assert {ti.state for ti in tis} == {"success"}
    files = _export_files(exports)
    assert sorted(files) == [f"{day:%Y-%m-%d}" for day in days]
    for day in days:
        path = files[f"{day:%Y-%m-%d}"]
        expected = fake.ground_truth(day, day + timedelta(days=1))
        assert expected, f"the stand-in should hold events on {day:%Y-%m-%d}"
        assert read_events(path) == expected, f"{path} should hold exactly the events of {day:%Y-%m-%d}"
        assert path.parent.parent.name == f"workspace_gid={fake.workspace_gid}"
    return tis


def _manifest(path: Path) -> dict[str, Any]:
    manifest = json.loads(path.with_name(f"{path.name}.manifest.json").read_text())
    assert isinstance(manifest, dict)
    return manifest
