"""
The archive page's plugin and endpoints.

On Airflow 3.1+ the endpoints are called through the API server's own app (``create_app``, which mounts
the plugins found through entry points, and the auth manager's login routes) with FastAPI's test client
and Airflow's simple auth manager, unmodified and with logins on: users log in with their password
(``POST /auth/token``) and send the token as the UI does. An anonymous request is refused (401), and so is
a user who may log in but not read DAGs (403, a user without a role); a viewer is served. On Airflow
2.11 the plugin loads and adds nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.get_provider_info import get_provider_info
from airflow_provider_asana_audit.plugins.archive_page import URL_PREFIX, AsanaAuditArchivePlugin
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_1_PLUS
from tests.helpers.archive import EXPORT_DAG_ID, Archive, read_export
from tests.helpers.deployment import free_port

needs_pages = pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="plugin pages are Airflow 3.1+ only")

PAGE = f"{URL_PREFIX}/"
API = f"{URL_PREFIX}/api/archives"
NAME = "asana_audit_archive"
#: The secret of the connection that the tests define, which nothing may show.
SECRET = "not-to-be-shown-3f9c2a"


@dataclass
class Api:
    """The API server's app in a test client, and the tokens of its users."""

    client: Any
    tokens: dict[str, str]

    def get(self, path: str, user: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return self.client.get(path, headers=headers)


@pytest.fixture(scope="module")
def api(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """
    The API server's app with the simple auth manager, logins on (in all-admins mode even anonymous
    requests pass): ``viewer`` may read DAGs, ``nobody`` (no role) may log in and read nothing.
    """
    from fastapi.testclient import TestClient

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "viewer:viewer,nobody:")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "a-secret-of-the-archive-page-tests-" * 3)
        from airflow.api_fastapi import app as api_app

        api_app.purge_cached_app()
        try:
            with TestClient(api_app.create_app(apps="core")) as client:
                tokens = {}
                for user, password in json.loads(passwords.read_text()).items():
                    login = client.post("/auth/token", json={"username": user, "password": password})
                    assert login.status_code == 201, login.text
                    tokens[user] = login.json()["access_token"]
                yield Api(client, tokens)
        finally:
            api_app.purge_cached_app()


def test_the_plugin_adds_the_page_on_airflow_3_1_and_nothing_before() -> None:
    from airflow import plugins_manager

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == NAME]
    assert entry.load() is AsanaAuditArchivePlugin
    # Airflow loads it (2.11 too) without an import error.
    assert NAME in [p["name"] for p in plugins_manager.get_plugin_info(attrs_to_dump=["source"])]
    if hasattr(plugins_manager, "get_import_errors"):  # Airflow 3
        errors = plugins_manager.get_import_errors()
    else:
        errors = plugins_manager.import_errors  # type: ignore[attr-defined,unused-ignore]
    assert not [module for module in errors if "asana" in str(module)], errors
    apps = getattr(AsanaAuditArchivePlugin, "fastapi_apps", [])
    views = getattr(AsanaAuditArchivePlugin, "external_views", [])
    if AIRFLOW_V_3_1_PLUS:
        assert [(app["url_prefix"], app["name"]) for app in apps] == [(URL_PREFIX, "Asana audit archive")]
        assert [view["href"] for view in views] == ["asana-audit-archive/"]
    else:
        assert (apps, views) == ([], [])
    # An entry point and not get_provider_info()["plugins"]: Airflow loads providers' plugins only with
    # [core] lazy_discover_providers = False, and would then load this one twice.
    assert "plugins" not in get_provider_info()


