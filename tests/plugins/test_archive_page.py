"""
The archive page's endpoints (Airflow 3.1+), through the API server's own app (``create_app``, which
mounts the plugins that providers register) and FastAPI's test client, with Airflow's simple auth manager
and real JWTs: refused without a login and to a user who may not read DAGs, served to a viewer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_1_PLUS

pytestmark = pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="plugin pages are Airflow 3.1+ only")

from airflow_provider_asana_audit.get_provider_info import get_provider_info  # noqa: E402
from airflow_provider_asana_audit.plugins.archive_page import (  # noqa: E402
    URL_PREFIX,
    AsanaAuditArchivePlugin,
)
from tests.helpers.archive import Archive, read_export  # noqa: E402

PAGE = f"{URL_PREFIX}/"
API = f"{URL_PREFIX}/api/archives"


@pytest.fixture(scope="module")
def api(airflow_db: Path) -> Iterator[Any]:
    """
    The API server's app with the simple auth manager (not in all-admins mode, where even anonymous
    requests pass), and an auth manager that lets ``nodags`` log in but read no DAG.
    """
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from fastapi.testclient import TestClient

    class NoDagsForSome(SimpleAuthManager):  # type: ignore[misc]
        def is_authorized_dag(self, *, method: Any, user: Any, **kwargs: Any) -> bool:
            return user.get_name() != "nodags" and bool(
                super().is_authorized_dag(method=method, user=user, **kwargs)
            )

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.NoDagsForSome")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "viewer:viewer,nodags:viewer")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret-of-the-archive-page-tests")
        globals()["NoDagsForSome"] = NoDagsForSome
        from airflow.api_fastapi import app as api_app

        api_app.purge_cached_app()
        app = api_app.create_app(apps="core")
        with TestClient(app) as client:
            yield client
        api_app.purge_cached_app()


def _token(name: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token: str = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role="viewer"))
    return token


def _get(api: Any, path: str, user: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {_token(user)}"} if user else {}
    return api.get(path, headers=headers, **kwargs)


def test_installing_the_package_registers_the_page_with_airflow() -> None:
    from airflow import plugins_manager

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "asana_audit_archive"]
    assert entry.load() is AsanaAuditArchivePlugin
    apps, _ = plugins_manager.get_fastapi_plugins()  # type: ignore[attr-defined,unused-ignore]
    assert [app["url_prefix"] for app in apps if app["name"] == "Asana audit archive"] == [URL_PREFIX]
    assert "plugins" not in get_provider_info(), "loaded only with lazy_discover_providers=False"


@pytest.mark.parametrize("path", [PAGE, API])
def test_an_anonymous_request_is_refused(api: Any, path: str) -> None:
    assert _get(api, path).status_code == 401


@pytest.mark.parametrize("path", [PAGE, API])
def test_a_user_who_may_not_read_dags_is_refused(api: Any, path: str) -> None:
    assert _get(api, path, "nodags").status_code == 403


def test_a_forged_token_is_refused(api: Any) -> None:
    response = api.get(API, headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code in (401, 403)


def test_a_viewer_sees_each_configured_archive(
    api: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configured = [{"base_path": archive.uri}, {"base_path": f"file://{tmp_path}/empty"}]
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", json.dumps(configured))

    listed = _get(api, API, "viewer")
    page = _get(api, PAGE, "viewer")

    assert listed.status_code == 200
    first, second = listed.json()["archives"]
    assert first["base"] == archive.uri
    assert first["series"][0]["counts"]["whole"] == len(archive.days)
    assert second["series"] == []
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count('role="gridcell"') == len(first["series"][0]["cells"])
    assert 'href="../dags/example_asana_audit_export/runs/' not in page.text  # all whole: no run listed
    # The page shows counts, hashes and paths: never an event.
    for file in archive.files():
        for event in read_export(file):
            assert event["gid"] not in listed.text + page.text


def test_the_page_cookie_of_the_ui_is_enough(
    api: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", json.dumps([{"base_path": archive.uri}]))
    api.cookies.set("_token", _token("viewer"))
    try:
        assert api.get(PAGE).status_code == 200
    finally:
        api.cookies.clear()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{not json", "is not valid JSON"),
        ('{"base_path": "/data"}', "must be a JSON list of objects"),
        ('[{"path": "/data"}]', "needs a base_path"),
        ('[{"base_path": "/data", "settle_period_minutes": "30"}]', "settle_period_minutes must be a number"),
    ],
)
def test_a_bad_archives_option_is_named_with_what_to_change(
    api: Any, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", value)

    for path in (PAGE, API):
        response = _get(api, path, "viewer")
        assert response.status_code == 500
        assert "[asana_audit_log] archives" in response.text
        assert says in response.text
        assert "Traceback" not in response.text


def test_the_newest_report_of_a_folder_is_shown_with_its_problems(
    api: Any, damaged: Archive, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_asana_audit.verify import verify_archive

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "2026-01-01.json").write_text(json.dumps(verify_archive(damaged.uri).to_json()))
    file = damaged.file(damaged.days[3])
    file.write_bytes(file.read_bytes()[:100])
    (reports / "2026-01-02.json").write_text(json.dumps(verify_archive(damaged.uri).to_json()))
    configured = [{"base_path": damaged.uri, "report_path": f"file://{reports}/"}]
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__ARCHIVES", json.dumps(configured))

    (shown,) = _get(api, API, "viewer").json()["archives"]

    assert shown["check"]["whole"] is False
    cell = shown["series"][0]["cells"][3]
    assert cell["state"] == "damaged"
    page = _get(api, PAGE, "viewer").text
    assert "NOT WHOLE" in page
    assert 'href="../dags/example_asana_audit_export/runs/' in page
