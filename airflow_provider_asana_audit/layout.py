"""
The folder layout of exports: the names of a file, its manifest and its staging objects, and the way
back from a path to the workspace, filters and interval it holds.

.. seealso:: docs/operators.md#where-files-go and docs/output.md
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

__all__ = [
    "MANIFEST_SUFFIX",
    "LayoutEntry",
    "default_relative_path",
    "layout_entry",
    "manifest_path",
    "staged_file_name",
    "staging_path",
]

#: A manifest is named after its file, with this suffix.
MANIFEST_SUFFIX = ".manifest.json"
_NAME_INSTANT = "%Y%m%dT%H%M%SZ"
_FILE_NAME = re.compile(
    r"^asana_audit_log_(?P<start>\d{8}T\d{6}Z)_(?P<end>\d{8}T\d{6}Z)(?P<filters>_f[0-9a-f]{10})?\.jsonl(?:\.gz)?$"
)
_WORKSPACE_DIR = re.compile(r"^workspace_gid=(?P<gid>[0-9]+)$")
_DATE_DIR = re.compile(r"^date=(?P<date>\d{4}-\d{2}-\d{2})$")
_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<attempt>[0-9a-f]{32})\.partial$")


def default_relative_path(
    *, workspace_gid: str, start_at: datetime, end_at: datetime, filters: Mapping[str, str | None]
) -> str:
    """
    The path below the base of one interval's file in the default layout.

    :param workspace_gid: the exported workspace.
    :param start_at: the interval's start (UTC).
    :param end_at: its end (UTC).
    :param filters: Asana's filters; any that is set adds ``_f<hash of the filters>`` to the name.

    .. seealso:: docs/operators.md#where-files-go
    """
    suffix = ""
    if any(value is not None for value in filters.values()):
        digest = hashlib.sha256(json.dumps(dict(filters), sort_keys=True).encode()).hexdigest()
        suffix = f"_f{digest[:10]}"
    name = f"asana_audit_log_{start_at:{_NAME_INSTANT}}_{end_at:{_NAME_INSTANT}}{suffix}.jsonl.gz"
    return f"workspace_gid={workspace_gid}/date={start_at:%Y-%m-%d}/{name}"


def manifest_path(file: ObjectStoragePath) -> ObjectStoragePath:
    """The manifest of an export file: ``<file>.manifest.json`` beside it."""
    return file.parent / f"{file.name}{MANIFEST_SUFFIX}"


def staging_path(target: ObjectStoragePath) -> ObjectStoragePath:
    """A new staging object of ``target``: ``.<name>.<32 hex digits>.partial`` beside it."""
    return target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"


def staged_file_name(name: str) -> str | None:
    """The name of the file a staging object named ``name`` stages, or ``None`` if it is not one."""
    match = _STAGING_NAME.match(name)
    return match["name"] if match is not None else None


@dataclass(frozen=True)
class LayoutEntry:
    """
    An object of the default layout, recognised by its path below the base (see :func:`layout_entry`).

    :param kind: ``"file"`` (an export file), ``"manifest"`` (``<file>.manifest.json``) or ``"staging"``
        (``.<file>.<32 hex digits>.partial``).
    :param workspace_gid: the ``workspace_gid=`` directory.
    :param date: the ``date=`` directory, ``YYYY-MM-DD``.
    :param file_name: the export file's name (for a manifest or staging object: the file it belongs to).
    :param start_at: the start of the interval the file name gives.
    :param end_at: its end.
    :param filter_suffix: ``_f<hash>`` of filtered exports, ``""`` for unfiltered ones.
    """

    kind: str
    workspace_gid: str
    date: str
    file_name: str
    start_at: datetime
    end_at: datetime
    filter_suffix: str

    @property
    def file_relative_path(self) -> str:
        """The path below the base of the export file this entry is or belongs to."""
        return f"workspace_gid={self.workspace_gid}/date={self.date}/{self.file_name}"

    @property
    def manifest_relative_path(self) -> str:
        """The path below the base of that file's manifest."""
        return f"{self.file_relative_path}{MANIFEST_SUFFIX}"


def layout_entry(relative: str) -> LayoutEntry | None:
    """
    What the object at ``relative`` (its path below the base, ``/``-separated) is in the default layout.

    The inverse of :func:`default_relative_path`: ``None`` for anything the export does not write there.
    """
    parts = relative.strip("/").split("/")
    if len(parts) != 3:
        return None
    workspace, day, name = parts
    workspace_match, day_match = _WORKSPACE_DIR.match(workspace), _DATE_DIR.match(day)
    if workspace_match is None or day_match is None:
        return None
    kind, file_name = "file", name
    staged = staged_file_name(name)
    if staged is not None:
        kind, file_name = "staging", staged
    elif name.endswith(MANIFEST_SUFFIX):
        kind, file_name = "manifest", name[: -len(MANIFEST_SUFFIX)]
    match = _FILE_NAME.match(file_name)
    if match is None:
        return None
    try:
        start_at, end_at = (
            datetime.strptime(match[key], _NAME_INSTANT).replace(tzinfo=timezone.utc)
            for key in ("start", "end")
        )
    except ValueError:
        return None
    return LayoutEntry(
        kind=kind,
        workspace_gid=workspace_match["gid"],
        date=day_match["date"],
        file_name=file_name,
        start_at=start_at,
        end_at=end_at,
        filter_suffix=match["filters"] or "",
    )