def test_loading_the_plugin_imports_neither_fastapi_nor_the_api_server() -> None:
    """Airflow 3 loads the plugins in every task's process: the page's app is built on its first request."""
    code = (
        "import sys, json\n"
        "import airflow_provider_asana_audit.plugins.archive_page\n"
        "heavy = ('fastapi', 'airflow.api_fastapi.core_api.security',\n"
        "         'airflow_provider_asana_audit.health')\n"
        "print(json.dumps([name for name in heavy if name in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == []


@needs_pages
def test_the_ui_lists_the_nav_entry(api: Api) -> None:
    """What the UI reads to build its nav (``GET /api/v2/plugins``)."""
    answer = api.get("/api/v2/plugins", "viewer")
    assert answer.status_code == 200, answer.text
    (plugin,) = [p for p in answer.json()["plugins"] if p["name"] == NAME]
    (view,) = plugin["external_views"]
    assert (view["name"], view["href"], view["destination"], view["url_route"]) == (
        "Asana audit archive",
        "asana-audit-archive/",
        "nav",
        "asana-audit-archive",
    )


@needs_pages
@pytest.mark.parametrize("path", [PAGE, API])
def test_an_anonymous_request_is_refused(api: Api, path: str) -> None:
    answer = api.get(path)
    assert (answer.status_code, answer.json()) == (401, {"detail": "Not authenticated"})


@needs_pages
@pytest.mark.parametrize("path", [PAGE, API])
def test_a_user_who_may_not_read_dags_is_refused(api: Api, path: str) -> None:
    answer = api.get(path, "nobody")
    assert (answer.status_code, answer.json()) == (403, {"detail": "Forbidden"})


@needs_pages
def test_a_forged_token_is_refused(api: Api) -> None:
    # Airflow answers an invalid token 403 ("Invalid JWT token"); no token, or an expired one, 401.
    answer = api.client.get(API, headers={"Authorization": "Bearer not.a.jwt"})
    assert (answer.status_code, answer.json()) == (403, {"detail": "Invalid JWT token"})


@needs_pages
def test_the_app_has_no_page_that_anyone_may_read(api: Api) -> None:
    """FastAPI's schema and docs pages are served before any dependency runs: the app has none."""
    from airflow_provider_asana_audit.plugins.archive_page import create_app

    paths = {getattr(route, "path", None) for route in create_app().routes}
    assert paths == {"/", "/api/archives"}
    for path in ("openapi.json", "docs", "redoc"):
        assert api.get(f"{URL_PREFIX}/{path}").status_code == 404


@needs_pages
def test_the_uis_cookie_is_enough(api: Api, archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI's frame sends no header, only the ``_token`` cookie of the logged-in user."""
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", json.dumps([{"base_path": archive.uri}]))
    for user, status in (("viewer", 200), ("nobody", 403)):
        api.client.cookies.set("_token", api.tokens[user])
        try:
            assert api.client.get(PAGE).status_code == status
        finally:
            api.client.cookies.clear()


@needs_pages
def test_a_viewer_sees_each_configured_archive_and_no_event_or_secret(
    api: Api, archive: Archive, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = f"file://{tmp_path}/empty"
    configured = [{"base_path": archive.uri}, {"base_path": empty, "settle_period_minutes": 0}]
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", json.dumps(configured))
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps({"password": SECRET}))

    listed = api.get(API, "viewer")
    page = api.get(PAGE, "viewer")

    assert (listed.status_code, page.status_code) == (200, 200)
    first, second = listed.json()["archives"]
    assert (first["base"], second["base"]) == (archive.uri, empty)
    (series,) = first["series"]
    days = {cell["day"][:10]: cell["state"] for cell in series["cells"]}
    assert [days[f"{day:%Y-%m-%d}"] for day in archive.days] == ["whole"] * len(archive.days)
    assert second["series"] == []
    assert page.headers["content-type"].startswith("text/html")
    assert f"<h2>{archive.uri}</h2>" in page.text
    assert f"<h2>{empty}</h2>" in page.text
    assert page.text.count('role="gridcell"') == len(series["cells"])
    # Counts, hashes and paths: never an event, a token, or the secret of a connection.
    shown = listed.text + page.text
    for secret in (SECRET, archive.standin().token, api.tokens["viewer"]):
        assert secret not in shown
    for file in archive.files():
        for event in read_export(file):
            for value in (
                event["gid"],
                event["actor"].get("email"),
                event["context"].get("client_ip_address"),
            ):
                assert not value or value not in shown


@needs_pages
def test_the_newest_report_of_a_folder_marks_days_and_links_their_runs(
    api: Api, damaged: Archive, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_asana_audit.verify import verify_archive

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "2026-01-01.json").write_text(json.dumps(verify_archive(damaged.uri).to_json()))
    day = damaged.days[3]
    file = damaged.file(day)
    file.write_bytes(file.read_bytes()[:100])
    (reports / "2026-01-02.json").write_text(json.dumps(verify_archive(damaged.uri).to_json()))
    configured = [{"base_path": damaged.uri, "report_path": f"file://{reports}/"}]
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", json.dumps(configured))

    (shown,) = api.get(API, "viewer").json()["archives"]

    assert shown["check"]["whole"] is False
    (cell,) = [cell for cell in shown["series"][0]["cells"] if cell["day"].startswith(f"{day:%Y-%m-%d}")]
    assert cell["state"] == "damaged"
    page = api.get(PAGE, "viewer").text
    assert "NOT WHOLE" in page
    run_id = json.loads(damaged.manifest(day).read_text())["exported_by"]["run_id"]
    quoted = run_id.replace(":", "%3A").replace("+", "%2B")
    assert f'href="../dags/{EXPORT_DAG_ID}/runs/{quoted}"' in page


@needs_pages
@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("{not json", "[asana_audit_log] archives is not valid JSON"),
        ('{"base_path": "/data"}', "[asana_audit_log] archives must be a JSON list of objects"),
        ('[{"path": "/data"}]', "[asana_audit_log] archives: archive 1 needs a base_path"),
        ('[{"base_path": "/data", "settle_period_minutes": "30"}]', "settle_period_minutes must be a number"),
        (
            '[{"base_path": "/data", "since": "2026/09/01"}]',
            "archive 1 (/data): since: time data '2026/09/01'",
        ),
        (
            '[{"base_path": "data/asana"}]',
            "archive 1 (data/asana): base path 'data/asana' is a relative path",
        ),
        ('[{"base_path": "nope://x"}]', "archive 1 (nope://x): Airflow cannot open nope:// paths"),
    ],
)
def test_a_bad_archives_option_says_what_to_change(
    api: Api, monkeypatch: pytest.MonkeyPatch, entry: str, says: str
) -> None:
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", entry)

    for path in (PAGE, API):
        answer = api.get(path, "viewer")
        assert (answer.status_code, answer.headers["content-type"]) == (500, "text/plain; charset=utf-8")
        assert answer.text.startswith("The archive page cannot show the archives: ")
        assert says in answer.text
        assert "Traceback" not in answer.text


@needs_pages
def test_an_archive_that_cannot_be_read_is_named(
    api: Api, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage of the second archive does not answer: the page says which, and why, not only "500"."""
    closed = f"http://127.0.0.1:{free_port()}"
    connection = {
        "conn_type": "aws",
        "login": "key",
        "password": SECRET,
        "extra": {"endpoint_url": closed, "config_kwargs": {"retries": {"max_attempts": 1}}},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_PAGE_CLOSED_S3", json.dumps(connection))
    configured = [
        {"base_path": archive.uri},
        {"base_path": "s3://audit/asana", "conn_id": "asana_page_closed_s3"},
    ]
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", json.dumps(configured))

    answer = api.get(PAGE, "viewer")

    assert answer.status_code == 500
    assert answer.text.startswith(
        "The archive page cannot show the archives: archive 2 (s3://audit/asana) cannot be read: "
    )
    assert closed in answer.text
    assert SECRET not in answer.text
