"""
Tamper-evident evidence (docs/evidence.md): what signing adds to an export, and what the public keys add
to the archive check.

**The export.** AsanaAuditLogExportOperator runs as in bench_export.py (its ``execute`` with the
stand-in's window as the data interval, the stand-in in a process of its own), exporting ``--events``
events of one interval into a new default layout each time, so that no export is a re-export: without
``signing_conn_id`` and with it (an Ed25519 key from ``SigningKey.generate()`` in a ``generic``
connection given as ``AIRFLOW_CONN_...``), after one warm-up export of each, the two alternated
``--repeat`` times; the figures are medians. By default the export's budget has no cap
(``--requests-per-minute``), so that it runs as fast as this machine allows and signing weighs the most:
at Asana's 1,500 requests a minute, 200,000 events take at least 80 s. ``overhead %`` compares the
medians of the whole exports; ``key s`` (the operator's ``load_signing_key`` call) and ``sign s`` (its
``write_record`` call: sign the record, store its two copies) are timed alone, and ``signing %`` is
their sum against the unsigned export. ``seal s`` is the sealing task (AsanaAuditLogSealOperator) over
the archive the signed export left.

**The check.** Archives of ``--days`` daily files of ``--per-day`` events, written as bench_verify.py
writes them (the export's exact format, correct manifests, no Asana), each file with its signed record
(``write_record``) and a seal of the series after every ``--seal-every`` days (``make_seal``; the last one
by ``seal_archive``, as the sealing task makes it, timed as ``seal s``). The check
(``python -m airflow_provider_asana_audit.verify``) runs in a fresh process, without keys and with
``--public-key`` and ``--published-seal-hash`` (the newest seal's), the two alternated ``--repeat``
times; its seconds are the check's own (imports excluded, from the JSON report), its peak RSS that
process's own (``wait4``); medians again. Both must find the archive whole, else the benchmark stops
and prints the report. ``evidence MiB`` is the records and seals on disk.

The export and the signing run in fresh processes of their own: the process that starts the checks must
stay small, because a child's peak RSS on Linux includes that of the process it was started from.

    python bench/bench_evidence.py                          # about 5 minutes
    python bench/bench_evidence.py --events 20000 --days 30 --repeat 3
    python bench/bench_evidence.py --skip-export --days 30 90 365 --seal-every 7
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench_verify import write_archive
from common import Standin, print_table, standin

SIGNING_CONN_ID = "bench_evidence_signing"
EXPORT_COLUMNS = [
    ("signing", "{}"),
    ("events", "{:,.0f}"),
    ("seconds", "{:.2f}"),
    ("min s", "{:.2f}"),
    ("max s", "{:.2f}"),
    ("events/s", "{:,.0f}"),
    ("overhead %", "{:+.1f}"),
    ("signing %", "{:.2f}"),
    ("key s", "{:.4f}"),
    ("sign s", "{:.4f}"),
    ("seal s", "{:.3f}"),
    ("check", "{}"),
]
CHECK_COLUMNS = [
    ("days", "{:,.0f}"),
    ("events", "{:,.0f}"),
    ("seals", "{:,.0f}"),
    ("evidence MiB", "{:,.1f}"),
    ("seal s", "{:.2f}"),
    ("check s", "{:.2f}"),
    ("check s keys", "{:.2f}"),
    ("ratio", "{:.2f}x"),
    ("peak RSS MiB", "{:,.1f}"),
    ("peak RSS MiB keys", "{:,.1f}"),
]

log = logging.getLogger("bench_evidence")


def in_fresh_process(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """
    ``function(*args, **kwargs)`` in a fresh interpreter, its result returned.

    This process must stay small: on Linux, a child's ``ru_maxrss`` counts the resident set of the
    process it was started from (the peak of the memory it had before its ``exec`` is kept), so a check
    started from a process that imported Airflow and signed an archive would report that process's peak.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()


# ---------------------------------------------------------------------- the export


def timing(namespace: Any, name: str, durations: list[float]) -> None:
    """Replace ``namespace.name`` by a wrapper that appends the seconds of each call to ``durations``."""
    original: Callable[..., Any] = getattr(namespace, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - started)

    setattr(namespace, name, timed)


def export(
    server: Standin, base: str, *, concurrency: int, requests_per_minute: float, signed: bool
) -> tuple[dict[str, Any], float]:
    """One export of the stand-in's window into the default layout under ``base``; (its summary, seconds)."""
    from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator

    operator = AsanaAuditLogExportOperator(
        task_id="bench",
        base_path=base,
        settle_period=timedelta(0),
        concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        signing_conn_id=SIGNING_CONN_ID if signed else None,
    )
    context = {"data_interval_start": server.start, "data_interval_end": server.end}
    started = time.perf_counter()
    summary = operator.execute(context)  # type: ignore[arg-type]
    return summary, time.perf_counter() - started


