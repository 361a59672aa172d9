"""
The archive check's command line:
``python -m airflow_provider_asana_audit.verify BASE [--since] [--until] [--json FILE|-] [--dag-id]
[--conn-id] [--public-key FILE ...] [--published-seal-hash HASH ...] [--published-seal-hashes FILE]``.
Exit status 0 when the archive is whole, 1 when it is not, 2 for a wrong command line or a base path that
cannot be listed.

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

from airflow_provider_asana_audit.evidence.keys import Keyring
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.health import archive_health, render_html
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
        "--html",
        metavar="FILE",
        help="also write the calendar, the events per day and the problems to FILE, one self-contained "
        "HTML page",
    )
    parser.add_argument(
        "--dag-id", help="the export DAG to name in re-export commands (default: from manifests)"
    )
    parser.add_argument("--conn-id", help="Airflow connection of the storage, if it needs one")
    parser.add_argument(
        "--public-key",
        metavar="FILE",
        action="append",
        default=[],
        help="check the signed records and seals with this public key (PEM); repeat for every key the "
        "archive has used",
    )
    parser.add_argument(
        "--published-seal-hash",
        metavar="HASH",
        action="append",
        default=[],
        help="a seal hash published outside the archive, which must be in it; repeatable",
    )
    parser.add_argument(
        "--published-seal-hashes",
        metavar="FILE",
        help="a file of published seal hashes, one a line (blank lines and # comments ignored)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with _results_stream() as results:
        try:
            since = parse_bound(args.since, name="--since") if args.since else None
            until = parse_bound(args.until, name="--until") if args.until else None
            published = [*args.published_seal_hash, *_hashes_in(args.published_seal_hashes)]
            if published and not args.public_key:
                raise AsanaAuditLogConfigError(
                    "published seal hashes are checked against the signed seals: give --public-key too"
                )
            report = verify_archive(
                args.base,
                since=since,
                until=until,
                conn_id=args.conn_id,
                dag_id=args.dag_id,
                keyring=Keyring.from_files(args.public_key) if args.public_key else None,
                published_seal_hashes=published,
            )
        except AsanaAuditLogConfigError as err:
            parser.exit(2, f"{parser.prog}: error: {err}\n")
        document = json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
        print(report.summary(), file=sys.stderr if args.json == "-" else results)
        if args.html:
            health = archive_health(args.base, conn_id=args.conn_id, report=report.to_json())
            with open(args.html, "w", encoding="utf-8") as out:
                out.write(render_html([health]))
        if args.json == "-":
            results.write(document)
        elif args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                out.write(document)
    return 0 if report.whole else 1


def _hashes_in(path: str | None) -> list[str]:
    """The seal hashes listed in a file, one a line; none without a file."""
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as listed:
            lines = listed.read().splitlines()
    except OSError as err:
        raise AsanaAuditLogConfigError(
            f"Cannot read the published seal hashes from {path}: {err.strerror or err}"
        ) from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


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
