"""
The one encoding that is signed and hashed: canonical JSON.

Keys sorted, no whitespace, UTF-8 with non-ASCII characters kept, and only strings, integers,
booleans, ``null``, arrays and objects: no floats, whose text differs between JSON libraries, so that
any language can rebuild the exact bytes that were signed.

.. seealso:: docs/evidence.md
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError

__all__ = ["canonical_json", "is_sha256", "read_stored", "sha256_hex"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check(value: Any, where: str) -> None:
    """Refuse what canonical JSON does not hold (see the module's docstring)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AsanaAuditLogConfigError(
                    f"{where} has a key {key!r} that is not a string; evidence is JSON with string keys"
                )
            _check(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")
        return
    raise AsanaAuditLogConfigError(
        f"{where} is a {type(value).__name__}; signed evidence holds only strings, integers, booleans, "
        "null, arrays and objects (write a float or a date as a string)"
    )


def canonical_json(value: Any) -> bytes:
    """
    ``value`` as canonical JSON bytes (see the module's docstring).

    :raises AsanaAuditLogConfigError: when ``value`` holds a float or another type JSON cannot encode
        the same way everywhere.
    """
    _check(value, "the value")
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise AsanaAuditLogConfigError(
            "the value holds a lone UTF-16 surrogate, which UTF-8 cannot encode; evidence is valid Unicode"
        ) from None


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a hex SHA-256 as this package writes them: 64 lower-case hex digits."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def read_stored(data: bytes | str, *, kind: str, version: int, names: Sequence[str]) -> dict[str, Any]:
    """
    A stored record or seal as a JSON object: of ``type`` ``kind`` and format ``version``, with exactly
    the keys ``type`` and ``names``, and nothing canonical JSON cannot encode. Its fields' types and its
    signature are not checked.

    :raises ValueError: when it is not (the message says why, to follow "The record <path> ").
    """
    try:
        value = json.loads(data)
    except ValueError as err:
        raise ValueError(f"is not valid JSON ({err})") from None
    if not isinstance(value, dict) or value.get("type") != kind:
        raise ValueError(f"is not a JSON object of type {kind!r}")
    if value.get("version") != version:
        raise ValueError(f"is format version {value.get('version')!r} of {kind!r}, not {version}")
    unknown = sorted(set(value) - {"type", *names})
    missing = [name for name in names if name not in value]
    if unknown or missing:
        raise ValueError(
            f"does not have exactly the keys {['type', *names]}: unknown {unknown}, lacking {missing}"
        )
    try:
        canonical_json(value)
    except AsanaAuditLogConfigError as err:
        raise ValueError(str(err)) from None
    return value
