"""Apache Airflow provider for Asana's Audit Log API."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
