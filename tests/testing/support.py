"""
What the stand-in's tests share: a naive HTTP client, an event builder and a deadline wait.

The client is deliberately not the provider's: these tests pin the stand-in itself, the oracle every
other test relies on, so they talk to it over real HTTP with nothing but ``requests``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from tests.helpers.waiting import DEADLINE, wait_until

__all__ = [
    "DEADLINE",
    "DOCUMENTED_EVENT_TYPES",
    "INVALID_OFFSET",
    "NaiveClient",
    "error_of",
    "now_hour",
    "plain_event",
    "wait_until",
]

#: Asana's message for an offset it refuses, spelled out here rather than imported: it is the oracle.
INVALID_OFFSET = "offset: Your pagination token is invalid."
#: Asana's documented ``event_type`` -> category heading, copied from Asana's "Audit log events" page.
DOCUMENTED_EVENT_TYPES: dict[str, str] = json.loads(
    (Path(__file__).with_name("documented_event_types.json")).read_text(encoding="utf-8")
)["event_types"]


def now_hour() -> datetime:
    """Now, floored to the hour: inside the stand-in's default generated range and Asana's retention."""
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def plain_event(gid: int, created_at: datetime, **fields: Any) -> dict[str, Any]:
    """A minimal event of Asana's shape, with ``fields`` replacing its top-level keys."""
    event: dict[str, Any] = {
        "gid": str(gid),
        "created_at": format_instant(created_at),
        "event_type": "task_deleted",
        "event_category": "deletion",
        "actor": {"actor_type": "user", "gid": "1200000000000033", "name": "Backup Bot", "email": "b@x.io"},
        "resource": {"resource_type": "task", "resource_subtype": "default_task", "gid": "1206000000000444"},
        "details": {},
        "context": {"context_type": "api"},
    }
    event.update(fields)
    return event


def error_of(response: requests.Response) -> dict[str, str]:
    """The single error of Asana's envelope ``{"errors": [{"message": ..., "help": ...}]}``."""
    body = response.json()
    assert set(body) == {"errors"}
    (error,) = body["errors"]
    assert {"message", "help"} <= set(error)
    return dict(error)


class NaiveClient:
    """The simplest reader: follow ``next_page.offset`` until a page comes back empty."""

    def __init__(self, fake: FakeAsana, token: str | None = None) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token if token is not None else fake.token}"
        self.url = f"{fake.base_url}/workspaces/{fake.workspace_gid}/audit_log_events"

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def get(self, url: str | None = None, **params: Any) -> requests.Response:
        """One request to the events route (or ``url``) with ``params``."""
        return self.session.get(url or self.url, params=params, timeout=DEADLINE)

    def page(self, **params: Any) -> dict[str, Any]:
        """One page, which must be a 200."""
        response = self.get(**params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def offset(self, **params: Any) -> str:
        """The ``next_page.offset`` of a first page of two events."""
        offset: str = self.page(limit=2, **params)["next_page"]["offset"]
        return offset

    def read_all(self, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Every event for ``params``, and the ``next_page`` of the last (empty) page."""
        events: list[dict[str, Any]] = []
        body = self.page(**params)
        while body["data"] and body["next_page"] is not None:
            events.extend(body["data"])
            body = self.page(**params, offset=body["next_page"]["offset"])
        events.extend(body["data"])
        return events, body["next_page"]
