"""
End to end: the archive page in the Airflow 3.3 UI, in a real browser, with a real login.

``airflow standalone`` runs in a temporary ``AIRFLOW_HOME`` with the simple auth manager, logins on and
one viewer, over a copy of the test session's metadata database (which holds the DAG runs that wrote
the archive); ``[asana_audit_log] archives`` names a copy of the archive that the export example DAG
wrote, and a folder of check reports. Headless Chromium (Debian's, through Playwright) logs in with the
generated password, opens the page from the nav entry and reads the calendar. Then a day is deleted (file
and manifest), another one's file is cut short and the archive check writes its JSON report into the
folder; after a reload both cells have changed, with the commands that mend them and the run that wrote
the damaged day. The keyboard reaches every cell; the report of the same archive as one HTML file
(``verify --html``) opens with the network off, fetches nothing and shows the same cells; the link to
the run opens its page in the UI. Screenshots are kept in the artifacts folder (``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.backfill import backfill_command
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_1_PLUS
from tests.e2e.test_connection_form import STARTUP, UI_TIMEOUT, Screenshots, _browser, _require_browser
from tests.helpers.archive import EXPORT_DAG_ID, Archive, run_verify
from tests.helpers.deployment import deployment

pytestmark = pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="plugin pages are Airflow 3.1+ only")

with contextlib.suppress(ImportError):  # _require_browser says so
    from playwright.sync_api import Frame, FrameLocator, Locator, Page, expect
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

NAV = "Asana audit archive"
USER = "viewer"


def test_the_archive_page_shows_the_calendar_and_follows_the_archive(
    archive: Archive, airflow_db: Path, tmp_path: Path, e2e_artifacts: Path
) -> None:
    _require_browser()
    started = time.monotonic()
    copy = archive.copy(tmp_path / "archive")
    reports = tmp_path / "reports"
    reports.mkdir()
    config = {
        "core": {"simple_auth_manager_all_admins": "False", "simple_auth_manager_users": f"{USER}:viewer"},
        "asana_audit_log": {
            "archives": json.dumps([{"base_path": copy.uri, "report_path": f"file://{reports}/"}])
        },
    }
    # standalone starts its components as `airflow ...`: this virtualenv's.
    path = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with deployment(tmp_path / "airflow", config=config, extra_env=path) as airflow:
        _copy_database(airflow_db, airflow.database)
        airflow.start("standalone")
        airflow.wait_until(airflow.api_ready, timeout=STARTUP, message="the API server should answer")
        password = json.loads((airflow.home / "simple_auth_manager_passwords.json.generated").read_text())
        with _browser(tmp_path / "chromium-profile") as page:
            shots = Screenshots(page, e2e_artifacts)
            try:
                _login(page, airflow.api_url, password[USER])
                page.get_by_role("link", name=NAV).click()
                frame = page.frame_locator("iframe")
                expect(frame.get_by_role("heading", name=copy.uri)).to_be_visible()
                before = _states(frame)
                shots.take("archive-page")
                assert [before[_day(day)] for day in copy.days] == ["whole"] * len(copy.days)

                deleted, damaged = copy.days[2], copy.days[4]
                copy.file(deleted).unlink()
                copy.manifest(deleted).unlink()
                file = copy.file(damaged)
                file.write_bytes(file.read_bytes()[:100])
                assert run_verify(copy.uri, "--json", str(reports / f"{damaged:%Y-%m-%d}.json")).code == 1
                page.reload()
                frame = page.frame_locator("iframe")
                expect(frame.get_by_text("NOT WHOLE")).to_be_visible()
                after = _states(frame)
                shots.take("archive-page-after-damage")
                changed = {day: state for day, state in after.items() if state != before[day]}
                assert changed == {_day(deleted): "missing", _day(damaged): "damaged"}
                for day in (deleted, damaged):
                    expect(frame.get_by_text(backfill_command(EXPORT_DAG_ID, day, day))).to_be_visible()
                run_id = json.loads(copy.manifest(damaged).read_text())["exported_by"]["run_id"]
                run = frame.get_by_role("link", name=f"{EXPORT_DAG_ID} / {run_id}")
                expect(run).to_be_visible()

                _keyboard_reaches_every_cell(page, frame)
                shots.take("archive-page-keyboard")
                _the_report_shows_the_same_cells(page, copy, tmp_path, after, shots)
                opened = _open_the_run(page, run, run_id)
                shots.take("dag-run-from-the-archive-page")
            except BaseException:
                with contextlib.suppress(Exception):  # the failure itself is what matters
                    shots.take("failure")
                raise
            finally:
                print("screenshots:", *shots.taken, sep="\n  ")
    print(f"e2e archive page: {time.monotonic() - started:.0f} s")
    assert opened, "the run's link in the archive page did not open the run's page in the UI"


def _copy_database(source: Path, target: Path) -> None:
    """The session's metadata database (the DAG runs that wrote the archive), copied consistently."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        # Its DAGs stay paused: the deployment's scheduler must not start runs of its own.
        dst.execute("UPDATE dag SET is_paused = 1")
        dst.commit()


