"""
Shared code of the reliability tests: the forking export worker, fault mixes, hooks on the stand-in's
requests, what a destination must look like, and the figures the tests measure.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import platform
import random
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.testing import FakeAsana, Fault, ParsedRequest
from tests.helpers.clients import FAST_RETRY
from tests.helpers.waiting import DEADLINE, wait_until

__all__ = [
    "FIGURES",
    "ROOT",
    "SEED",
    "Export",
    "Figure",
    "Worker",
    "assert_consistent",
    "export",
    "figures_report",
    "hold_request",
    "inject_fault_mix",
    "leftovers",
    "manifest_of",
    "mode",
    "on_request",
    "record",
    "running_worker",
    "stop_process_group",
]

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")
#: The seed of every random choice (kill points, fault draws); ``ASANA_RELIABILITY_SEED`` overrides it.
SEED = int(os.environ.get("ASANA_RELIABILITY_SEED", "20261126"))


def export(
    destination: str | None,
    *,
    start_at: datetime,
    end_at: datetime,
    request_retry: RetryPolicy = FAST_RETRY,
    **arguments: Any,
) -> dict[str, Any]:
    """Run the export operator in this process, as a task would; return its XCom summary."""
    operator = AsanaAuditLogExportOperator(
        task_id="export",
        destination=destination,
        start_at=start_at,
        end_at=end_at,
        settle_period=timedelta(0),
        request_retry=request_retry,
        **arguments,
    )
    context: Any = {}
    summary: dict[str, Any] = operator.execute(context)
    return summary


# ---------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    """One measured case: its table, its name, and its figures in column order."""

    table: str
    case: str
    values: dict[str, Any] = field(default_factory=dict)


#: What the tests of this session measured, in order; printed by ``conftest.py`` when asked.
FIGURES: list[Figure] = []


def record(table: str, case: str, **values: Any) -> None:
    """Keep one measured case for the figures printed at the end of the session."""
    FIGURES.append(Figure(table, case, dict(values)))


def figures_report() -> list[str]:
    """The figures as Markdown tables, one per table name, after a line saying where they were taken."""
    import airflow

    lines = [
        f"Airflow {airflow.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"seed {SEED}",
    ]
    for table, figures in itertools.groupby(sorted(FIGURES, key=lambda f: f.table), key=lambda f: f.table):
        rows = list(figures)
        columns = list(dict.fromkeys(key for row in rows for key in row.values))
        numeric = [all(isinstance(row.values.get(c, 0), (int, float)) for row in rows) for c in columns]
        lines += [
            "",
            f"### {table}",
            "",
            "| case | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        ]
        lines.append("|---|" + "".join("---:|" if number else "---|" for number in numeric))
        for row in rows:
            cells = [_cell(row.values.get(column, "")) for column in columns]
            lines.append(f"| {row.case} | " + " | ".join(cells) + " |")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# ---------------------------------------------------------------------- the stand-in


def inject_fault_mix(fake: FakeAsana, *, seed: int, share: float, slow_delay: float) -> list[Fault]:
    """
    Make each request fail with each fault kind with probability ``share``, drawn from a seeded RNG.

    Every kind the stand-in has (429 with ``Retry-After: 0``, 500, 502, 503, 504, dropped connections,
    truncated and non-JSON bodies, slow answers, rejected offsets) is a pending fault that never runs
    out, whose ``when`` draws from one ``random.Random(seed)``. The stand-in offers a request to the
    pending faults in order until one takes it, under its lock, so the draws are sequential. Call
    ``fake.clear_faults()`` to stop. Return the kinds.
    """
    rng = random.Random(seed)
    kinds = [
        Fault.RATE_LIMIT,
        Fault.SERVER_ERROR_500,
        Fault.BAD_GATEWAY_502,
        Fault.UNAVAILABLE_503,
        Fault.GATEWAY_TIMEOUT_504,
        Fault.DROP,
        Fault.TRUNCATE,
        Fault.NOT_JSON,
        Fault.SLOW,
        Fault.EXPIRE_OFFSET,
    ]
    for kind in kinds:
        fake.inject(
            kind,
            count=10**9,
            retry_after=0,
            delay=slow_delay,
            when=lambda _request: rng.random() < share,
        )
    return kinds


def on_request(fake: FakeAsana, number: int, action: Callable[[], object]) -> None:
    """
    Run ``action`` in the stand-in as the ``number``-th request from now arrives, before it is answered.

    It rides on a pending fault's ``when`` (which never asks for the fault), so it sees every request
    while no other fault is pending. Deterministic: what ``action`` does happens while that request is
    in flight, whatever the timing.
    """
    arrivals = itertools.count(1)

    def when(_request: ParsedRequest) -> bool:
        if next(arrivals) == number:
            action()
        return False

    fake.inject(Fault.SLOW, count=1, when=when)


def hold_request(fake: FakeAsana, number: int) -> None:
    """Hold the ``number``-th request from now unanswered (a slow answer) until the stand-in stops."""
    arrivals = itertools.count(1)
    fake.inject(Fault.SLOW, count=1, delay=10 * DEADLINE, when=lambda _request: next(arrivals) == number)


# ---------------------------------------------------------------------- files


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[Path]:
    """The staging files in ``directory`` and below, by name."""
    return sorted(directory.rglob(".*.partial"))


def manifest_of(path: Path) -> Path:
    """The manifest beside the export file ``path``."""
    return path.with_name(path.name + ".manifest.json")


def assert_consistent(path: Path, *, expected: bytes | None) -> None:
    """
    ``path`` holds exactly ``expected`` (``None``: it does not exist), and a manifest beside it, if
    any, describes those bytes: their sha256, size and number of events.
    """
    data = path.read_bytes() if path.exists() else None
    assert data == expected, (
        f"{path.name} holds {'nothing' if data is None else f'{len(data)} bytes'}, not "
        f"{'nothing' if expected is None else f'the expected {len(expected)} bytes'}"
    )
    manifest = manifest_of(path)
    if not manifest.exists():
        return
    assert data is not None, "a manifest without its file"
    described = json.loads(manifest.read_text())
    assert described["sha256"] == hashlib.sha256(data).hexdigest()
    assert described["bytes"] == len(data)
    text = gzip.decompress(data) if path.name.endswith(".gz") else data
    assert described["events"] == text.count(b"\n")


# ---------------------------------------------------------------------- processes


def stop_process_group(process: subprocess.Popen[Any]) -> None:
    """End a process started with ``start_new_session=True`` and everything in its group; reap it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(DEADLINE)


