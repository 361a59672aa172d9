"""
What to re-export to mend the archive: the problems' intervals merged into ranges per series, each with
the backfill command that re-exports it, or none when Asana no longer holds its events.

.. seealso:: docs/archive.md, "Re-exporting"
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from airflow_provider_asana_audit.backfill import backfill_command
from airflow_provider_asana_audit.rules import retention_start
from airflow_provider_asana_audit.verify.report import ArchiveReport, Reexport

__all__ = ["plan_reexports"]


def plan_reexports(report: ArchiveReport, *, dag_id: str | None, now: datetime) -> list[Reexport]:
    """
    The intervals of the report's problems, merged into ranges per series.

    :param dag_id: the export DAG to name; default the DAG most manifests of the series name.
    :param now: the instant Asana's retention is measured from.
    """
    by_series: dict[tuple[str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    for problem in report.problems:
        for interval in problem.reexport:
            by_series[(interval.workspace_gid, interval.filter_suffix)].append(
                (interval.start_at, interval.end_at)
            )
    series_of = {(series.workspace_gid, series.filter_suffix): series for series in report.series}
    oldest = retention_start(now)
    result: list[Reexport] = []
    for key in sorted(by_series):
        series = series_of.get(key)
        step = series.steps.most_common(1)[0][0] if series and series.steps else timedelta(days=1)
        dag = dag_id or (
            series.dag_ids.most_common(1)[0][0] if series and series.dag_ids else "<export DAG id>"
        )
        merged: list[list[datetime]] = []
        for start, end in sorted(by_series[key]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            expired = start < oldest
            command = None if end <= oldest else backfill_command(dag, start, max(start, end - step))
            result.append(Reexport(key[0], key[1], start, end, dag, command, expired))
    return result
