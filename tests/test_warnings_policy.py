"""
The suite's warning filters (``[tool.pytest.ini_options] filterwarnings`` in ``pyproject.toml``) do
what they say: a warning attributed to our package or to the tests fails the test, whoever raised it,
while the named third-party warnings stay ignored.

``warnings`` attributes a warning to the module whose frame is at the warning's ``stacklevel`` (that
frame's ``__name__``), and a filter's module field is a regular expression matched against the start
of that name. The code below runs in frames that carry the module names under test.
"""

from __future__ import annotations

import warnings

import pytest


def _warn_from(module: str, category: type[Warning], message: str = "deprecated") -> None:
    """Warn from a frame of module ``module``, as code in that module would (``stacklevel=1``)."""
    code = compile(f"warnings.warn({message!r}, {category.__name__}, stacklevel=1)", "<test>", "exec")
    exec(code, {"__name__": module, "warnings": warnings, category.__name__: category})


@pytest.mark.parametrize(
    "module",
    ["airflow_provider_asana_audit", "airflow_provider_asana_audit.client", "tests.hooks.test_audit_log"],
)
@pytest.mark.parametrize("category", [DeprecationWarning, UserWarning, RuntimeWarning])
def test_a_warning_attributed_to_our_code_fails_the_test(module: str, category: type[Warning]) -> None:
    with pytest.raises(category, match="deprecated"):
        _warn_from(module, category)


@pytest.mark.parametrize("module", ["airflow_provider_asana_audit_extras", "testsuite", "airflow.models"])
def test_a_warning_attributed_to_another_module_is_only_recorded(module: str) -> None:
    with warnings.catch_warnings(record=True) as caught:  # keeps the suite's filters
        _warn_from(module, DeprecationWarning)
    assert [str(w.message) for w in caught] == ["deprecated"]


def test_a_named_third_party_warning_stays_ignored() -> None:
    with warnings.catch_warnings(record=True) as caught:  # keeps the suite's filters
        _warn_from(
            "fastapi.testclient",
            UserWarning,
            "Using `httpx` with `starlette.testclient` is deprecated; install `httpx2` instead.",
        )
    assert caught == []
