"""
The one place that knows which Airflow is running.

Airflow asks providers to keep their own copy of these flags rather than import another provider's
(``airflow.providers.common.compat.version_compat`` says so in its header). Names that moved between
Airflow 2 and 3 and that ``common.compat`` does not resolve are resolved here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowRescheduleException",
]


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The running Airflow's ``(major, minor, micro)``, without pre-release parts."""
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_0_PLUS: bool = get_base_airflow_version_tuple() >= (3, 0, 0)
#: Plugins can add FastAPI apps and nav entries (external views) to the UI from 3.1 on.
AIRFLOW_V_3_1_PLUS: bool = get_base_airflow_version_tuple() >= (3, 1, 0)
#: Event triggers get ``asset_state_store`` and shared streams from 3.3 on.
AIRFLOW_V_3_3_PLUS: bool = get_base_airflow_version_tuple() >= (3, 3, 0)

if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
    from airflow.sdk.exceptions import AirflowRescheduleException
else:  # Airflow 2
    from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef]
