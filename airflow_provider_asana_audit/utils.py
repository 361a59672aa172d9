"""Plumbing shared by the operator and the sensor that is neither's own job: reading rendered templates."""

from __future__ import annotations

from typing import Any

__all__ = ["rendered"]

#: What a template renders when its value is missing: ``{{ params.get('x', '') }}`` gives ``""``, and
#: ``{{ params.x }}`` with ``x=None`` gives the string ``"None"``.
_UNSET_RENDERINGS = frozenset({"", "None"})


def rendered(value: Any) -> Any:
    """
    A templated argument as it should be used: ``None`` when it rendered to nothing, else unchanged.

    ``None``, an empty or all-blank string, and the string ``"None"`` all mean "not set". No Asana filter
    value or instant can be any of them, so nothing a user meant is lost.
    """
    if value is None or (isinstance(value, str) and value.strip() in _UNSET_RENDERINGS):
        return None
    return value
