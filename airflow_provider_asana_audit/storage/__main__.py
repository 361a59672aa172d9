"""
The storage command line: ``python -m airflow_provider_asana_audit.storage sweep BASE [--older-than D]
[--delete] [--conn-id ID]``.

.. seealso:: docs/reliability.md#the-sweep-command
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import timedelta

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.storage import STAGING_GRACE_PERIOD, sweep_staging
from airflow_provider_asana_audit.timeutils import format_duration

__all__ = ["main"]

_DURATION = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>[smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def main(argv: Sequence[str] | None = None) -> int:
    """
    List the stale staging objects under ``BASE`` and, with ``--delete``, remove them.

    :param argv: the arguments, default ``sys.argv[1:]``.
    :return: the exit status: 0 when done, 1 when an object could not be removed (2, a wrong command
        line, exits).
    """
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_asana_audit.storage",
        description="Maintain the storage that Asana audit log exports are written to.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser(
        "sweep",
        help="list (and with --delete remove) the staging objects killed export attempts left",
        description=(
            "List the staging objects (.<name>.<32 hex digits>.partial) under BASE that were last "
            "modified longer ago than --older-than: what killed export attempts left. Nothing else is "
            "touched. A dry run unless --delete is given."
        ),
    )
    sweep.add_argument("base", help="directory or URI to sweep, with everything below it")
    sweep.add_argument(
        "--older-than",
        type=_parse_duration,
        default=timedelta(hours=1),
        metavar="DURATION",
        help=(
            "only objects last modified longer ago than this, e.g. 90s, 30m, 1h, 2d (default: 1h; keep "
            f"it above {format_duration(STAGING_GRACE_PERIOD)} plus any clock difference between this "
            "machine and the storage)"
        ),
    )
    sweep.add_argument("--delete", action="store_true", help="remove them (default: only list them)")
    sweep.add_argument("--conn-id", default=None, help="Airflow connection of the storage, if it needs one")
    args = parser.parse_args(argv)
    try:
        found = sweep_staging(
            args.base, older_than=args.older_than, dry_run=not args.delete, conn_id=args.conn_id
        )
    except AsanaAuditLogConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    verb = "removed" if args.delete else "would remove"
    failed = [item for item in found if args.delete and not item.removed]
    for item in found:
        state = "NOT removed" if item in failed else verb
        print(f"{state} {item.path} ({item.size} bytes, {format_duration(item.age)} old)")
    summary = (
        f"{len(found)} staging object(s) older than {format_duration(args.older_than)} under {args.base}"
    )
    if not args.delete:
        summary += ": dry run, nothing removed (add --delete to remove them)"
    elif failed:
        summary += f": {len(failed)} could not be removed"
    print(summary)
    return 1 if failed else 0


def _parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 1h or 2d")
    return timedelta(seconds=float(match["number"]) * _UNIT_SECONDS[match["unit"]])


if __name__ == "__main__":
    sys.exit(main())