def seal(base: str) -> float:
    """Seconds of the sealing task over the archive under ``base``."""
    from airflow_provider_asana_audit.operators.seal import AsanaAuditLogSealOperator

    operator = AsanaAuditLogSealOperator(
        task_id="bench_seal", signing_conn_id=SIGNING_CONN_ID, base_path=base
    )
    started = time.perf_counter()
    written = operator.execute({})  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if len(written["seals"]) != 1:
        raise SystemExit(f"the sealing task should have written one seal: {written}")
    return seconds


def measure_export(
    server: Standin, *, concurrency: int, requests_per_minute: float, repeat: int, root: Path
) -> list[dict[str, Any]]:
    """The unsigned and the signed export, alternated ``repeat`` times after a warm-up of each."""
    logging.disable(logging.INFO)  # the operators' and the signing's progress lines (Airflow 2)
    import airflow_provider_asana_audit.operators.audit_log as audit_log
    from airflow_provider_asana_audit.evidence import SigningKey

    os.environ["AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT"] = json.dumps(server.connection)
    pem = SigningKey.generate().export_private_pem()
    os.environ[f"AIRFLOW_CONN_{SIGNING_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "generic", "password": pem}
    )
    key_seconds: list[float] = []
    sign_seconds: list[float] = []
    timing(audit_log, "load_signing_key", key_seconds)
    timing(audit_log, "write_record", sign_seconds)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    seal_seconds: list[float] = []
    wrong: set[str] = set()
    # Warm-up (imports, connections, the key's first use), then no-yes, yes-no, no-yes...
    order = [False, True] + [
        signed for run in range(repeat) for signed in ((False, True), (True, False))[run % 2]
    ]
    for number, signed in enumerate(order):
        base = tempfile.mkdtemp(prefix="export-", dir=root)
        try:
            summary, elapsed = export(
                server, base, concurrency=concurrency, requests_per_minute=requests_per_minute, signed=signed
            )
            sealed = seal(base) if signed else None
        finally:
            shutil.rmtree(base)
        if summary["events"] != server.events:
            wrong.add(f"MISMATCH ({summary['events']} of {server.events})")
        if (summary["record"] is not None) != signed:
            wrong.add(f"record {summary['record']!r} with signing {signed}")
        if number < 2:
            key_seconds.clear()
            sign_seconds.clear()
            continue
        seconds[signed].append(elapsed)
        if sealed is not None:
            seal_seconds.append(sealed)
    plain = statistics.median(seconds[False])
    rows = []
    for signed in (False, True):
        median = statistics.median(seconds[signed])
        rows.append(
            {
                "signing": "yes" if signed else "no",
                "events": server.events,
                "seconds": median,
                "min s": min(seconds[signed]),
                "max s": max(seconds[signed]),
                "events/s": server.events / median,
                "overhead %": (median / plain - 1) * 100 if signed else None,
                "signing %": (
                    (statistics.median(key_seconds) + statistics.median(sign_seconds)) / plain * 100
                    if signed
                    else None
                ),
                "key s": statistics.median(key_seconds) if signed else None,
                "sign s": statistics.median(sign_seconds) if signed else None,
                "seal s": statistics.median(seal_seconds) if signed else None,
                "check": "; ".join(sorted(wrong)) or "ok",
            }
        )
    return rows


# ---------------------------------------------------------------------- the check


def sign_archive(base: Path, public_key: Path, *, seal_every: int) -> tuple[int, str, float]:
    """
    Sign a record of every export file under ``base`` and seal the series after every ``seal_every``
    files, as an export and its sealing task would have, in date order; the last seal is the sealing
    task's :func:`seal_archive` over the whole archive. Writes the public key to ``public_key``.

    :returns: the number of seals, the newest seal's hash, and the seconds of the last seal.
    """
    logging.disable(logging.INFO)
    from airflow_provider_asana_audit.evidence import SigningKey, make_seal, seal_objects
    from airflow_provider_asana_audit.evidence.signing import seal_archive, write_record
    from airflow_provider_asana_audit.storage import resolve_base

    key = SigningKey.generate()
    public_key.write_text(key.public_key.pem)
    root = resolve_base(str(base))
    files = sorted(base.rglob("*.jsonl.gz"))  # date=YYYY-MM-DD folders: in date order
    records = []
    previous = None
    for number, file in enumerate(files, start=1):
        manifest = Path(f"{file}.manifest.json").read_bytes()
        relative = file.relative_to(base).as_posix()
        records.append(write_record(key=key, base=root, relative=relative, manifest=manifest, log=log))
        if number < len(files) and number % seal_every == 0:
            previous = make_seal(
                key=key,
                workspace_gid=records[0].workspace_gid,
                filters=records[0].filters,
                records=records,
                previous=previous,
            )
            for path, data in seal_objects(previous).items():
                (base / path).parent.mkdir(parents=True, exist_ok=True)
                (base / path).write_bytes(data)
    started = time.perf_counter()
    (last,) = seal_archive(key=key, base=root, log=log)
    seconds = time.perf_counter() - started
    return last.seal.sequence, last.sha256, seconds


