"""
Deterministic, realistic Asana audit log events for the stand-in.

The events have the shape of ``AuditLogEvent`` in Asana's OpenAPI spec: a unique 16-digit ``gid``,
a millisecond ``created_at`` in UTC, an ``event_type`` Asana documents with its ``event_category``
(see :mod:`~airflow_provider_asana_audit.testing.vocabulary`), an ``actor``, a ``resource``,
``details`` and ``context``. The optional parts follow the spec:

* ``actor.gid``, ``name`` and ``email`` are there only for ``actor_type: user`` ("if it is a user").
* Most resources have no ``resource_subtype`` ("Most resources will not have a subtype"); tasks,
  attachments, stories, custom fields and status updates carry the subtype those objects have in
  Asana's API (``milestone``, ``gdrive``, ``comment_added``, ...). ``resource.name`` is sometimes
  ``null`` (the spec marks it nullable).
* ``details.old_value`` / ``new_value`` (``*_changed`` events) are sometimes ``null`` (nullable in
  the spec); ``details.group``, "the division or organizational unit where the event occurred", is
  a compact division on division role changes; login events carry ``details.saml_response``
  (nullable; a string for SAML logins).
* ``context.context_type`` is one of the spec's seven values, ``email`` included; automation rules
  (actor ``asana``) sometimes name themselves in ``context.rule_name``, and Asana Support acting for a
  user sometimes gives ``context.on_behalf_of_user_id``, an integer.

Names use non-ASCII characters on purpose, and a few percent of the events share their
``created_at`` with others (groups of 2 to 5 at the same millisecond), so clients that page or
de-duplicate by timestamp alone are caught out.

Only the standard library is used.
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timezone
from typing import Any

from airflow_provider_asana_audit.testing.instants import datetime_us, format_us, instant_us
from airflow_provider_asana_audit.testing.vocabulary import ACTOR_TYPES, EVENT_TYPES, EventType

__all__ = [
    "DEFAULT_WORKSPACE_GID",
    "generate_events",
    "make_event",
]

#: The workspace the stand-in serves unless told otherwise.
DEFAULT_WORKSPACE_GID = "1200000000000001"

_DAY_US = 86_400_000_000
_TYPES_BY_NAME = {t.name: t for t in EVENT_TYPES}
# Cumulative weights, computed once: random.choices would otherwise sum them for every event.
_TYPE_CUM_WEIGHTS = tuple(itertools.accumulate(t.weight for t in EVENT_TYPES))
# user, asana, asana_support, anonymous, external_administrator (for events other than logins)
_ACTOR_CUM_WEIGHTS = tuple(itertools.accumulate((90, 3, 2, 3, 2)))
_CONTEXT_TYPES = ("web", "desktop", "mobile", "api", "email")
_CONTEXT_CUM_WEIGHTS = tuple(itertools.accumulate((58, 15, 10, 15, 2)))

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
    "goal": ("Grow ARR 20%", "Réduire le churn", "Ship SOC 2 🔒"),
    "custom_field": ("Priority", "Estimated hours", "Statut", "顧客"),
    "message": ("All-hands notes", "Welcome Zoë 🎉", "Changement de planning"),
    "story": ("Looks good to me 👍", "Can we move this to Friday?", "Voir la pièce jointe"),
    "status_update": ("Weekly status: on track", "Q3 at risk ⚠️", "Statut de la semaine"),
    "task_template": ("Bug report 🐛", "Onboarding checklist", "Demande d'achat"),
    "project_template": ("Product launch", "Sprint 🚀", "Planification annuelle"),
    "workspace_announcement": ("Maintenance on Saturday 🛠️", "New SSO policy", "Bienvenue !"),
    "division": ("EMEA 🌍", "Engineering", "Ventes Amériques"),
    "search": ("Overdue tasks", "Tâches de l'équipe", "My open approvals ✅"),
}
# The subtypes these objects have in Asana's API; other resources carry no resource_subtype.
_SUBTYPES: dict[str, tuple[str, ...]] = {
    "task": ("default_task", "default_task", "default_task", "default_task", "milestone", "approval"),
    "attachment": ("asana", "asana", "asana", "gdrive", "dropbox", "box", "onedrive"),
    "story": ("comment_added",),
    "custom_field": ("text", "enum", "number", "multi_enum", "people"),
    "status_update": ("project_status_update", "portfolio_status_update", "goal_status_update"),
}
_GID_BASES = {
    "task": 1206000000000000,
    "project": 1205000000000000,
    "portfolio": 1204000000000000,
    "attachment": 1204500000000000,
    "team": 1203000000000000,
    "goal": 1203500000000000,
    "custom_field": 1202500000000000,
    "message": 1202600000000000,
    "story": 1202700000000000,
    "status_update": 1202800000000000,
    "task_template": 1202900000000000,
    "project_template": 1202950000000000,
    "workspace_announcement": 1201500000000000,
    "division": 1201600000000000,
    "search": 1201700000000000,
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
_OAUTH_APPS = ("Slack", "Google Drive", "Jira Cloud", "Zapier", "Tableau")
_RULES = (
    "When Task is added to this project",
    "When task is completed, delete it",
    "Quand une tâche est en retard 🔔",
)
_LOGIN_TYPES = frozenset({"user_login_succeeded", "user_login_failed"})
_WORKSPACE_NAME = "Acme Corp 🌍"


def _named(rng: random.Random, resource_type: str) -> dict[str, Any]:
    names = _NAMES[resource_type]
    index = rng.randrange(len(names))
    return {
        "resource_type": resource_type,
        "gid": str(_GID_BASES[resource_type] + 101 + index * 37),
        "name": names[index],
    }


def _user(key: str, value: str, user: tuple[str, str, str]) -> dict[str, Any]:
    """A user as an actor (``key="actor_type"``) or as a resource (``key="resource_type"``)."""
    gid, name, email = user
    return {key: value, "gid": gid, "name": name, "email": email}


def _actor(rng: random.Random, kind: EventType) -> dict[str, Any]:
    if kind.category == "logins":
        anonymous = kind.name == "user_login_failed" and rng.random() < 0.5
        actor_type = "anonymous" if anonymous else "user"
    else:
        actor_type = rng.choices(ACTOR_TYPES, cum_weights=_ACTOR_CUM_WEIGHTS)[0]
    if actor_type == "user":
        return _user("actor_type", "user", rng.choice(_USERS))
    return {"actor_type": actor_type}  # the spec gives gid, name and email for users only


def _resource(
    rng: random.Random, kind: EventType, actor: dict[str, Any], workspace_gid: str
) -> dict[str, Any]:
    resource_type = kind.resource_type
    if resource_type == "workspace":
        return {"resource_type": "workspace", "gid": workspace_gid, "name": _WORKSPACE_NAME}
    if resource_type == "user":
        if kind.category == "logins" and actor["actor_type"] == "user":  # users log themselves in
            return _user("resource_type", "user", (actor["gid"], actor["name"], actor["email"]))
        return _user("resource_type", "user", rng.choice(_USERS))
    resource = _named(rng, resource_type)
    subtypes = _SUBTYPES.get(resource_type)
    if subtypes is not None:
        resource = {"resource_type": resource_type, "resource_subtype": rng.choice(subtypes), **resource}
    if rng.random() < 0.03:  # e.g. permanently deleted objects whose name is gone
        resource["name"] = None
    return resource


def _context(rng: random.Random, actor: dict[str, Any]) -> dict[str, Any]:
    actor_type = actor["actor_type"]
    if actor_type == "asana":
        context: dict[str, Any] = {"context_type": "asana"}
        if rng.random() < 0.4:
            context["rule_name"] = rng.choice(_RULES)
        return context
    if actor_type == "asana_support":
        context = {"context_type": "asana_support"}
        if rng.random() < 0.6:
            context["on_behalf_of_user_id"] = int(rng.choice(_USERS)[0])
        return context
    ip = f"198.51.100.{rng.randrange(1, 255)}" if rng.random() < 0.7 else f"203.0.113.{rng.randrange(1, 255)}"
    if actor_type == "external_administrator":
        return {
            "context_type": "api",
            "api_authentication_method": "oauth",
            "client_ip_address": ip,
            "user_agent": "Okta SCIM 2.0",
            "oauth_app_name": "Okta",
        }
    context_type = rng.choices(_CONTEXT_TYPES, cum_weights=_CONTEXT_CUM_WEIGHTS)[0]
    context = {"context_type": context_type}
    if context_type == "email":  # e.g. a task deleted by replying to a notification
        return context
    if context_type == "api":
        method = rng.choice(_API_AUTH)
        context["api_authentication_method"] = method
        if method == "oauth":
            context["oauth_app_name"] = rng.choice(_OAUTH_APPS)
    context["client_ip_address"] = ip
    context["user_agent"] = rng.choice(_USER_AGENTS[context_type])
    return context


def _details(rng: random.Random, kind: EventType) -> dict[str, Any]:
    if kind.change is not None:
        olds, news = kind.change
        old: str | None = rng.choice(olds)
        new: str | None = rng.choice([v for v in news if v != old] or list(news))
        draw = rng.random()
        if draw < 0.04:  # set for the first time
            old = None
        elif draw < 0.06:  # cleared
            new = None
        details: dict[str, Any] = {"old_value": old, "new_value": new}
        if kind.name == "user_division_admin_role_changed":
            details["group"] = _named(rng, "division")
        return details
    if kind.name in _LOGIN_TYPES:
        saml = rng.random() < 0.25
        return {"saml_response": f"PHNhbWxwOlJlc3BvbnNl{rng.getrandbits(64):016x}" if saml else None}
    return {}


def _event(
    rng: random.Random, *, gid: str, created_at: str, kind: EventType, workspace_gid: str
) -> dict[str, Any]:
    actor = _actor(rng, kind)
    return {
        "gid": gid,
        "created_at": created_at,
        "event_type": kind.name,
        "event_category": kind.category,
        "actor": actor,
        "resource": _resource(rng, kind, actor, workspace_gid),
        "details": _details(rng, kind),
        "context": _context(rng, actor),
    }


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
    :param event_type: the ``event_type``; a random documented one when ``None``. Unknown types are
        accepted (category ``other``, resource ``task``), as Asana keeps adding types.
    :param workspace_gid: the workspace, used as the resource of workspace-level events.
    :return: a plain JSON-serialisable dict.
    """
    if event_type is None:
        kind = rng.choices(EVENT_TYPES, cum_weights=_TYPE_CUM_WEIGHTS)[0]
    else:
        kind = _TYPES_BY_NAME.get(event_type) or EventType(event_type, "other", "task")
    created_us = instant_us(created_at, name="created_at")
    return _event(rng, gid=gid, created_at=format_us(created_us), kind=kind, workspace_gid=workspace_gid)


