"""
The archive check: is every interval of an archive of exports there, once, is every file intact, and
is every event in its place.

``python -m airflow_provider_asana_audit.verify BASE`` (:mod:`.command`), or
:func:`verify_archive` (:mod:`.check`), which returns an :class:`ArchiveReport` (:mod:`.report`).
The command's ``main`` is importable here too, to run it in-process, but is no API: not in ``__all__``.

.. seealso:: docs/archive.md
"""

from __future__ import annotations

from airflow_provider_asana_audit.verify.check import verify_archive
from airflow_provider_asana_audit.verify.command import main as main
from airflow_provider_asana_audit.verify.report import (
    EXAMPLES,
    PROBLEM_KINDS,
    ArchiveReport,
    Interval,
    Problem,
    Reexport,
)

__all__ = [
    "EXAMPLES",
    "PROBLEM_KINDS",
    "ArchiveReport",
    "Interval",
    "Problem",
    "Reexport",
    "verify_archive",
]
