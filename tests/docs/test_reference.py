"""
The reference pages document exactly what the code has: every parameter of every public class (its
name, type, default and whether it is templated), the stand-in's command-line options and faults.

Each ``<!-- parameters: <dotted path> -->`` list in the docs is compared with the signature of what it
names, so a parameter added, renamed, retyped or given another default fails here until the docs say so.
"""

from __future__ import annotations

import importlib
import inspect
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import Fault
from airflow_provider_asana_audit.testing.__main__ import build_parser
from tests.docs.markdown import REPO, ParameterList, all_parameter_lists

#: Every public class (and the hook's reading methods) whose parameters the docs must list.
DOCUMENTED = {
    "airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook": "docs/hooks.md",
    "airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook.iter_events": "docs/hooks.md",
    "airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook.iter_pages": "docs/hooks.md",
    "airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook.check": "docs/hooks.md",
    "airflow_provider_asana_audit.operators.audit_log.AsanaAuditLogExportOperator": "docs/operators.md",
    "airflow_provider_asana_audit.operators.verify.AsanaAuditLogVerifyOperator": "docs/operators.md",
    "airflow_provider_asana_audit.operators.seal.AsanaAuditLogSealOperator": "docs/evidence.md",
    "airflow_provider_asana_audit.verify.verify_archive": "docs/archive.md",
    "airflow_provider_asana_audit.sensors.audit_log.AsanaAuditLogSensor": "docs/sensors.md",
    "airflow_provider_asana_audit.triggers.audit_log.AsanaAuditLogTrigger": "docs/triggers.md",
    "airflow_provider_asana_audit.triggers.audit_log.AsanaAuditLogEventTrigger": "docs/triggers.md",
    "airflow_provider_asana_audit.client.AsanaAuditLogClient": "docs/hooks.md",
    "airflow_provider_asana_audit.query.AuditLogQuery": "docs/hooks.md",
    "airflow_provider_asana_audit.budget.RetryPolicy": "docs/hooks.md",
    "airflow_provider_asana_audit.budget.RateLimiter": "docs/hooks.md",
    "airflow_provider_asana_audit.testing.FakeAsana": "docs/testing.md",
}
#: How the docs write a default that is read from Airflow's configuration when the module is imported.
CONFIG_DEFAULTS = {"deferrable": "[operators] default_deferrable"}

LISTS = all_parameter_lists()


def _resolve(dotted: str) -> Any:
    """The object at a dotted path: a module's attribute, or an attribute of one."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise AssertionError(f"cannot import {dotted}")


def _signature_parameters(target: Any) -> list[inspect.Parameter]:
    """The parameters a user passes: no ``self``, ``*args`` or ``**kwargs``."""
    signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    return [
        parameter
        for name, parameter in signature.parameters.items()
        if name != "self"
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def _normalise(annotation: str) -> str:
    return re.sub(r"\s+", " ", annotation.replace("'", '"')).strip()


def _documented_default(text: str) -> Any:
    return eval(text, {"timedelta": timedelta, "time": time})  # the docs' own literals


def test_every_public_class_has_a_parameter_list() -> None:
    found = {plist.target: str(plist.path) for plist in LISTS}
    missing = {target: page for target, page in DOCUMENTED.items() if found.get(target) != page}
    assert not missing, f"document the parameters of these in these pages: {missing}"


def test_each_target_is_documented_once() -> None:
    targets = [plist.target for plist in LISTS]
    assert len(targets) == len(set(targets)), sorted(t for t in targets if targets.count(t) > 1)


@pytest.mark.parametrize(
    "plist",
    LISTS,
    ids=[plist.target.rsplit(".", 2)[-2] + "." + plist.target.rsplit(".", 1)[-1] for plist in LISTS],
)
def test_parameter_list_matches_the_signature(plist: ParameterList) -> None:
    target = _resolve(plist.target)
    actual = _signature_parameters(target)
    where = f"{plist.path}:{plist.line} ({plist.target})"
    assert [p.name for p in plist.parameters] == [p.name for p in actual], (
        f"{where}: the documented parameters differ from the signature's (names and order)"
    )
    template_fields = set(getattr(target, "template_fields", ()) if inspect.isclass(target) else ())
    for documented, parameter in zip(plist.parameters, actual, strict=True):
        item = f"{plist.path}:{documented.line} `{documented.name}`"
        assert isinstance(parameter.annotation, str), f"{item}: annotations are strings in this package"
        assert _normalise(documented.type) == _normalise(parameter.annotation), (
            f"{item}: documented type {documented.type!r}, signature {parameter.annotation!r}"
        )
        if parameter.default is inspect.Parameter.empty:
            assert documented.default is None, f"{item}: the parameter is required; write `required`"
        elif documented.name in CONFIG_DEFAULTS:
            assert documented.default == CONFIG_DEFAULTS[documented.name], (
                f"{item}: the default is a config option"
            )
        else:
            assert documented.default is not None, (
                f"{item}: the parameter has a default, {parameter.default!r}"
            )
            assert _documented_default(documented.default) == parameter.default, (
                f"{item}: documented default {documented.default}, signature {parameter.default!r}"
            )
        assert documented.templated == (documented.name in template_fields), (
            f"{item}: templated in the docs: {documented.templated}; in template_fields: "
            f"{documented.name in template_fields}"
        )


@pytest.mark.parametrize(
    "target",
    [t for t in DOCUMENTED if inspect.isclass(_resolve(t)) and hasattr(_resolve(t), "template_fields")],
)
def test_every_template_field_is_a_documented_parameter(target: str) -> None:
    (plist,) = [plist for plist in LISTS if plist.target == target]
    templated = {p.name for p in plist.parameters if p.templated}
    assert set(_resolve(target).template_fields) == templated


def test_every_option_of_the_stand_in_command_is_documented() -> None:
    page = (REPO / "docs/testing.md").read_text(encoding="utf-8")
    options = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert options
    missing = [option for option in options if f"`{option}" not in page]
    assert not missing, f"docs/testing.md does not document {missing}"


def test_every_fault_is_documented() -> None:
    page = (REPO / "docs/testing.md").read_text(encoding="utf-8")
    missing = [fault.name for fault in Fault if f'| `{fault.name}` | `"{fault.value}"` |' not in page]
    assert not missing, f"docs/testing.md does not document the faults {missing}"


def test_the_config_option_is_documented() -> None:
    from airflow_provider_asana_audit.get_provider_info import CONFIG

    page = (REPO / "docs/operators.md").read_text(encoding="utf-8")
    for section, spec in CONFIG.items():
        for option in spec["options"]:
            assert f"[{section}] {option}" in page
            assert f"AIRFLOW__{section.upper()}__{option.upper()}" in page


def test_the_connection_form_is_documented() -> None:
    from airflow_provider_asana_audit.get_provider_info import CONN_FIELDS, CONN_TYPE, HOOK_NAME, RELABELING

    page = (REPO / "docs/connections.md").read_text(encoding="utf-8")
    assert f"`{CONN_TYPE}`" in page
    assert HOOK_NAME in page
    for field in CONN_FIELDS.values():
        assert field["label"] in page
    for label in RELABELING.values():
        assert label in page


def test_pages_named_in_the_reference_exist() -> None:
    for page in set(DOCUMENTED.values()):
        assert Path(REPO / page).is_file()
