"""
The archive's health as one self-contained HTML document (``render_html``), as ``verify --html`` and the
verify operator's ``html_report_path`` write it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

from airflow_provider_asana_audit.backfill import backfill_command
from airflow_provider_asana_audit.health import CELL_STATES, archive_health, render_html
from airflow_provider_asana_audit.health.html import STATE_LABELS
from airflow_provider_asana_audit.verify import verify_archive
from tests.helpers.archive import Archive, manifest_of, read_export, run_verify


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def _cells(page: str) -> dict[str, str]:
    """Each calendar cell's state, by its day."""
    return {
        str(attrs["data-day"]): str(attrs["data-state"])
        for tag, attrs in _tags(page)
        if attrs.get("role") == "gridcell"
    }


def test_every_day_is_a_focusable_cell_with_its_state_and_details(damaged: Archive) -> None:
    damaged.file(damaged.days[2]).unlink()
    damaged.manifest(damaged.days[2]).unlink()
    health = archive_health(damaged.uri, now=damaged.end + timedelta(hours=1))

    page = render_html([health])

    cells = [attrs for _, attrs in _tags(page) if attrs.get("role") == "gridcell"]
    assert [cell["data-day"] for cell in cells] == [f"{day:%Y-%m-%d}" for day in (*damaged.days, damaged.end)]
    # One Tab stop for the calendar, the first day; the arrow keys reach the others.
    assert [cell["tabindex"] for cell in cells] == ["0"] + ["-1"] * (len(cells) - 1)
    assert [cell["data-state"] for cell in cells] == [c.state for c in health.series[0].cells]
    missing = cells[2]
    assert missing["data-state"] == "missing"
    assert str(missing["aria-label"]).startswith(f"{damaged.days[2]:%Y-%m-%d}: missing")
    assert "days left before Asana deletes these events" in str(missing["data-details"])
    assert backfill_command("example_asana_audit_export", damaged.days[2], damaged.days[2]) in page


def test_the_page_fetches_nothing_and_names_every_state(archive: Archive) -> None:
    page = render_html([archive_health(archive.uri)])

    for tag, attrs in _tags(page):
        assert "src" not in attrs, (tag, attrs)
        assert not (tag == "link" and attrs.get("href")), (tag, attrs)
    assert "default-src 'none'" in page
    assert not re.search(r"https?://", page.replace(archive.uri, ""))
    for state in CELL_STATES:
        assert STATE_LABELS[state] in page


def test_runs_are_linked_only_when_the_page_knows_how(damaged: Archive) -> None:
    file = damaged.file(damaged.days[4])
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    report = verify_archive(damaged.uri).to_json()
    health = archive_health(damaged.uri, report=report)

    linked = render_html([health], run_link=lambda dag_id, run_id: f"../dags/{dag_id}/runs/{run_id}")

    run_id = manifest_of(file)["exported_by"]["run_id"]
    links = [attrs["href"] for tag, attrs in _tags(linked) if tag == "a"]
    assert links == [f"../dags/example_asana_audit_export/runs/{run_id}"]
    assert [tag for tag, _ in _tags(render_html([health]))].count("a") == 0


def test_the_page_holds_no_event_contents(archive: Archive) -> None:
    page = render_html([archive_health(archive.uri)])
    for file in archive.files():
        for event in read_export(file):
            assert event["gid"] not in page


def test_verify_html_writes_the_calendar_with_the_checks_problems(damaged: Archive, tmp_path: Path) -> None:
    file = damaged.file(damaged.days[3])
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    target = tmp_path / "report.html"

    result = run_verify(damaged.uri, "--html", str(target))

    assert result.code == 1, result.stderr
    cells = _cells(target.read_text(encoding="utf-8"))
    assert cells[f"{damaged.days[3]:%Y-%m-%d}"] == "damaged"
    assert "unreadable_file" in target.read_text(encoding="utf-8")
