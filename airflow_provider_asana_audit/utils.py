"""
Small helpers that several layers share and that belong to none of them: the logger type, the JSON
decoder, and reading rendered templates. Nothing here imports the HTTP client or Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Logger", "decode_json", "rendered"]


class Logger(Protocol):
    """What the package needs of a logger: a stdlib ``logging.Logger`` or Airflow's task logger."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


# Decoding the JSON of a page is the largest part of the client's CPU time. msgspec (installed with
# Airflow: a dependency of Airflow 3's core and task SDK, and of Airflow 2's Flask-Session) decodes
# standard JSON into the same values as json.loads in half the time; its DecodeError is a
# ValueError. The bytes are decoded directly, without requests' charset guessing.
decode_json: Callable[[bytes], Any]
try:
    from msgspec.json import decode as decode_json
except ImportError:  # pragma: no cover -- every supported Airflow installs msgspec
    decode_json = json.loads

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