class Worker:
    """
    The forking export worker (``tests/reliability/worker.py``) in a session of its own.

    :meth:`start` forks an export from it in a few milliseconds; :meth:`close` ends the worker and
    every export it started, each by process group.

    :param log_path: where the worker's and the exports' stderr goes (quoted when a wait fails).
    """

    def __init__(self, *, log_path: Path) -> None:
        self._log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self._messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            start_new_session=True,  # its own process group, ended as a whole by close()
        )
        self._reader = threading.Thread(target=self._read, name="worker-reader", daemon=True)
        self._reader.start()
        try:
            self.wait_for(lambda m: "ready" in m, what="the worker to import Airflow and report ready")
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self._messages.append(json.loads(line))  # only messages: the worker sends the rest to stderr

    def messages(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The messages so far that satisfy ``predicate``."""
        with self._lock:
            return [message for message in self._messages if predicate(message)]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, what: str, timeout: float = DEADLINE
    ) -> dict[str, Any]:
        """The first message that satisfies ``predicate``, waiting for it; fails quoting the log."""
        try:
            wait_until(lambda: self.messages(predicate), timeout=timeout, message=what)
        except AssertionError as err:
            self._log.flush()
            tail = self._log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{err}\n--- worker log (end) ---\n{tail}") from None
        return self.messages(predicate)[0]

    def start(self, **job: Any) -> Export:
        """Fork one export (see ``worker.py`` for the job's keys); return its handle once it runs."""
        assert self.process.stdin is not None
        known = {m["started"] for m in self.messages(lambda m: "started" in m)}
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        self.process.stdin.flush()
        started = self.wait_for(
            lambda m: "started" in m and m["started"] not in known, what="the worker to fork the export"
        )
        pid = int(started["started"])
        self._groups.add(pid)
        return Export(self, pid)

    def close(self) -> None:
        """End every export this worker started and the worker itself, each by process group."""
        for pid in self._groups:
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        try:
            stop_process_group(self.process)
            self._reader.join(DEADLINE)  # it stops at the end of the dead worker's output
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self._log.close()


@dataclass(frozen=True)
class Export:
    """One export forked by the :class:`Worker`; the leader of its own process group."""

    worker: Worker
    pid: int

    def wait_paused(self) -> dict[str, Any]:
        """Wait until the export holds at its pause point."""
        return self.worker.wait_for(
            lambda m: m.get("paused") == self.pid, what=f"export {self.pid} to reach its pause point"
        )

    def resume(self) -> None:
        """Let a paused export go on."""
        os.killpg(self.pid, signal.SIGUSR1)

    def kill(self) -> None:
        """``SIGKILL`` the export's process group, and wait until the worker has reaped it."""
        assert not self.ended(), f"export {self.pid} ended before it could be killed: {self.outcome()}"
        os.killpg(self.pid, signal.SIGKILL)
        assert self.wait_ended() == -signal.SIGKILL

    def ended(self) -> bool:
        """Whether the worker has reaped the export."""
        return bool(self.worker.messages(lambda m: m.get("ended") == self.pid))

    def wait_ended(self) -> int:
        """Wait until the export has ended; its exit status (negative: the signal that ended it)."""
        ended = self.worker.wait_for(lambda m: m.get("ended") == self.pid, what=f"export {self.pid} to end")
        return int(ended["exit"])

    def outcome(self) -> dict[str, Any] | None:
        """The export's ``exported`` or ``failed`` message, if it sent one."""
        found = self.worker.messages(lambda m: m.get("exported") == self.pid or m.get("failed") == self.pid)
        return found[0] if found else None


@contextmanager
def running_worker(log_path: Path) -> Iterator[Worker]:
    """A :class:`Worker` for the duration of the block, ended afterwards whatever happened."""
    worker = Worker(log_path=log_path)
    try:
        yield worker
    finally:
        worker.close()
