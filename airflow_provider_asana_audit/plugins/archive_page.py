"""
The archive page in the Airflow UI (Airflow 3.1+): a nav entry, "Asana audit archive", opening a page that
the provider's own FastAPI app serves under the API server. Installing the package registers it, through
the ``airflow.plugins`` entry point; on Airflow 2.11 (and 3.0) the plugin adds nothing.

Every endpoint asks Airflow's auth manager, as the core API does: a logged-in user (the UI's ``_token``
cookie, or a bearer token) who may read DAGs. The app has no OpenAPI schema or docs pages, which would
otherwise be served to anyone.

Airflow imports every plugin wherever it loads plugins, also in each task's process (for macros and
listeners), so this module imports nothing heavy: the app is built on its first request
(:class:`ArchivePageApp`), and FastAPI, the core API and the archive model are imported then.

.. seealso:: docs/archive-page.md
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import AirflowPlugin

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from fastapi import FastAPI

    from airflow_provider_asana_audit.health import ArchiveHealth
    from airflow_provider_asana_audit.plugins.archives import ArchiveEntry

__all__ = [
    "TITLE",
    "URL_PREFIX",
    "ArchivePageApp",
    "AsanaAuditArchivePlugin",
    "archives_health",
    "create_app",
    "run_link",
]

#: Where the API server mounts the page's app.
URL_PREFIX = "/asana-audit-archive"
#: The nav entry's name and the page's title.
TITLE = "Asana audit archive"
#: What every message of a page that cannot be shown starts with.
CANNOT_SHOW = "The archive page cannot show the archives"
_log = logging.getLogger(__name__)

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def run_link(dag_id: str, run_id: str) -> str:
    """
    A DAG run's page in the Airflow UI (``dags/{dag_id}/runs/{run_id}``), relative to the archive page,
    so that it works behind a proxy that serves Airflow below a path.

    :param dag_id: the DAG's id.
    :param run_id: the run's id (quoted: manual run ids hold ``:`` and ``+``).
    """
    return f"../dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def archives_health(*, now: datetime | None = None) -> list[ArchiveHealth]:
    """
    The health of every configured archive (``[asana_audit_log] archives``), read from its manifests.

    :param now: the reference instant; default this machine's clock.
    :raises AsanaAuditLogConfigError: for an option that does not parse, or an archive whose base path,
        ``since``, report path or storage cannot be used (the message names the archive).
    """
    from airflow.configuration import conf

    from airflow_provider_asana_audit.plugins.archives import configured_archives

    now = now or datetime.now(timezone.utc)
    entries = configured_archives(conf.get("asana_audit_log", "archives", fallback=None))
    return [_health(entry, number, now=now) for number, entry in enumerate(entries, start=1)]


def _health(entry: ArchiveEntry, number: int, *, now: datetime) -> ArchiveHealth:
    """
    The health of one configured archive; any error it meets, as a message that names it.

    :param entry: the archive as the option gives it.
    :param number: its place in the option, from 1.
    :param now: the reference instant.
    """
    from airflow_provider_asana_audit.health import archive_health
    from airflow_provider_asana_audit.plugins.archives import newest_report

    where = f"archive {number} ({entry.base_path})"
    try:
        since = datetime.strptime(entry.since, "%Y-%m-%d") if entry.since else None
    except ValueError as err:  # "time data '...' does not match format '%Y-%m-%d'"
        raise AsanaAuditLogConfigError(f"{where}: since: {err}") from None
    try:
        return archive_health(
            entry.base_path,
            conn_id=entry.conn_id,
            report=newest_report(entry),
            since=since.replace(tzinfo=timezone.utc) if since else None,
            settle_period=entry.settle_period,
            now=now,
            log=_log,
        )
    except AsanaAuditLogConfigError as err:
        raise AsanaAuditLogConfigError(f"{where}: {err}") from None
    except Exception as err:
        # The storage's own error (no such connection, refused, unreachable): said, and logged in full.
        _log.exception("The archive page could not read %s", where)
        raise AsanaAuditLogConfigError(f"{where} cannot be read: {type(err).__name__}: {err}") from None


def create_app() -> FastAPI:
    """The page's FastAPI app: ``/`` the page, ``/api/archives`` the same as JSON; both need a DAG reader."""
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

    from airflow_provider_asana_audit.health import render_html

    app = FastAPI(
        title=TITLE,
        # Served before any dependency runs, so to anyone: none at all.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(requires_access_dag(method="GET"))],
    )

    def refused(err: Exception) -> PlainTextResponse:
        # A configuration mistake is the administrator's to mend: say which, without a traceback.
        return PlainTextResponse(f"{CANNOT_SHOW}: {err}", status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> Any:
        try:
            return HTMLResponse(render_html(archives_health(), run_link=run_link, title=TITLE))
        except AsanaAuditLogConfigError as err:
            return refused(err)

    @app.get("/api/archives")
    def archives() -> Any:
        try:
            return JSONResponse({"archives": [health.to_json() for health in archives_health()]})
        except AsanaAuditLogConfigError as err:
            return refused(err)

    return app


class ArchivePageApp:
    """
    The page's app as the API server mounts it: an ASGI app that builds :func:`create_app` on its first
    request, so that loading the plugin costs nothing where no page is served.
    """

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        """The FastAPI app, built on first use."""
        if self._app is None:
            self._app = create_app()
        return self._app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        await self.app(scope, receive, send)


class AsanaAuditArchivePlugin(AirflowPlugin):  # type: ignore[misc,unused-ignore]
    """The archive page: its app and its nav entry (Airflow 3.1+ only)."""

    name = "asana_audit_archive"
    if AIRFLOW_V_3_1_PLUS:
        fastapi_apps = [{"app": ArchivePageApp(), "url_prefix": URL_PREFIX, "name": TITLE}]
        external_views = [
            {
                "name": TITLE,
                # Relative, without a leading slash: the UI may be served below a path.
                "href": f"{URL_PREFIX.lstrip('/')}/",
                "destination": "nav",
                # The UI shows the page in a frame at plugin/<url_route>.
                "url_route": URL_PREFIX.lstrip("/"),
            }
        ]