def _naive_as_utc_us(value: datetime) -> int:
    return datetime_us(value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc))


def generate_events(
    *,
    seed: int,
    start: datetime,
    end: datetime,
    per_day: int = 200,
    workspace_gid: str = DEFAULT_WORKSPACE_GID,
    count: int | None = None,
) -> list[dict[str, Any]]:
    """
    Generate a deterministic list of audit events in ``[start, end)``.

    The same arguments always give the same events. About ``per_day`` events are generated per day
    of the range (exactly ``round(per_day * days)``, or exactly ``count``), denser in working hours.
    A few percent of them come in groups of 2 to 5 sharing one ``created_at`` (at least one group
    whenever there are two events or more). The result is sorted the way the server serves it: by
    ``(created_at, int(gid))``; gids are unique, 16 digits, and grow with time as Asana's do.

    :param seed: the random seed.
    :param start: first instant of the range (inclusive); naive datetimes are taken as UTC.
    :param end: end of the range (exclusive).
    :param per_day: average number of events per day.
    :param workspace_gid: the workspace the events belong to.
    :param count: the exact number of events, instead of ``per_day``.
    :return: a list of plain JSON-serialisable dicts.
    """
    start_us, end_us = _naive_as_utc_us(start), _naive_as_utc_us(end)
    if per_day < 0:
        raise ValueError(f"per_day must be >= 0, not {per_day}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    if end_us <= start_us:
        return []
    rng = random.Random(f"asana-audit-standin:{seed}")
    # Whole milliseconds: the first one at or after start, the span up to end (exclusive).
    first_ms = -(-start_us // 1000)
    span_ms = -(-end_us // 1000) - first_ms
    if span_ms <= 0:
        return []
    if count is None:
        count = round(per_day * ((end_us - start_us) / _DAY_US))

    stamps: list[int] = []
    random_ = rng.random
    while len(stamps) < count:
        ms = first_ms + int(random_() * span_ms)
        hour = (ms // 3_600_000) % 24
        if 7 <= hour < 19 or random_() < 0.35:  # busier in (UTC) working hours
            stamps.append(ms)
    stamps.sort()

    # Groups of 2-5 events sharing one millisecond: a few percent of all events.
    grouped = False
    i = 0
    while i < len(stamps):
        if random_() < 0.012 and i + 1 < len(stamps):
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

    kinds = rng.choices(EVENT_TYPES, cum_weights=_TYPE_CUM_WEIGHTS, k=len(stamps))
    gid = 1_207_000_000_000_000 + rng.randrange(100_000_000)
    events = []
    for ms, kind in zip(stamps, kinds, strict=True):
        gid += 1 + int(random_() * 5_000)
        events.append(
            _event(rng, gid=str(gid), created_at=format_us(ms * 1000), kind=kind, workspace_gid=workspace_gid)
        )
    return events
