"""Apache Airflow provider for Asana's Audit Log API."""

from __future__ import annotations

__version__ = "0.1.0"
