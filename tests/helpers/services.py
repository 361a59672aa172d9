"""
Real backing services for end-to-end tests: Postgres, Redis and moto's S3 server.

Each one runs from the machine's own binaries (Debian's ``postgresql`` and ``redis-server``, which
``scripts/test`` installs when missing; moto from the ``test`` extra) on a free port on 127.0.0.1,
keeps its data in a temporary directory, and runs in a process group of its own
(:class:`~tests.helpers.deployment.Process`), so that ending the group ends every process of it. Each
context manager waits until its service answers (a connection, a ``PING``, an HTTP request), not for
a while, and ends it by process group when the block exits, also on failure, printing its log then::

    with postgres(tmp_path) as db, redis(tmp_path) as broker, moto_s3(tmp_path) as s3:
        db.url       # postgresql+psycopg2://airflow@127.0.0.1:PORT/airflow
        broker.url   # redis://127.0.0.1:PORT/0
        s3.url       # http://127.0.0.1:PORT

Postgres refuses to run as root: when the tests run as root (CI), ``initdb`` and ``postgres`` run as
the ``postgres`` system user (made by Debian's package), in a directory of their own under the system's
temporary directory (a pytest ``tmp_path`` is private to root), removed afterwards.
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.deployment import Process, free_port
from tests.helpers.waiting import wait_until

__all__ = ["POSTGRES_BIN", "Service", "aws_connection", "moto_s3", "postgres", "redis", "s3_client"]


def _postgres_bin() -> Path:
    """The newest server of Debian's ``postgresql`` packages (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if path.parent.name.isdigit()),
        key=lambda path: int(path.parent.name),
    )
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


#: Where Debian's ``postgresql`` package keeps the server's programs (not on ``PATH``).
POSTGRES_BIN = _postgres_bin()
#: Seconds a service gets to answer after it was started.
STARTUP = 60.0
#: Seconds a service gets to stop after SIGTERM before its process group is killed.
GRACE = 10.0
#: The user that runs Postgres when this process is root.
_POSTGRES_USER = "postgres"


@dataclass
class Service:
    """
    A running service.

    :param name: what it is, for messages.
    :param process: its process, leading its own process group.
    :param port: the TCP port it listens on, on 127.0.0.1.
    :param url: how a client reaches it (a SQLAlchemy URL, a Redis URL, an HTTP endpoint).
    """

    name: str
    process: Process
    port: int
    url: str

    def check_running(self) -> None:
        """Fail, with its log, if the service has exited."""
        if not self.process.running():
            raise AssertionError(
                f"{self.name} exited with status {self.process.popen.returncode}:\n{self.process.tail()}"
            )


def _start(
    argv: Sequence[str],
    *,
    name: str,
    log_path: Path,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> Process:
    """Start ``argv`` in a process group of its own, its output in ``log_path``."""
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log_path.parent,
            env=env,
            user=user,
            group=None if user is None else pwd.getpwnam(user).pw_gid,
            extra_groups=None if user is None else [],
        )
    return Process(name, popen, log_path)


@contextmanager
def _running(service: Service, answers: Callable[[], bool]) -> Iterator[Service]:
    """Wait until ``answers()`` is true (failing at once if the service dies); stop it afterwards."""
    try:

        def up() -> bool:
            service.check_running()
            return answers()

        wait_until(
            up,
            timeout=STARTUP,
            message=f"{service.name} should answer on port {service.port}",
            interval=0.05,
        )
        yield service
    except BaseException:
        print(
            f"===== {service.name} ({service.process.log_path}) =====\n{service.process.tail()}",
            file=sys.stderr,
        )
        raise
    finally:
        service.process.stop(GRACE)


def _connects(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def postgres(directory: Path, *, database: str = "airflow", user: str = "airflow") -> Iterator[Service]:
    """
    A Postgres server with an empty ``database`` owned by ``user`` (no password: trust on 127.0.0.1).

    ``initdb`` makes the cluster; ``postgres`` itself runs in the foreground (not ``pg_ctl``, which
    would detach it from its process group), with ``fsync`` off: the data is thrown away afterwards.

    :param directory: where its log goes; its data goes there too unless this process is root.
    """
    import psycopg2

    as_root = os.geteuid() == 0
    run_as = _POSTGRES_USER if as_root else None
    data_root = Path(tempfile.mkdtemp(prefix="asana-e2e-postgres-")) if as_root else directory / "postgres"
    data_root.mkdir(parents=True, exist_ok=True)
    if as_root:
        account = pwd.getpwnam(_POSTGRES_USER)
        os.chown(data_root, account.pw_uid, account.pw_gid)
    data = data_root / "data"
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    try:
        subprocess.run(
            [
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=data_root,
            user=run_as,
            group=None if run_as is None else pwd.getpwnam(run_as).pw_gid,
            extra_groups=None if run_as is None else [],
        )
        process = _start(
            [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(data_root),  # the Unix socket stays in the temporary directory
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                # Each Airflow component and each task process holds connections.
                "-c",
                "max_connections=300",
            ],
            name="postgres",
            log_path=directory / "postgres.log",
            user=run_as,
            env=env,
        )
        service = Service(
            "postgres", process, port, f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{database}"
        )

        def answers() -> bool:
            try:
                connection = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
            except psycopg2.OperationalError:
                return False
            try:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                    if cursor.fetchone() is None:
                        cursor.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
            finally:
                connection.close()
            return True

        with _running(service, answers) as running:
            yield running
    finally:
        if as_root:
            shutil.rmtree(data_root, ignore_errors=True)


@contextmanager
def redis(directory: Path) -> Iterator[Service]:
    """A Redis server that keeps nothing on disk (no RDB snapshots, no append-only file)."""
    port = free_port()
    folder = directory / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    process = _start(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        name="redis",
        log_path=directory / "redis.log",
    )
    service = Service("redis", process, port, f"redis://127.0.0.1:{port}/0")

    def answers() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return False
            sock.sendall(b"PING\r\n")
            with suppress(OSError):
                return sock.recv(64).startswith(b"+PONG")
            return False

    with _running(service, answers) as running:
        yield running


@contextmanager
def moto_s3(directory: Path) -> Iterator[Service]:
    """
    moto's server mode (``python -m moto.server``), an S3 API (and every other AWS API moto mocks) that
    accepts any credentials; its state lives in the process, so nothing is written to disk.
    """
    port = free_port()
    process = _start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        name="moto",
        log_path=directory / "moto.log",
    )
    service = Service("moto", process, port, f"http://127.0.0.1:{port}")

    def answers() -> bool:
        if not _connects(port):
            return False
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/moto-api/")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    with _running(service, answers) as running:
        yield running


def aws_connection(moto: Service) -> dict[str, Any]:
    """An Airflow ``aws`` connection to moto (as ``aws_default``, for ``s3://aws_default@...`` paths)."""
    return {
        "conn_type": "aws",
        "login": "moto",
        "password": "moto",
        "extra": {"endpoint_url": moto.url, "region_name": "us-east-1"},
    }


def s3_client(moto: Service) -> Any:
    """A boto3 S3 client of moto."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
        region_name="us-east-1",
    )
