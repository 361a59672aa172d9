"""Generated events: deterministic, of Asana's documented types, in the shapes Asana's spec allows."""

from __future__ import annotations

import collections
import json
import random
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import ACTOR_TYPES, generate_events, make_event
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

from .support import DOCUMENTED_EVENT_TYPES

NEW_YEAR = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEYS = {"gid", "created_at", "event_type", "event_category", "actor", "resource", "details", "context"}
WITH_SUBTYPE = {"task", "attachment", "story", "custom_field", "status_update"}


@pytest.fixture(scope="module")
def week() -> list[dict[str, Any]]:
    """Five days of 300 events: 1,500 events."""
    return generate_events(seed=1, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=5), per_day=300)


@pytest.fixture(scope="module")
def many() -> list[dict[str, Any]]:
    """Enough events for the rare shapes (a few in a thousand) to appear."""
    return generate_events(seed=4, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=10), count=20_000)


# ---------------------------------------------------------------------------------------- determinism


def test_the_same_seed_gives_the_same_events() -> None:
    kwargs: dict[str, Any] = {"start": NEW_YEAR, "end": NEW_YEAR + timedelta(days=1), "per_day": 300}
    assert generate_events(seed=5, **kwargs) == generate_events(seed=5, **kwargs)


def test_another_seed_gives_other_events() -> None:
    kwargs: dict[str, Any] = {"start": NEW_YEAR, "end": NEW_YEAR + timedelta(days=1), "per_day": 300}
    assert generate_events(seed=5, **kwargs) != generate_events(seed=6, **kwargs)


def test_per_day_gives_that_many_events_a_day() -> None:
    assert (
        len(generate_events(seed=1, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=2.5), per_day=100)) == 250
    )


def test_count_gives_exactly_that_many_events() -> None:
    events = generate_events(seed=1, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=7), per_day=5, count=1_234)
    assert len(events) == 1_234


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        generate_events(seed=1, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=1), count=-1)


def test_an_empty_range_gives_no_events() -> None:
    assert generate_events(seed=1, start=NEW_YEAR, end=NEW_YEAR, count=10) == []


# ---------------------------------------------------------------------------------------- vocabulary


def test_every_generated_type_is_documented_by_asana(many: list[dict[str, Any]]) -> None:
    assert {e["event_type"] for e in many} <= set(DOCUMENTED_EVENT_TYPES)


def test_every_generated_category_is_the_documented_one_of_its_type(many: list[dict[str, Any]]) -> None:
    for event in many:
        heading = DOCUMENTED_EVENT_TYPES[event["event_type"]]
        assert event["event_category"] == heading.lower().replace(" ", "_"), event


def test_generation_covers_most_documented_types(many: list[dict[str, Any]]) -> None:
    assert len({e["event_type"] for e in many}) >= 80


def test_logins_are_the_most_common_category(many: list[dict[str, Any]]) -> None:
    categories = collections.Counter(e["event_category"] for e in many)
    (top, count), (_second, runner_up) = categories.most_common(2)
    assert top == "logins"
    assert count > 2 * runner_up


def test_most_types_are_rare(many: list[dict[str, Any]]) -> None:
    types = collections.Counter(e["event_type"] for e in many)
    rare = [name for name in DOCUMENTED_EVENT_TYPES if types[name] < 0.005 * len(many)]
    assert len(rare) > len(DOCUMENTED_EVENT_TYPES) / 2


def test_make_event_accepts_an_unknown_type_as_category_other() -> None:
    event = make_event(
        random.Random(1), gid="1207000000000001", created_at=NEW_YEAR, event_type="brand_new_type"
    )
    assert event["event_type"] == "brand_new_type"
    assert event["event_category"] == "other"


def test_make_event_with_a_documented_type_uses_its_category() -> None:
    event = make_event(
        random.Random(1), gid="1207000000000001", created_at=NEW_YEAR, event_type="user_invited"
    )
    assert event["event_category"] == "user_updates"
    assert event["resource"]["resource_type"] == "user"


def test_make_event_truncates_to_the_millisecond() -> None:
    created_at = NEW_YEAR + timedelta(microseconds=123_456)
    event = make_event(random.Random(1), gid="1207000000000001", created_at=created_at)
    assert event["created_at"] == "2026-01-01T00:00:00.123Z"


# ---------------------------------------------------------------------------------------- shape


def test_every_event_has_asanas_top_level_keys(week: list[dict[str, Any]]) -> None:
    assert len(week) == 1_500
    assert all(set(e) == KEYS for e in week)


def test_gids_are_unique_16_digit_strings(week: list[dict[str, Any]]) -> None:
    assert len({e["gid"] for e in week}) == len(week)
    assert all(re.fullmatch(r"\d{16}", e["gid"]) for e in week)


def test_created_at_is_utc_milliseconds_inside_the_range(week: list[dict[str, Any]]) -> None:
    for event in week:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["created_at"])
        assert format_instant(parse_instant(event["created_at"])) == event["created_at"]
        assert NEW_YEAR <= parse_instant(event["created_at"]) < NEW_YEAR + timedelta(days=5)


def test_events_come_in_serving_order(week: list[dict[str, Any]]) -> None:
    keys = [(e["created_at"], int(e["gid"])) for e in week]
    assert keys == sorted(keys)


def test_every_actor_type_appears(week: list[dict[str, Any]]) -> None:
    assert {e["actor"]["actor_type"] for e in week} == set(ACTOR_TYPES)


