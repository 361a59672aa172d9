"""
Regenerate the tables of ``docs/bad-input.md`` from :mod:`tests.bad_input.cases`.

Run ``python -m tests.bad_input`` from the repository root (``--check`` only reports whether they are
current). The text around the tables is left as it is.
"""

from __future__ import annotations

import os
import sys
import tempfile

# Importing the provider imports Airflow, which reads AIRFLOW_HOME once: never touch a real one.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="asana-audit-docs-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from tests.bad_input.cases import DOC, TABLE_END, TABLE_START, render_tables


def main(argv: list[str]) -> int:
    doc = DOC.read_text(encoding="utf-8")
    start, end = doc.index(TABLE_START), doc.index(TABLE_END) + len(TABLE_END)
    updated = doc[:start] + render_tables() + doc[end:]
    if updated == doc:
        print(f"{DOC} is up to date")
        return 0
    if "--check" in argv:
        print(f"{DOC} is out of date: run `python -m tests.bad_input`")
        return 1
    DOC.write_text(updated, encoding="utf-8")
    print(f"Rewrote the tables of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