def check(base: Path, scratch: Path, options: Sequence[str]) -> dict[str, Any]:
    """
    Run the command on ``base`` with ``options`` in a process of its own; the check's seconds and the
    process's peak RSS. Stops the benchmark, showing the report, unless the archive is whole.
    """
    report = scratch / "report.json"
    errors = scratch / "stderr.txt"
    report.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "airflow_provider_asana_audit.verify",
        str(base),
        "--json",
        str(report),
        *options,
    ]
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "TMPDIR": str(scratch)}
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    found = json.loads(report.read_text()) if report.exists() else None
    if process.returncode != 0 or found is None or not found["whole"]:
        shown = (
            {key: found[key] for key in ("whole", "problem_counts", "problems", "evidence", "notes")}
            if found
            else None
        )
        raise SystemExit(
            f"The check should find the archive whole: exit status {process.returncode} of\n  "
            f"{' '.join(command)}\nreport: {json.dumps(shown, indent=2)[:20_000]}\n"
            f"stderr (end): {errors.read_text(errors='replace')[-5_000:]}"
        )
    # ru_maxrss is in KiB on Linux.
    return {"seconds": found["seconds"], "rss": usage.ru_maxrss / 1024, "events": found["events"]}


def measure_check(root: Path, *, days: int, per_day: int, seal_every: int, repeat: int) -> dict[str, Any]:
    """Write and sign an archive of ``days`` daily files, then check it without and with the keys."""
    base = root / f"archive-{days}"
    write_archive(base, days=days, per_day=per_day)
    public_key = root / f"archive-{days}.pub"
    seals, newest, seal_seconds = in_fresh_process(sign_archive, base, public_key, seal_every=seal_every)
    evidence = sum(
        path.stat().st_size for path in base.rglob("*.json") if not path.name.endswith(".manifest.json")
    )
    keys = ["--public-key", str(public_key), "--published-seal-hash", newest]
    scratch = Path(tempfile.mkdtemp(dir=root))
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for run in range(repeat):
        for with_keys in ((False, True), (True, False))[run % 2]:
            runs[with_keys].append(check(base, scratch, keys if with_keys else []))
    smallest = min(figures["rss"] for figures in runs[False] + runs[True])
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 >= smallest:
        raise SystemExit("this process grew as large as the checks: their peak RSS would be its own")
    plain = statistics.median(figures["seconds"] for figures in runs[False])
    signed = statistics.median(figures["seconds"] for figures in runs[True])
    return {
        "days": days,
        "events": runs[True][0]["events"],
        "seals": seals,
        "evidence MiB": evidence / 2**20,
        "seal s": seal_seconds,
        "check s": plain,
        "check s keys": signed,
        "ratio": signed / plain,
        "peak RSS MiB": statistics.median(figures["rss"] for figures in runs[False]),
        "peak RSS MiB keys": statistics.median(figures["rss"] for figures in runs[True]),
    }


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events of the export (default 200,000)")
    parser.add_argument("--concurrency", type=int, default=1, help="the export's concurrency (default 1)")
    parser.add_argument(
        "--requests-per-minute",
        type=float,
        default=1e6,
        help="the export's budget (default 1,000,000: no cap; Asana allows 1,500)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="stand-in seconds per request")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, alternated (default 5)")
    parser.add_argument("--days", type=int, nargs="+", default=[30, 365], help="archive sizes in days")
    parser.add_argument("--per-day", type=int, default=1000, help="events a day (default 1,000)")
    parser.add_argument("--seal-every", type=int, default=1, help="days between seals (default 1: daily)")
    parser.add_argument("--skip-export", action="store_true", help="leave out the export")
    parser.add_argument("--skip-check", action="store_true", help="leave out the check")
    parser.add_argument("--keep", action="store_true", help="keep the archives (their folder is printed)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="asana-audit-bench-evidence-"))
    os.environ.setdefault("AIRFLOW_HOME", str(root / "airflow-home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # Airflow 3 logs to stdout
    print(f"working in {root}\n")
    try:
        if not args.skip_export:
            print(
                f"The export: {args.events:,} events, concurrency {args.concurrency}, "
                f"{args.requests_per_minute:,.0f} requests/minute at most, stand-in latency "
                f"{args.latency * 1000:.0f} ms/request, median of {args.repeat}\n"
            )
            with standin(args.events, days=1, latency=args.latency) as server:
                rows = in_fresh_process(
                    measure_export,
                    server,
                    concurrency=args.concurrency,
                    requests_per_minute=args.requests_per_minute,
                    repeat=args.repeat,
                    root=root,
                )
            print_table(EXPORT_COLUMNS, rows)
            print()
        if not args.skip_check:
            print(
                f"The check: {args.per_day:,} events a day, a seal every {args.seal_every} days, "
                f"median of {args.repeat}\n"
            )
            rows = [
                measure_check(
                    root, days=days, per_day=args.per_day, seal_every=args.seal_every, repeat=args.repeat
                )
                for days in args.days
            ]
            print_table(CHECK_COLUMNS, rows)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
