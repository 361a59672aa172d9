"""``python -m airflow_provider_asana_audit.evidence``: the command line is :mod:`.command`'s."""

from __future__ import annotations

import sys

from airflow_provider_asana_audit.evidence.command import main

if __name__ == "__main__":
    sys.exit(main())
