"""The stand-in's vocabulary is Asana's documented one, checked against a copy of Asana's own table."""

from __future__ import annotations

import re

from airflow_provider_asana_audit.testing import ACTOR_TYPES, EVENT_CATEGORIES, EVENT_TYPES

from .support import DOCUMENTED_EVENT_TYPES


def _category(heading: str) -> str:
    """``event_category`` as Asana's API spells a heading of its docs: "Admin settings" -> admin_settings."""
    return re.sub(r"\W+", "_", heading.strip().lower())


def test_every_documented_event_type_is_known_with_its_category() -> None:
    known = {t.name: t.category for t in EVENT_TYPES}
    assert len(DOCUMENTED_EVENT_TYPES) == 109
    assert known == {name: _category(heading) for name, heading in DOCUMENTED_EVENT_TYPES.items()}


def test_event_types_are_unique() -> None:
    names = [t.name for t in EVENT_TYPES]
    assert len(names) == len(set(names))


def test_categories_are_the_documented_headings() -> None:
    assert set(EVENT_CATEGORIES) == {_category(h) for h in DOCUMENTED_EVENT_TYPES.values()}
    assert set(EVENT_CATEGORIES) == {
        "logins",
        "user_updates",
        "admin_settings",
        "roles",
        "content_export",
        "access_control",
        "apps",
        "creation",
        "deletion",
    }


def test_every_weight_is_positive() -> None:
    assert all(t.weight > 0 for t in EVENT_TYPES)


def test_every_changed_setting_has_old_and_new_choices() -> None:
    # A password change is audited without the password, old or new.
    changed = [t for t in EVENT_TYPES if t.name.endswith("_changed") and t.name != "user_password_changed"]
    assert changed
    for event_type in changed:
        assert event_type.change is not None, event_type.name
        olds, news = event_type.change
        assert olds, event_type.name
        assert news, event_type.name


def test_resource_types_are_snake_case() -> None:
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", t.resource_type) for t in EVENT_TYPES)


def test_actor_types_are_the_five_of_the_spec() -> None:
    assert ACTOR_TYPES == ("user", "asana", "asana_support", "anonymous", "external_administrator")
