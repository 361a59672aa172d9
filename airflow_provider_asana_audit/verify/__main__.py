"""``python -m airflow_provider_asana_audit.verify``: the command line is :mod:`.command`'s."""

from __future__ import annotations

import sys

from airflow_provider_asana_audit.verify.command import main

if __name__ == "__main__":
    sys.exit(main())
