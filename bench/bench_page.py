"""
The archive page's render time: the calendar, the events per day and the problems of an archive of daily
files, built from its manifests (never the events) and rendered as the page's HTML, as the Airflow UI
page and ``verify --html`` do.

Each archive is written as bench_verify.py writes it (the export's exact format, correct manifests,
``--per-day`` events a day), on local storage. Each size is rendered ``--repeat`` times in this process;
the first render pays for the filesystem's set-up, so the table shows the first and the median of the
rest, and the HTML's size.

    python bench/bench_page.py                      # 30, 365 and 730 daily files
    python bench/bench_page.py --days 365 --repeat 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_verify import write_archive
from common import print_table

from airflow_provider_asana_audit.health import archive_health, render_html

COLUMNS = [
    ("days", "{:,.0f}"),
    ("first render s", "{:.3f}"),
    ("median render s", "{:.3f}"),
    ("of which manifests s", "{:.3f}"),
    ("html KiB", "{:,.0f}"),
]


def render(base: Path) -> tuple[float, float, int]:
    """One render: its seconds, the seconds spent listing and reading manifests, the HTML's size."""
    started = time.perf_counter()
    health = archive_health(f"file://{base}")
    page = render_html([health], run_link=lambda dag_id, run_id: f"../dags/{dag_id}/runs/{run_id}")
    return time.perf_counter() - started, health.seconds, len(page.encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, nargs="+", default=[30, 365, 730])
    parser.add_argument("--per-day", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for days in args.days:
        with tempfile.TemporaryDirectory() as scratch:
            base = Path(scratch) / "archive"
            write_archive(base, days=days, per_day=args.per_day)
            first = render(base)
            rest = [render(base) for _ in range(max(args.repeat - 1, 1))]
            rows.append(
                {
                    "days": days,
                    "first render s": first[0],
                    "median render s": statistics.median(seconds for seconds, _, _ in rest),
                    "of which manifests s": statistics.median(read for _, read, _ in rest),
                    "html KiB": first[2] / 1024,
                }
            )
    print_table(COLUMNS, rows)


if __name__ == "__main__":
    main()
