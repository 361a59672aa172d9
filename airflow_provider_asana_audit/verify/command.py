"""
The archive check's command line:
``python -m airflow_provider_asana_audit.verify BASE [--since] [--until] [--json FILE|-] [--dag-id]
[--conn-id]``. Exit status 0 when the archive is whole, 1 when it is not, 2 for a wrong command line or a
base path that cannot be listed.

.. seealso:: docs/archive.md, "The archive check"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.verify.check import parse_bound, verify_archive

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the check, print its summary (and JSON report), and return the exit status.

    :param argv: the arguments; default ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_asana_audit.verify",
        description=(
            "Check an archive of Asana audit log exports: every interval present once, every file intact "
            "and matching its manifest, every event valid, in its interval and in one file only. Prints a "
            "summary and what to re-export; exit status 0 when the archive is whole, 1 when it is not."
        ),
    )
    parser.add_argument("base", help="the base path or URI of the exports, e.g. s3://bucket/asana")
    parser.add_argument("--since", help="check from this date or instant on (default: the first export)")
    parser.add_argument("--until", help="check up to this date or instant (default: the last export's end)")
    parser.add_argument("--json", metavar="FILE", help="also write the JSON report to FILE (- for stdout)")
    parser.add_argument(
        "--dag-id", help="the export DAG to name in re-export commands (default: from manifests)"
    )
    parser.add_argument("--conn-id", help="Airflow connection of the storage, if it needs one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with _results_stream() as results:
        try:
            since = parse_bound(args.since, name="--since") if args.since else None
            until = parse_bound(args.until, name="--until") if args.until else None
            report = verify_archive(
                args.base, since=since, until=until, conn_id=args.conn_id, dag_id=args.dag_id
            )
        except AsanaAuditLogConfigError as err:
            parser.exit(2, f"{parser.prog}: error: {err}\n")
        document = json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
        print(report.summary(), file=sys.stderr if args.json == "-" else results)
        if args.json == "-":
            results.write(document)
        elif args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                out.write(document)
    return 0 if report.whole else 1


@contextmanager
def _results_stream() -> Iterator[TextIO]:
    """
    Standard output for the results alone; everything else written there goes to standard error.

    Airflow's logging writes to standard output, which would mix log lines into a summary or a JSON
    report piped to another program. When standard output is the process's own, its descriptor is
    pointed at standard error for the duration, and the results are written to a copy of the original.
    """
    stdout: TextIO = sys.stdout
    if stdout is not sys.__stdout__:  # already redirected (by a caller, or a test's capture)
        yield stdout
        return
    stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptors to juggle: keep things as they are
        yield stdout
        return
    try:
        with os.fdopen(os.dup(saved), "w", encoding="utf-8") as results:
            yield results
    finally:
        stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
