"""
Real Airflow components in a temporary ``AIRFLOW_HOME``, for end-to-end tests.

A :class:`Deployment` is one Airflow installation on this machine: a private home with a SQLite metadata
database, an environment that shares nothing with the test process's own Airflow settings, and any
number of processes started from it (``airflow dag-processor``, ``scheduler``, ``triggerer``,
``api-server``, ``standalone``, or any other command such as the stand-in's). Every process runs in its
own session (``start_new_session=True``), so it leads a process group, and is ended by signalling that
group: Airflow's components start children (a triggerer's runner, the executor's workers, the API
server's workers) that outlive a signal to their parent alone. Each process writes to its own log file;
:meth:`Deployment.report` gives the tails, and :func:`deployment` prints them when the block fails and
ends every process it started in any case::

    with deployment(tmp_path, config={"core": {"dags_are_paused_at_creation": "False"}}) as airflow:
        airflow.migrate()
        airflow.start("dag-processor")
        triggerer = airflow.start("triggerer")
        airflow.wait_until(lambda: airflow.query("SELECT count(*) FROM trigger")[0][0] > 0, ...)
        triggerer.kill()  # SIGKILL to the whole process group

Waiting is always on a polled condition with a deadline (:meth:`Deployment.wait_until`), which also
fails at once, with the logs, when a process that should be running has died.

The API server's port is free and fixed at construction (``AIRFLOW__API__PORT``), and the Execution
API URL that the scheduler's workers call (``AIRFLOW__CORE__EXECUTION_API_SERVER_URL``) points at it;
without that URL every task of a real deployment fails with "connection refused".

A :class:`CeleryDeployment` (:func:`celery_deployment`) is the distributed kind: the CeleryExecutor, a
Postgres metadata database and a Redis broker (started by ``tests/helpers/services.py``), and
``airflow celery worker`` processes beside the other components (:meth:`CeleryDeployment.start_fleet`).
Airflow 3's task supervisor puts each task runner in a process group of its own, so a worker's task
runners survive a signal to the worker's group: :func:`kill_session` kills every process of the
worker's session instead, as a machine that fails would lose them.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.helpers.waiting import eventually, wait_until

__all__ = [
    "DEFAULT_GRACE",
    "CeleryDeployment",
    "Deployment",
    "Process",
    "airflow_env",
    "celery_deployment",
    "deployment",
    "free_port",
    "kill_session",
    "session_members",
]

#: Seconds a process gets to stop after SIGTERM before its process group is killed.
DEFAULT_GRACE = 15.0
#: How often :meth:`Deployment.wait_until` checks its condition.
_POLL = 0.25
#: Lines of each log that :meth:`Deployment.report` shows.
_TAIL = 60


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def airflow_env(
    home: Path,
    *,
    api_port: int,
    config: Mapping[str, Mapping[str, str]] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """
    The environment of a deployment's processes.

    It starts from this process's environment without any ``AIRFLOW*`` variable (the test session's
    own home, DAGs folder and connections stay out), then sets the home, a SQLite database in it, the
    DAGs folder, one Fernet key and one JWT secret for every process (so that trigger arguments
    encrypted by one are read by another, and tokens issued by one are accepted by another), the API
    server's port and the Execution API URL, free ports for the log servers, and logins off for the
    UI and the REST API.

    :param config: Airflow settings by section and key, set as ``AIRFLOW__SECTION__KEY``.
    :param extra: further variables, set last (connections as ``AIRFLOW_CONN_...``, for example).
    """
    from cryptography.fernet import Fernet

    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # The log servers of workers and triggerers and the scheduler's health check listen on
            # fixed ports by default: free ones, so that deployments side by side do not collide.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for section, values in (config or {}).items():
        for key, value in values.items():
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
    env.update(extra or {})
    return env


class Process:
    """
    One process of a deployment, leading its own process group, with its output in a log file.

    :param name: a name for messages, unique in its deployment (``triggerer-2``).
    :param popen: the running process.
    :param log_path: where its standard output and error go.
    """

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        #: Whether it is meant to be running: false once stopped or killed on purpose.
        self.expected = True

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        return self.popen.pid

    def running(self) -> bool:
        """Whether the process (the group's leader) is still running."""
        return self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to every process of the group; a group that is gone is fine."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as the OOM killer or a node failure would."""
        self.expected = False
        self.signal_group(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL what is left of it."""
        self.expected = False
        if self.running():
            self.signal_group(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Also when the leader has exited: its children may still run in the group.
        self.signal_group(signal.SIGKILL)
        self.popen.wait()

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = _TAIL) -> str:
        """The last ``lines`` lines of its log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.popen.returncode}"
        return f"<Process {self.name} pid={self.pid} {state}>"


class Deployment:
    """
    A temporary Airflow installation and the processes started from it.

    :param home: the ``AIRFLOW_HOME``, made if missing; the DAGs folder is ``home / "dags"`` and the
        processes' logs go to ``home / "process-logs"``.
    :param config: Airflow settings by section and key (see :func:`airflow_env`).
    :param extra_env: further environment variables for every process started after this.
    :param python: the interpreter that runs ``-m airflow``; this one by default (the virtualenv's).
    """

    def __init__(
        self,
        home: Path,
        *,
        config: Mapping[str, Mapping[str, str]] | None = None,
        extra_env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.home = home
        self.dags_folder = home / "dags"
        self.logs_folder = home / "process-logs"
        for folder in (self.dags_folder, self.logs_folder):
            folder.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.api_port = free_port()
        #: The environment of every process started from now on; add to it before starting them.
        self.env = airflow_env(home, api_port=self.api_port, config=config, extra=extra_env)
        self.processes: list[Process] = []
        self._names: set[str] = set()
        self._token: str | None = None

    @property
    def api_url(self) -> str:
        """The API server's base URL (once ``api-server`` or ``standalone`` runs)."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def database(self) -> Path:
        """The SQLite metadata database."""
        return self.home / "airflow.db"

    def _log_path(self, name: str) -> Path:
        return self.logs_folder / f"{name}.log"

    def _unique_name(self, base: str) -> str:
        count = 1
        while f"{base}-{count}" in self._names:
            count += 1
        self._names.add(f"{base}-{count}")
        return f"{base}-{count}"

    def airflow(self, *args: str, timeout: float = 300.0, check: bool = True) -> str:
        """
        Run an ``airflow`` command to completion; return its output, or fail with it.

        :param check: fail when the command exits with a non-zero status; with ``False`` the output is
            returned in any case (for commands whose failure is what is tested).
        """
        name = self._unique_name(args[0] if args else "airflow")
        log_path = self._log_path(name)
        with log_path.open("wb") as log:
            result = subprocess.run(
                [self.python, "-m", "airflow", *args],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        output = log_path.read_text(encoding="utf-8", errors="replace")
        if check and result.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {result.returncode}:\n{output[-5000:]}")
        return output

    def migrate(self) -> None:
        """Create the metadata database (``airflow db migrate``)."""
        self.airflow("db", "migrate")

    def start(self, command: str, *args: str, name: str | None = None) -> Process:
        """Start ``airflow <command> <args>`` (``triggerer``, ``scheduler``, ``standalone``, ...)."""
        return self.start_process([self.python, "-m", "airflow", command, *args], name=name or command)

    def start_process(self, argv: Sequence[str], *, name: str) -> Process:
        """Start any command with the deployment's environment, in a process group of its own."""
        unique = self._unique_name(name)
        log_path = self._log_path(unique)
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(unique, popen, log_path)
        self.processes.append(process)
        return process

    def stop_all(self, grace: float = DEFAULT_GRACE) -> None:
        """End every process started here, by process group, the last started first."""
        for process in reversed(self.processes):
            process.stop(grace)

    def check_running(self) -> None:
        """Fail, with the logs, if a process that should be running has exited."""
        for process in self.processes:
            if process.expected and not process.running():
                raise AssertionError(
                    f"{process.name} exited with status {process.popen.returncode}:\n{process.tail()}"
                )

    def wait_until(
        self, predicate: Callable[[], object], *, timeout: float, message: str, interval: float = _POLL
    ) -> None:
        """
        Wait until ``predicate()`` is true; fail with ``message`` after ``timeout`` seconds.

        Fails at once if a process that should be running exits meanwhile: waiting on a dead
        deployment would only run out the clock.
        """
        wait_until(self._alive_and(predicate), timeout=timeout, message=message, interval=interval)

    def eventually(self, predicate: Callable[[], object], *, timeout: float, interval: float = _POLL) -> bool:
        """
        :meth:`wait_until`, but return whether ``predicate()`` came true instead of failing.

        For a test that checks the outcome itself afterwards, with a more precise message.
        """
        return eventually(self._alive_and(predicate), timeout=timeout, interval=interval)

    def _alive_and(self, predicate: Callable[[], object]) -> Callable[[], object]:
        """``predicate``, after checking that every process that should be running still is."""

        def check() -> object:
            self.check_running()
            return predicate()

        return check

    def wait_for_log(self, process: Process, text: str, *, timeout: float) -> str:
        """Wait until ``process`` has written a line containing ``text``; return that line."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in process.log().splitlines() if text in line][:1]
            return bool(found)

        self.wait_until(seen, timeout=timeout, message=f"{process.name} should log {text!r}")
        return found[0]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read the metadata database (read-only; retried while a writer holds the lock)."""
        connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
        try:
            return list(connection.execute(sql, params).fetchall())
        finally:
            connection.close()

    def api_ready(self) -> bool:
        """Whether the API server answers its health check (``api-server`` or ``standalone`` runs)."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as response:
                return int(response.status) == 200
        except (OSError, http.client.HTTPException):
            return False

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """
        Call the API server (``/api/v2/...``, ``/ui/...``) as an admin; return the status and the JSON.

        The bearer token comes from ``GET /auth/token`` (logins are off, see :func:`airflow_env`) and
        is kept for later calls. An error status is returned, not raised.
        """
        if self._token is None:
            with urllib.request.urlopen(f"{self.api_url}/auth/token", timeout=30) as response:
                self._token = str(json.load(response)["access_token"])
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.api_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        return status, json.loads(raw) if raw else None

    def report(self) -> str:
        """The state and the last lines of the log of every process, for a failure message."""
        parts = [f"AIRFLOW_HOME={self.home}"]
        for process in self.processes:
            parts.append(f"===== {process!r} ({process.log_path}) =====\n{process.tail()}")
        return "\n".join(parts)


@contextmanager
def deployment(
    home: Path,
    *,
    config: Mapping[str, Mapping[str, str]] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """
    A :class:`Deployment` for the block: on failure its logs are printed (pytest shows them with the
    failure); in any case every process it started is ended by process group.
    """
    running = Deployment(home, config=config, extra_env=extra_env)
    try:
        yield running
    except BaseException:
        print(running.report(), file=sys.stderr)
        raise
    finally:
        running.stop_all()


def session_members(session_id: int) -> list[int]:
    """
    The processes of a session (Linux: read from ``/proc``).

    A process started with ``start_new_session=True`` leads a session as well as a process group, and
    every process it starts stays in that session, also one that makes a process group of its own:
    Airflow 3's task supervisor puts each task runner in a new process group, so a signal to the
    worker's group alone leaves the task runners running.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):
            # Fields after the command name, which is in parentheses and may hold spaces:
            # state, ppid, pgrp, session, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            # A zombie (Z) or dead (X) process has ended; only its entry is left, until it is reaped.
            if int(fields[3]) == session_id and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def kill_session(process: Process) -> list[int]:
    """
    SIGKILL every process of ``process``'s session at once, as a machine that fails would lose them:
    its process group and every process group started under it (task runners). Return their ids.
    """
    process.expected = False
    killed: set[int] = set()

    def gone() -> bool:
        # Again until none is left: a process may fork between the listing and the signal.
        members = session_members(process.pid)
        for pid in members:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.update(members)
        return not members

    wait_until(gone, timeout=30.0, message=f"every process of {process.name}'s session should be killed")
    process.popen.wait()
    return sorted(killed)


class CeleryDeployment(Deployment):
    """
    A distributed Airflow on this machine: the CeleryExecutor, a Postgres metadata database and a
    Redis broker (started by the test, see ``tests/helpers/services.py``), with any number of
    ``airflow celery worker`` processes beside the scheduler, DAG processor, triggerer and API server.

    Each worker gets its own Celery node name and PID file (two workers of one ``AIRFLOW_HOME`` would
    otherwise refuse to start, or clash), and serves no logs (``--skip-serve-logs``: the log server's
    port would be the same for both; the task logs are files in the shared home anyway).

    :param database_url: the SQLAlchemy URL of the metadata database (``postgresql+psycopg2://...``).
    :param broker_url: the Celery broker (``redis://127.0.0.1:PORT/0``).
    :param worker_concurrency: task slots of each worker.
    """

    def __init__(
        self,
        home: Path,
        *,
        database_url: str,
        broker_url: str,
        worker_concurrency: int = 4,
        config: Mapping[str, Mapping[str, str]] | None = None,
        extra_env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        merged: dict[str, dict[str, str]] = {
            "core": {"executor": "CeleryExecutor"},
            "database": {"sql_alchemy_conn": database_url},
            # The result backend defaults to the metadata database ("db+" + its URL).
            "celery": {"broker_url": broker_url, "worker_concurrency": str(worker_concurrency)},
        }
        for section, values in (config or {}).items():
            merged.setdefault(section, {}).update(values)
        super().__init__(home, config=merged, extra_env=extra_env, python=python)
        self.database_url = database_url
        self.worker_concurrency = worker_concurrency

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """
        Read the metadata database; ``?`` placeholders, as for SQLite, so that queries are shared.

        Timestamps come back as aware datetimes (Postgres ``timestamptz``), not as strings.
        """
        import psycopg2

        dsn = self.database_url.replace("postgresql+psycopg2://", "postgresql://", 1)
        connection = psycopg2.connect(dsn)
        try:
            connection.set_session(readonly=True, autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), tuple(params))
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def start_worker(self, name: str) -> Process:
        """Start ``airflow celery worker`` as Celery node ``<name>@<host>``."""
        return self.start(
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--pid",
            str(self.home / f"{name}.pid"),
            "--concurrency",
            str(self.worker_concurrency),
            "--skip-serve-logs",
            name=name,
        )

    def start_fleet(self, *, workers: int = 2) -> dict[str, Process]:
        """Start the API server, scheduler, DAG processor, triggerer and ``workers`` Celery workers."""
        started = {
            name: self.start(name) for name in ("api-server", "scheduler", "dag-processor", "triggerer")
        }
        for number in range(1, workers + 1):
            started[f"worker{number}"] = self.start_worker(f"worker{number}")
        return started

    def workers_ready(self, names: Sequence[str]) -> bool:
        """Whether every named worker has said it is ready to take tasks (Celery's ``ready.``)."""
        processes = {process.name.rsplit("-", 1)[0]: process for process in self.processes}
        return all(name in processes and " ready." in processes[name].log() for name in names)

    def stop_all(self, grace: float = DEFAULT_GRACE) -> None:
        """
        End every process started here, by process group, then whatever is left of their sessions:
        task runners of a worker lead process groups of their own.
        """
        super().stop_all(grace)
        for process in self.processes:
            for pid in session_members(process.pid):
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


@contextmanager
def celery_deployment(
    home: Path,
    *,
    database_url: str,
    broker_url: str,
    worker_concurrency: int = 4,
    config: Mapping[str, Mapping[str, str]] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[CeleryDeployment]:
    """:func:`deployment`, for a :class:`CeleryDeployment`."""
    running = CeleryDeployment(
        home,
        database_url=database_url,
        broker_url=broker_url,
        worker_concurrency=worker_concurrency,
        config=config,
        extra_env=extra_env,
    )
    try:
        yield running
    except BaseException:
        print(running.report(), file=sys.stderr)
        raise
    finally:
        running.stop_all()
