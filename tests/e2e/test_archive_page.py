"""
End to end: the archive page in the Airflow 3.3 UI, in a real browser, with a real login.

An API server (which serves the UI and the plugins' apps) runs in a temporary ``AIRFLOW_HOME`` with the
simple auth manager, logins on, one viewer, and ``[asana_audit_log] archives`` naming a copy of the
archive that the export example DAG wrote. Headless Chromium (Debian's, through Playwright) logs in,
opens the page from the nav entry, reads the calendar; then a day is deleted and another one's manifest,
the page is reloaded, and both cells have changed, with the commands that mend them. Keyboard
navigation reaches every cell. The same picture as a report (``verify --html``) opens with the network
off and shows the same cells. Screenshots are kept in the artifacts folder (``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.backfill import backfill_command
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_1_PLUS
from tests.e2e.test_connection_form import STARTUP, Screenshots, _browser, _require_browser
from tests.helpers.archive import Archive, run_verify
from tests.helpers.deployment import deployment

pytestmark = pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="plugin pages are Airflow 3.1+ only")

with contextlib.suppress(ImportError):  # _require_browser says so
    from playwright.sync_api import FrameLocator, Page, expect

NAV = "Asana audit archive"


def _login(page: Page, url: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill("viewer")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name=NAV)).to_be_visible()


def _states(frame: FrameLocator) -> dict[str, str]:
    cells = frame.locator("[role=gridcell]")
    expect(cells.first).to_be_visible()
    days = cells.evaluate_all("cells => cells.map(c => [c.dataset.day, c.dataset.state])")
    return dict(days)


def test_the_archive_page_shows_the_calendar_and_follows_the_archive(
    archive: Archive, tmp_path: Path, e2e_artifacts: Path
) -> None:
    _require_browser()
    started = time.monotonic()
    copy = archive.copy(tmp_path / "archive")
    config = {
        "core": {"simple_auth_manager_all_admins": "False", "simple_auth_manager_users": "viewer:viewer"},
        "asana_audit_log": {"archives": json.dumps([{"base_path": copy.uri}])},
    }
    with deployment(tmp_path / "airflow", config=config) as airflow:
        airflow.migrate()
        airflow.start("api-server")
        airflow.wait_until(airflow.api_ready, timeout=STARTUP, message="the API server should answer")
        passwords = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["viewer"]
        with _browser(tmp_path / "chromium-profile") as page:
            shots = Screenshots(page, e2e_artifacts)
            try:
                _login(page, airflow.api_url, password)
                page.get_by_role("link", name=NAV).click()
                frame = page.frame_locator("iframe")
                before = _states(frame)
                expect(frame.get_by_role("heading", name=copy.uri)).to_be_visible()
                shots.take("archive-page")
                assert [before[f"{day:%Y-%m-%d}"] for day in copy.days] == ["whole"] * len(copy.days)

                deleted, damaged = copy.days[2], copy.days[4]
                copy.file(deleted).unlink()
                copy.manifest(deleted).unlink()
                copy.manifest(damaged).unlink()
                page.reload()
                after = _states(page.frame_locator("iframe"))
                shots.take("archive-page-after-damage")
                assert after[f"{deleted:%Y-%m-%d}"] == "missing"
                assert after[f"{damaged:%Y-%m-%d}"] == "damaged"
                assert {day: state for day, state in after.items() if state != before[day]} == {
                    f"{deleted:%Y-%m-%d}": "missing",
                    f"{damaged:%Y-%m-%d}": "damaged",
                }
                frame = page.frame_locator("iframe")
                for day in (deleted, damaged):
                    command = backfill_command("example_asana_audit_export", day, day)
                    expect(frame.get_by_text(command)).to_be_visible()

                _keyboard_reaches_every_cell(frame, len(after))
                shots.take("archive-page-keyboard")
                _the_report_shows_the_same_cells(page.context, copy, tmp_path, after, shots)
            except BaseException:
                shots.take("failure")
                raise
            finally:
                print("screenshots:", *shots.taken, sep="\n  ")
    print(f"e2e archive page: {time.monotonic() - started:.0f} s")


def _keyboard_reaches_every_cell(frame: FrameLocator, count: int) -> None:
    """Arrow keys walk the calendar from its first day to its last, and the details follow the focus."""
    cells = frame.locator("[role=gridcell]")
    days = cells.evaluate_all("cells => cells.map(c => c.dataset.day)")
    cells.first.focus()
    reached = []
    for _ in range(count):
        focused = frame.locator("[role=gridcell]:focus")
        reached.append(focused.get_attribute("data-day"))
        expect(frame.locator("#details")).to_contain_text(str(reached[-1]))
        focused.press("ArrowRight")
    assert reached == days


def _the_report_shows_the_same_cells(
    context: Any, copy: Archive, tmp_path: Path, shown: dict[str, str], shots: Screenshots
) -> None:
    report = tmp_path / "report.html"
    run_verify(copy.uri, "--html", str(report))
    page = context.new_page()
    context.set_offline(True)
    try:
        page.goto(report.as_uri())
        cells = page.locator("[role=gridcell]")
        expect(cells.first).to_be_visible()
        in_report = dict(cells.evaluate_all("cells => cells.map(c => [c.dataset.day, c.dataset.state])"))
        Screenshots(page, shots.folder).take("html-report-offline")
        assert in_report == shown
    finally:
        context.set_offline(False)
        page.close()
