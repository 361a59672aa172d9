"""
The archive page in the Airflow UI (Airflow 3.1+): a nav entry, "Asana audit archive", opening a page that
the provider's own FastAPI app serves under the API server. Installing the package registers it, through
``get_provider_info()["plugins"]``; on Airflow 2.11 the plugin adds nothing.

Every endpoint asks Airflow's auth manager, as the core API does: a logged-in user (the UI's session
cookie, or a bearer token) who may read DAGs.

.. seealso:: docs/archive-page.md
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.health import ArchiveHealth, archive_health, render_html
from airflow_provider_asana_audit.plugins.archives import configured_archives, newest_report
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_1_PLUS

__all__ = ["URL_PREFIX", "AsanaAuditArchivePlugin", "create_app"]

#: Where the API server mounts the page's app.
URL_PREFIX = "/asana-audit-archive"
TITLE = "Asana audit archive"
_log = logging.getLogger(__name__)


def run_link(dag_id: str, run_id: str) -> str:
    """A DAG run's page in the Airflow UI, relative to the archive page (so that it works behind a proxy)."""
    return f"../dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def archives_health(*, now: datetime | None = None) -> list[ArchiveHealth]:
    """
    The health of every configured archive (``[asana_audit_log] archives``).

    :raises AsanaAuditLogConfigError: for an option that does not parse, or an unusable base path.
    """
    from airflow.configuration import conf

    now = now or datetime.now(timezone.utc)
    found = []
    for entry in configured_archives(conf.get("asana_audit_log", "archives", fallback=None)):
        since = datetime.fromisoformat(entry.since).replace(tzinfo=timezone.utc) if entry.since else None
        found.append(
            archive_health(
                entry.base_path,
                conn_id=entry.conn_id,
                report=newest_report(entry),
                since=since,
                settle_period=entry.settle_period,
                now=now,
                log=_log,
            )
        )
    return found


def create_app() -> Any:
    """The page's FastAPI app: ``/`` the page, ``/api/archives`` the same as JSON."""
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

    app = FastAPI(
        title=TITLE,
        description="The health of the Asana audit log archives: days, volume, problems.",
        dependencies=[Depends(requires_access_dag(method="GET"))],
    )

    def refused(err: Exception) -> PlainTextResponse:
        # A configuration mistake is the administrator's to mend: say which, without a traceback.
        return PlainTextResponse(f"The archive page cannot show the archives: {err}", status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> Any:
        try:
            return HTMLResponse(render_html(archives_health(), run_link=run_link, title=TITLE))
        except (AsanaAuditLogConfigError, ValueError) as err:
            return refused(err)

    @app.get("/api/archives")
    def archives() -> Any:
        try:
            return JSONResponse({"archives": [health.to_json() for health in archives_health()]})
        except (AsanaAuditLogConfigError, ValueError) as err:
            return refused(err)

    return app


class AsanaAuditArchivePlugin(AirflowPlugin):
    """The archive page: its app and its nav entry (Airflow 3.1+ only)."""

    name = "asana_audit_archive"
    if AIRFLOW_V_3_1_PLUS:
        fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": TITLE}]
        external_views = [
            {
                "name": TITLE,
                # Relative, without a leading slash: the UI may be served below a path.
                "href": f"{URL_PREFIX.lstrip('/')}/",
                "destination": "nav",
                "url_route": "asana-audit-archive",
            }
        ]
