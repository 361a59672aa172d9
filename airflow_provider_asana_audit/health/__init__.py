"""
The archive's health at a glance: a calendar of days from the manifests, the events per day, and the
newest archive check's problems; as data, as a self-contained HTML report, and as a page in the Airflow UI.

.. seealso:: docs/archive-page.md
"""

from __future__ import annotations

from airflow_provider_asana_audit.health.html import render_html
from airflow_provider_asana_audit.health.model import (
    CELL_STATES,
    DEFAULT_SETTLE_PERIOD,
    ArchiveHealth,
    Cell,
    SeriesHealth,
    archive_health,
)

__all__ = [
    "CELL_STATES",
    "DEFAULT_SETTLE_PERIOD",
    "ArchiveHealth",
    "Cell",
    "SeriesHealth",
    "archive_health",
    "render_html",
]