def _day(day: datetime) -> str:
    return f"{day:%Y-%m-%d}"


def _login(page: Page, url: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name=NAV)).to_be_visible()


def _states(frame: FrameLocator | Page) -> dict[str, str]:
    """Each day of the calendar and its state, as the cells say."""
    cells = frame.locator("[role=gridcell]")
    expect(cells.first).to_be_visible()
    days = cells.evaluate_all("cells => cells.map(c => [c.dataset.day, c.dataset.state])")
    return dict(days)


def _keyboard_reaches_every_cell(page: Page, frame: FrameLocator) -> None:
    """
    Tab goes from the top of the page to the first day; the right arrow walks the calendar to its last day
    and the details follow the focus; Home, End and the up and down arrows (a week) jump; Tab leaves the
    calendar in one step, and Shift+Tab returns to the day last focused.
    """
    days = frame.locator("[role=gridcell]").evaluate_all("cells => cells.map(c => c.dataset.day)")
    focused = frame.locator("[role=gridcell]:focus")

    def at() -> str:
        day = focused.get_attribute("data-day")
        assert day is not None
        return day

    frame.locator("h1").click()  # where the sequential focus navigation starts
    page.keyboard.press("Tab")
    reached = [at()]
    for _ in days[1:]:
        page.keyboard.press("ArrowRight")
        reached.append(at())
        expect(frame.locator("#details")).to_contain_text(reached[-1])
    assert reached == days
    page.keyboard.press("ArrowRight")  # past the last day: stays there
    assert at() == days[-1]
    page.keyboard.press("Home")
    assert at() == days[0]
    page.keyboard.press("ArrowDown")
    assert at() == days[7]
    page.keyboard.press("ArrowUp")
    assert at() == days[0]
    page.keyboard.press("End")
    assert at() == days[-1]
    # The calendar is one Tab stop: Tab from its first day leaves it rather than moving to the second,
    # and Shift+Tab comes back to the day last focused.
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    assert at() == days[1]
    page.keyboard.press("Tab")
    expect(focused).to_have_count(0)
    page.keyboard.press("Shift+Tab")
    assert at() == days[1]


def _the_report_shows_the_same_cells(
    page: Page, copy: Archive, tmp_path: Path, shown: dict[str, str], shots: Screenshots
) -> None:
    """The archive check's HTML report, opened from disk with the network off: it asks for nothing."""
    report = tmp_path / "report.html"
    run_verify(copy.uri, "--html", str(report))
    context = page.context
    offline = context.new_page()
    asked: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.abort()

    offline.route(re.compile(r"^(?!file:)"), refuse)
    context.set_offline(True)
    shots.page = offline
    try:
        offline.goto(report.as_uri())
        assert _states(offline) == shown
        expect(offline.get_by_role("heading", name=copy.uri)).to_be_visible()
        shots.take("html-report-offline")
        assert asked == []
    finally:
        shots.page = page
        context.set_offline(False)
        offline.close()


def _open_the_run(page: Page, run: Locator, run_id: str) -> bool:
    """Follow the damaged day's link to its run: whether the UI then shows the run's page, whole."""
    run.click()
    try:
        page.wait_for_url(re.compile(rf"/dags/{EXPORT_DAG_ID}/runs/[^/]+$"), timeout=UI_TIMEOUT * 1000 / 4)
    except PlaywrightTimeoutError:
        return False
    expect(page.get_by_text(run_id).first).to_be_visible()
    frames: list[Frame] = page.frames
    assert all("/dags/" not in frame.url for frame in frames[1:]), "the run opened inside the page's frame"
    assert "/plugin/" not in page.url, "the run opened inside the page's frame"
    return True
