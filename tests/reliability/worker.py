"""
The export worker of the reliability tests: imports Airflow and the export operator once, then forks one
export per job, so that killing an export costs a fork, not a Python start and an Airflow import.

Run by :class:`tests.reliability.support.Worker` as a script (``python tests/reliability/worker.py``), in
its own session. It talks JSON lines:

* stdin, one job a line: ``{"connection": <AIRFLOW_CONN_... JSON>, "destination" or "base_path",
  "start_at", "end_at", "page_size", "concurrency", "pause": null | {"at": "write", "bytes": K} |
  {"at": "rename", "name": N}, "lease_renewals": null | R}``.
* stdout, only these (everything else printed goes to stderr): ``{"ready": pid}`` once; per job
  ``{"started": pid}``; from the export itself ``{"paused": pid, "at": ...}``, ``{"resumed": pid}``,
  then ``{"exported": pid, "summary": ...}`` or ``{"failed": pid, "error": ...}``; and
  ``{"ended": pid, "exit": code}`` (``-9`` after ``SIGKILL``) once it is reaped.

Each export is the leader of its own process group (its pid), so ``os.killpg(pid, SIGKILL)`` ends it
with every thread it started. A paused export holds still where it paused until ``SIGUSR1`` (resume) or
``SIGKILL``:

* ``write``: once ``K`` bytes of the file went to the staging file (flushed there first): mid-write.
* ``rename``: just before the staging object is moved onto the file named ``N`` (the export's file, or
  its manifest): the last moment before the commit.

``lease_renewals`` makes the export renew its staging file's lease that many times per grace period
instead of ten, so that a test can watch a renewal happen.

Only fork-safe work happens in this process: it starts no thread, and each export runs in a child.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
from datetime import timedelta
from typing import Any
from unittest import mock

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit import storage
from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.export_file import HashingWriter
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator

#: Retries fast, as the tests' FAST_RETRY does.
_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, max_elapsed=30)
_POLL = 0.005


#: The file descriptor of the messages: the original stdout. ``main()`` points fd 1 at stderr, since
#: Airflow's logging writes to stdout.
_channel = 1


def _say(message: dict[str, Any]) -> None:
    """One JSON line to the test in a single write, so lines of several processes never interleave."""
    os.write(_channel, (json.dumps(message) + "\n").encode())


def _hold(at: str) -> None:
    """Report the pause, then wait for SIGUSR1 (blocked since the start, so it cannot be missed)."""
    _say({"paused": os.getpid(), "at": at})
    signal.sigwait({signal.SIGUSR1})
    _say({"resumed": os.getpid()})


def _pause_while_writing(threshold: int) -> None:
    original = HashingWriter.write
    held = False

    def write(self: HashingWriter, data: bytes) -> int:
        nonlocal held
        written = original(self, data)
        if not held and self.size >= threshold:
            held = True
            self.flush()  # what was written so far is in the staging file, for the test to see
            _hold("write")
        return written

    mock.patch.object(HashingWriter, "write", write).start()


def _pause_before_rename(name: str) -> None:
    original = ObjectStoragePath.rename

    def rename(self: ObjectStoragePath, target: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(target, "name", None) == name:
            _hold("rename")
        return original(self, target, *args, **kwargs)

    mock.patch.object(ObjectStoragePath, "rename", rename).start()


def _export(job: dict[str, Any]) -> int:
    """Run one export as the job says; the exit status of the child."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    os.environ["AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT"] = job["connection"]
    pause = job.get("pause") or {}
    if pause.get("at") == "write":
        _pause_while_writing(int(pause["bytes"]))
    elif pause.get("at") == "rename":
        _pause_before_rename(str(pause["name"]))
    if job.get("lease_renewals"):
        mock.patch.object(storage, "_LEASE_RENEWALS_PER_GRACE_PERIOD", int(job["lease_renewals"])).start()
    operator = AsanaAuditLogExportOperator(
        task_id="export",
        start_at=job["start_at"],
        end_at=job["end_at"],
        destination=job.get("destination"),
        base_path=job.get("base_path"),
        page_size=int(job.get("page_size", 100)),
        concurrency=int(job.get("concurrency", 1)),
        settle_period=timedelta(0),
        request_retry=_RETRY,
    )
    context: Any = {}
    try:
        summary = operator.execute(context)
    except Exception as err:
        _say({"failed": os.getpid(), "error": f"{type(err).__name__}: {err}"})
        return 1
    _say({"exported": os.getpid(), "summary": summary})
    return 0


def _fork(job: dict[str, Any]) -> int:
    """Start one export in a child of its own process group; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            code = _export(job)
        finally:
            os._exit(code)  # never return into the worker's loop, never run its exit handlers
    # Also here, so the group exists before "started" is reported, whichever process runs first.
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)
    _say({"started": pid})
    return pid


def _reap(children: set[int]) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            _say({"ended": pid, "exit": os.waitstatus_to_exitcode(status)})


def main() -> None:
    """Read jobs until stdin closes; then end every export still running."""
    global _channel
    _channel = os.dup(1)
    os.dup2(2, 1)
    children: set[int] = set()
    pending = b""
    _say({"ready": os.getpid()})
    try:
        while True:
            readable, _, _ = select.select([0], [], [], _POLL)
            if readable:
                chunk = os.read(0, 65536)
                if not chunk:
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        children.add(_fork(json.loads(line)))
            _reap(children)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
