"""
Deterministic, realistic Asana audit log events for the stand-in.

The events have exactly the shape of Asana's ``AuditLogEvent`` (see ``FIELD-NOTES.md``): a unique
16-digit ``gid``, a millisecond ``created_at`` in UTC, an ``event_type`` with its ``event_category``,
an ``actor`` of any of the five actor types, a ``resource``, ``details`` and ``context``. Names use
non-ASCII characters on purpose, and a few percent of the events share their ``created_at`` with
others (groups of 2 to 5 at the same millisecond), so clients that page or de-duplicate by
timestamp alone are caught out.

Only the standard library is used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

__all__ = [
    "ACTOR_TYPES",
    "DEFAULT_WORKSPACE_GID",
    "EVENT_TYPES",
    "EventType",
    "generate_events",
    "make_event",
]

#: The workspace the stand-in serves unless told otherwise.
DEFAULT_WORKSPACE_GID = "1200000000000001"
#: The actor types Asana documents, in the order of the spec.
ACTOR_TYPES: tuple[str, ...] = ("user", "asana", "asana_support", "anonymous", "external_administrator")


@dataclass(frozen=True)
class EventType:
    """
    One kind of audit event.

    :param name: the ``event_type``.
    :param category: the ``event_category``.
    :param resource_type: the ``resource.resource_type`` of such events.
    :param weight: relative frequency.
    :param change: ``(old, new)`` value choices put into ``details`` for ``*_changed`` events.
    """

    name: str
    category: str
    resource_type: str
    weight: float = 1.0
    change: tuple[tuple[str, ...], tuple[str, ...]] | None = None


_PRIVACY = ("private", "public_to_workspace", "private_to_team")
_ROLES = ("member", "admin", "super_admin", "guest", "limited_access_member")

#: A realistic selection of Asana's audit event types across categories. Asana keeps adding types,
#: so clients must never validate against a closed list; this list is for generation only.
EVENT_TYPES: tuple[EventType, ...] = (
    EventType("user_login_succeeded", "logins", "user", 30),
    EventType("user_login_failed", "logins", "user", 6),
    EventType("user_logged_out", "logins", "user", 10),
    EventType("user_session_revoked", "logins", "user", 1),
    EventType("task_deleted", "deletion", "task", 8),
    EventType("project_deleted", "deletion", "project", 1.5),
    EventType("portfolio_deleted", "deletion", "portfolio", 0.5),
    EventType("attachment_deleted", "deletion", "attachment", 2),
    EventType("team_deleted", "deletion", "team", 0.3),
    EventType("file_downloaded", "content_export", "attachment", 6),
    EventType("attachment_downloaded", "content_export", "attachment", 5),
    EventType("workspace_export_started", "content_export", "workspace", 0.3),
    EventType("project_exported", "content_export", "project", 1),
    EventType("project_privacy_changed", "access_control", "project", 2, (_PRIVACY, _PRIVACY)),
    EventType("team_privacy_changed", "access_control", "team", 0.6, (_PRIVACY, _PRIVACY)),
    EventType("project_sharing_link_created", "access_control", "project", 0.8),
    EventType("user_added_to_workspace", "user_access", "user", 2),
    EventType("user_removed_from_workspace", "user_access", "user", 1),
    EventType("user_deprovisioned", "user_access", "user", 0.5),
    EventType("user_invited_to_workspace", "user_access", "user", 1.5),
    EventType("team_member_added", "permissions", "team", 3),
    EventType("team_member_removed", "permissions", "team", 1.5),
    EventType("project_member_added", "permissions", "project", 3),
    EventType("admin_role_changed", "admin_settings", "user", 0.4, (_ROLES, _ROLES)),
    EventType(
        "workspace_require_two_factor_auth_changed",
        "admin_settings",
        "workspace",
        0.2,
        (("false",), ("true",)),
    ),
    EventType(
        "workspace_session_duration_changed",
        "admin_settings",
        "workspace",
        0.2,
        (("30 days", "7 days"), ("12 hours", "24 hours")),
    ),
    EventType("app_installed", "apps", "app", 0.8),
    EventType("app_uninstalled", "apps", "app", 0.4),
    EventType("service_account_created", "apps", "service_account", 0.2),
    EventType("personal_access_token_created", "apps", "user", 0.7),
    EventType("user_email_changed", "user_settings", "user", 0.3),
    EventType("user_two_factor_auth_enabled", "user_settings", "user", 0.5),
)
_TYPES_BY_NAME = {t.name: t for t in EVENT_TYPES}

_USERS: tuple[tuple[str, str, str], ...] = (
    ("1200000000000033", "Backup Bot", "svc@example.com"),
    ("1200000000000101", "Zoë Ångström", "zoe.angstrom@example.com"),
    ("1200000000000102", "Renée O'Connor", "renee@example.com"),
    ("1200000000000103", "José Núñez", "jose.nunez@example.com"),
    ("1200000000000104", "李雷", "li.lei@example.cn"),
    ("1200000000000105", "Ольга Иванова", "olga@example.ru"),
    ("1200000000000106", "Ahmed Al-Farsi", "ahmed@example.com"),
    ("1200000000000107", "Björk Guðmundsdóttir", "bjork@example.is"),
    ("1200000000000108", "Priya Raman", "priya@example.in"),
    ("1200000000000109", 'Sam "Ops" Lee 🛠️', "sam.lee@example.com"),
    ("1200000000000110", "田中 花子", "hanako.tanaka@example.jp"),
    ("1200000000000111", "Chloé Dubois", "chloe@example.fr"),
)
_NAMES: dict[str, tuple[str, ...]] = {
    "task": (
        "Q3 launch",
        "Fix login 🐛",
        "Préparer la réunion",
        "東京チーム offsite",
        "Budget 2025 — draft",
        "Review vendor contract",
        "Ship 🚀 v2",
        "Onboard Zoë",
        "Über-Planung",
        "Close books (März)",
    ),
    "project": ("Roadmap 2025", "東京チーム", "Security review 🔒", "Équipe Marketing", "Hiring"),
    "portfolio": ("Company OKRs", "Produkt-Portfolio", "Launches ✨"),
    "team": ("東京チーム", "Équipe Marketing", "Data 🚀", "Platform", "Ventes & Partenariats"),
    "attachment": ("contract.pdf", "Q3 numbers.xlsx", "Zoë's notes.docx", "図面.png", "roadmap 🗺️.key"),
    "app": ("Slack", "Google Drive", "Jira Cloud", "Zapier", "Tableau"),
    "service_account": ("SIEM export", "Backup Bot", "Audit 🔍 collector"),
}
_SUBTYPES: dict[str, tuple[str, ...]] = {
    "task": ("default_task", "default_task", "default_task", "milestone", "approval"),
    "project": ("default",),
    "portfolio": ("default",),
    "team": ("default",),
    "attachment": ("asana", "asana", "dropbox", "gdrive", "box", "onedrive"),
    "app": ("default",),
    "service_account": ("default",),
    "user": ("default",),
    "workspace": ("organization",),
}
_USER_AGENTS: dict[str, tuple[str, ...]] = {
    "web": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    ),
    "desktop": ("Asana/2.3.0 (Macintosh; Electron 29)", "Asana/2.3.1 (Windows; Electron 29)"),
    "mobile": ("Asana/8.12 (iPhone; iOS 17.4)", "Asana/8.11 (Android 14; Pixel 8)"),
    "api": ("python-requests/2.32", "asana-python/5.0.7", "Zapier", "curl/8.7.1"),
}
_API_AUTH = ("service_account", "personal_access_token", "oauth", "cookie")
_CONTEXT_TYPES = ("web", "desktop", "mobile", "api")
_CONTEXT_WEIGHTS = (60, 15, 10, 15)
# user, asana, asana_support, anonymous, external_administrator
_ACTOR_WEIGHTS = (90, 3, 2, 3, 2)


def _resource_gid(resource_type: str, index: int) -> str:
    base = {
        "task": 1206000000000000,
        "project": 1205000000000000,
        "portfolio": 1204000000000000,
        "team": 1203000000000000,
        "attachment": 1204500000000000,
        "app": 1202000000000000,
        "service_account": 1201000000000000,
    }[resource_type]
    return str(base + 101 + index * 37)


def _actor(rng: random.Random, event_type: EventType) -> dict[str, Any]:
    if event_type.name == "user_login_failed" and rng.random() < 0.5:
        actor_type = "anonymous"
    elif event_type.category == "logins":
        actor_type = "user"
    else:
        actor_type = rng.choices(ACTOR_TYPES, weights=_ACTOR_WEIGHTS)[0]
    if actor_type == "user":
        gid, name, email = rng.choice(_USERS)
        return {"actor_type": "user", "gid": gid, "name": name, "email": email}
    if actor_type == "asana":
        return {"actor_type": "asana", "name": "Asana"}
    if actor_type == "asana_support":
        return {"actor_type": "asana_support", "name": "Asana Support"}
    if actor_type == "external_administrator":
        return {"actor_type": "external_administrator", "name": "External administrator (SCIM)"}
    return {"actor_type": "anonymous"}


def _resource(rng: random.Random, event_type: EventType, workspace_gid: str) -> dict[str, Any]:
    kind = event_type.resource_type
    subtype = rng.choice(_SUBTYPES[kind])
    if kind == "workspace":
        return {
            "resource_type": kind,
            "resource_subtype": subtype,
            "gid": workspace_gid,
            "name": "Acme Corp 🌍",
        }
    if kind == "user":
        gid, name, email = rng.choice(_USERS)
        return {"resource_type": kind, "resource_subtype": subtype, "gid": gid, "name": name, "email": email}
    names = _NAMES[kind]
    index = rng.randrange(len(names))
    return {
        "resource_type": kind,
        "resource_subtype": subtype,
        "gid": _resource_gid(kind, index),
        "name": names[index],
    }


def _context(rng: random.Random, actor: dict[str, Any]) -> dict[str, Any]:
    actor_type = actor["actor_type"]
    if actor_type == "asana":
        return {"context_type": "asana"}
    if actor_type == "asana_support":
        return {"context_type": "asana_support"}
    ip = f"198.51.100.{rng.randrange(1, 255)}" if rng.random() < 0.7 else f"203.0.113.{rng.randrange(1, 255)}"
    if actor_type == "external_administrator":
        return {
            "context_type": "api",
            "api_authentication_method": "oauth",
            "client_ip_address": ip,
            "user_agent": "Okta SCIM 2.0",
            "oauth_app_name": "Okta",
        }
    context_type = rng.choices(_CONTEXT_TYPES, weights=_CONTEXT_WEIGHTS)[0]
    context: dict[str, Any] = {"context_type": context_type}
    if context_type == "api":
        method = rng.choice(_API_AUTH)
        context["api_authentication_method"] = method
        if method == "oauth":
            context["oauth_app_name"] = rng.choice(_NAMES["app"])
    context["client_ip_address"] = ip
    context["user_agent"] = rng.choice(_USER_AGENTS[context_type])
    return context


def _details(rng: random.Random, event_type: EventType) -> dict[str, Any]:
    if event_type.change is not None:
        olds, news = event_type.change
        old = rng.choice(olds)
        new_choices = [v for v in news if v != old] or list(news)
        return {"old_value": old, "new_value": rng.choice(new_choices)}
    if event_type.category == "logins" and event_type.name != "user_logged_out":
        return {"method": rng.choice(("password", "google_sso", "saml", "saml", "magic_link"))}
    if event_type.name in ("team_member_added", "project_member_added") and rng.random() < 0.5:
        gid, name, _email = rng.choice(_USERS)
        return {"group": {"gid": gid, "name": name, "resource_type": "user"}}
    return {}


def make_event(
    rng: random.Random,
    *,
    gid: str,
    created_at: datetime | str,
    event_type: str | None = None,
    workspace_gid: str = DEFAULT_WORKSPACE_GID,
) -> dict[str, Any]:
    """
    Build one realistic audit event.

    :param rng: the source of randomness (pass a seeded ``random.Random`` for determinism).
    :param gid: the event's gid, a string of digits.
    :param created_at: the event's instant; formatted with millisecond precision (microseconds are
        truncated to the millisecond).
    :param event_type: the ``event_type``; a random realistic one when ``None``. Unknown types are
        accepted (category ``other``, resource ``task``), as Asana keeps adding types.
    :param workspace_gid: the workspace, used as the resource of workspace-level events.
    :return: a plain JSON-serialisable dict.
    """
    if event_type is None:
        kind = rng.choices(EVENT_TYPES, weights=[t.weight for t in EVENT_TYPES])[0]
    else:
        kind = _TYPES_BY_NAME.get(event_type) or EventType(event_type, "other", "task")
    instant = parse_instant(created_at, name="created_at")
    instant = instant.replace(microsecond=instant.microsecond - instant.microsecond % 1000)
    actor = _actor(rng, kind)
    return {
        "gid": gid,
        "created_at": format_instant(instant),
        "event_type": kind.name,
        "event_category": kind.category,
        "actor": actor,
        "resource": _resource(rng, kind, workspace_gid),
        "details": _details(rng, kind),
        "context": _context(rng, actor),
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _epoch_us(value: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding)."""
    return (value - _EPOCH) // timedelta(microseconds=1)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return parse_instant(value)


