"""
What the benchmarks share: the stand-in in a process of its own, and one table printer.

The benchmarks print figures; none of them is a pass/fail test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["Standin", "print_table", "standin"]

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)


@dataclass(frozen=True)
class Standin:
    """A running stand-in: where it listens, and exactly which events it serves."""

    base_url: str
    token: str
    workspace_gid: str
    connection: dict[str, Any]
    #: The generated events fill ``[start, end)`` exactly, ``events`` of them, from ``seed``.
    start: datetime
    end: datetime
    events: int
    seed: int


@contextmanager
def standin(
    events: int,
    *,
    days: float = 1,
    latency: float = 0.0,
    requests_per_minute: int | None = None,
    burst: int | None = None,
    seed: int = 0,
) -> Iterator[Standin]:
    """
    Run ``python -m airflow_provider_asana_audit.testing`` in a process (group) of its own.

    The stand-in generates exactly ``events`` events over the ``days`` before the current hour; it
    is started again if the hour turns while it starts, so that the window is known exactly.
    """
    command = [
        sys.executable,
        "-m",
        "airflow_provider_asana_audit.testing",
        "--port",
        "0",
        "--seed",
        str(seed),
        "--days",
        str(days),
        "--events",
        str(events),
        "--latency",
        str(latency),
    ]
    if requests_per_minute is not None:
        command += ["--requests-per-minute", str(requests_per_minute)]
    if burst is not None:
        command += ["--burst", str(burst)]
    while True:
        hour = _this_hour()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
        )
        try:
            connection = _read_connection(process)
        except BaseException:
            _stop(process)
            raise
        if _this_hour() == hour:
            break
        _stop(process)  # the hour turned: which hour did the stand-in take? Start again.
    try:
        yield Standin(
            base_url=str(connection["host"]),
            token=str(connection["password"]),
            workspace_gid=str(connection["extra"]["workspace_gid"]),
            connection=connection,
            start=hour - timedelta(days=days),
            end=hour,
            events=events,
            seed=seed,
        )
    finally:
        _stop(process)


def _this_hour() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _read_connection(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("export AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT="):
            connection: dict[str, Any] = json.loads(line.split("=", 1)[1].strip().strip("'"))
            return connection
    raise RuntimeError(f"the stand-in exited with status {process.wait()} before printing its connection")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def print_table(columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> None:
    """
    Print ``rows`` as a table.

    :param columns: (heading, format) pairs; the format is applied to ``row[heading]``, e.g.
        ``"{:.1f}"``; a missing value prints as ``-``.
    """
    cells = [[heading for heading, _ in columns]]
    for row in rows:
        cells.append(
            [fmt.format(row[heading]) if row.get(heading) is not None else "-" for heading, fmt in columns]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for number, line in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            )
        )
        if number == 0:
            print("  ".join("-" * width for width in widths))
    sys.stdout.flush()