def test_only_user_actors_have_gid_name_and_email(week: list[dict[str, Any]]) -> None:
    for event in week:
        actor = event["actor"]
        if actor["actor_type"] == "user":
            assert set(actor) == {"actor_type", "gid", "name", "email"}
        else:
            assert set(actor) == {"actor_type"}


def test_most_resources_have_no_subtype(week: list[dict[str, Any]]) -> None:
    with_subtype = [e for e in week if "resource_subtype" in e["resource"]]
    assert with_subtype
    assert len(with_subtype) < len(week) / 2
    assert {e["resource"]["resource_type"] for e in with_subtype} <= WITH_SUBTYPE


def test_tasks_have_asanas_task_subtypes(week: list[dict[str, Any]]) -> None:
    subtypes = {e["resource"]["resource_subtype"] for e in week if e["resource"]["resource_type"] == "task"}
    assert subtypes == {"default_task", "milestone", "approval"}


def test_every_resource_has_a_type_and_a_gid(week: list[dict[str, Any]]) -> None:
    assert all({"resource_type", "gid", "name"} <= set(e["resource"]) for e in week)


def test_users_log_themselves_in(week: list[dict[str, Any]]) -> None:
    logins = [e for e in week if e["event_category"] == "logins" and e["actor"]["actor_type"] == "user"]
    assert logins
    assert all(e["resource"]["gid"] == e["actor"]["gid"] for e in logins)


def test_context_types_are_the_specs(many: list[dict[str, Any]]) -> None:
    context_types = {e["context"]["context_type"] for e in many}
    assert context_types == {"web", "desktop", "mobile", "asana_support", "asana", "email", "api"}


def test_api_contexts_name_their_authentication_method(week: list[dict[str, Any]]) -> None:
    api = [e["context"] for e in week if e["context"]["context_type"] == "api"]
    assert api
    methods = {"cookie", "oauth", "personal_access_token", "service_account"}
    assert all(c["api_authentication_method"] in methods for c in api)
    assert all("oauth_app_name" in c for c in api if c["api_authentication_method"] == "oauth")


def test_changed_events_carry_old_and_new_values(many: list[dict[str, Any]]) -> None:
    changed = [e for e in many if e["event_type"].endswith("_changed") and "password" not in e["event_type"]]
    assert changed
    assert all({"old_value", "new_value"} <= set(e["details"]) for e in changed)
    assert any(e["details"]["old_value"] != e["details"]["new_value"] for e in changed)


def test_login_events_carry_a_nullable_saml_response(week: list[dict[str, Any]]) -> None:
    logins = [e for e in week if e["event_type"] in ("user_login_succeeded", "user_login_failed")]
    responses = [e["details"]["saml_response"] for e in logins]
    assert None in responses
    assert any(isinstance(r, str) for r in responses)


def test_names_use_non_ascii_and_emoji(week: list[dict[str, Any]]) -> None:
    text = json.dumps(week, ensure_ascii=False)
    assert "Zoë Ångström" in text
    assert "東京チーム" in text
    assert re.search("[\U0001f300-\U0001faff]", text)


def test_some_events_share_a_created_at_in_small_groups() -> None:
    events = generate_events(seed=2, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=3), per_day=200)
    counts = collections.Counter(e["created_at"] for e in events)
    shared = sum(n for n in counts.values() if n > 1)
    assert max(counts.values()) <= 5
    assert 0.01 * len(events) <= shared <= 0.10 * len(events)


# ---------------------------------------------------------------------------------------- optional parts


def test_some_contexts_are_email(many: list[dict[str, Any]]) -> None:
    emails = [e["context"] for e in many if e["context"]["context_type"] == "email"]
    assert emails
    assert all(set(c) == {"context_type"} for c in emails)


def test_some_automation_rules_name_themselves(many: list[dict[str, Any]]) -> None:
    rules = [e for e in many if "rule_name" in e["context"]]
    assert rules
    assert all(isinstance(e["context"]["rule_name"], str) and e["context"]["rule_name"] for e in rules)
    assert {e["actor"]["actor_type"] for e in rules} == {"asana"}


def test_some_support_actions_are_on_behalf_of_a_user_given_as_an_integer(many: list[dict[str, Any]]) -> None:
    on_behalf = [e["context"]["on_behalf_of_user_id"] for e in many if "on_behalf_of_user_id" in e["context"]]
    assert on_behalf
    assert all(type(user_id) is int for user_id in on_behalf)


def test_some_resource_names_are_null(many: list[dict[str, Any]]) -> None:
    assert any(e["resource"]["name"] is None for e in many)


def test_some_old_values_are_null(many: list[dict[str, Any]]) -> None:
    assert any("old_value" in e["details"] and e["details"]["old_value"] is None for e in many)


def test_some_new_values_are_null(many: list[dict[str, Any]]) -> None:
    assert any("new_value" in e["details"] and e["details"]["new_value"] is None for e in many)


def test_details_group_is_a_division_not_a_user(many: list[dict[str, Any]]) -> None:
    groups = [e["details"]["group"] for e in many if "group" in e["details"]]
    assert groups
    for group in groups:
        assert group["resource_type"] == "division"
        assert set(group) == {"resource_type", "gid", "name"}


def test_division_role_changes_name_their_division(many: list[dict[str, Any]]) -> None:
    changes = [e for e in many if e["event_type"] == "user_division_admin_role_changed"]
    assert changes
    assert all("group" in e["details"] for e in changes)