def generate_events(
    *,
    seed: int,
    start: datetime,
    end: datetime,
    per_day: int = 200,
    workspace_gid: str = DEFAULT_WORKSPACE_GID,
) -> list[dict[str, Any]]:
    """
    Generate a deterministic list of audit events in ``[start, end)``.

    The same arguments always give the same events. About ``per_day`` events are generated per day
    of the range (exactly ``round(per_day * days)``), denser in working hours. A few percent of them
    come in groups of 2 to 5 sharing one ``created_at`` (at least one group whenever there are two
    events or more). The result is sorted the way the server serves it: by ``(created_at, int(gid))``;
    gids are unique, 16 digits, and grow with time as Asana's do.

    :param seed: the random seed.
    :param start: first instant of the range (inclusive); naive datetimes are taken as UTC.
    :param end: end of the range (exclusive).
    :param per_day: average number of events per day.
    :param workspace_gid: the workspace the events belong to.
    :return: a list of plain JSON-serialisable dicts.
    """
    start_utc, end_utc = _as_utc(start), _as_utc(end)
    if per_day < 0:
        raise ValueError(f"per_day must be >= 0, not {per_day}")
    if end_utc <= start_utc:
        return []
    rng = random.Random(f"asana-audit-standin:{seed}")
    # Whole milliseconds: the first one at or after start, the span up to end (exclusive).
    first_ms = -(-_epoch_us(start_utc) // 1000)
    last_ms = -(-_epoch_us(end_utc) // 1000) - 1
    if last_ms < first_ms:
        return []
    days = (end_utc - start_utc) / timedelta(days=1)
    count = round(per_day * days)

    stamps: list[int] = []
    while len(stamps) < count:
        ms = rng.randint(first_ms, last_ms)
        hour = (ms // 3_600_000) % 24
        if 7 <= hour < 19 or rng.random() < 0.35:
            stamps.append(ms)
    stamps.sort()

    # Groups of 2-5 events sharing one millisecond: a few percent of all events.
    grouped = False
    i = 0
    while i < len(stamps):
        if rng.random() < 0.012 and i + 1 < len(stamps):
            size = min(rng.randint(2, 5), len(stamps) - i)
            stamps[i : i + size] = [stamps[i]] * size
            grouped = True
            i += size
        else:
            i += 1
    if not grouped and len(stamps) >= 2:
        i = rng.randrange(len(stamps) - 1)
        stamps[i + 1] = stamps[i]
    stamps.sort()

    gid = 1_207_000_000_000_000 + rng.randrange(100_000_000)
    events = []
    for ms in stamps:
        gid += rng.randint(1, 5_000)
        instant = _EPOCH + timedelta(milliseconds=ms)
        events.append(make_event(rng, gid=str(gid), created_at=instant, workspace_gid=workspace_gid))
    return events
