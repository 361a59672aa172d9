"""
What the evidence check reads an archive through: a storage-agnostic, read-only view of the objects
below a base, and its adapters for a local directory and for objects held in memory.

.. seealso:: docs/evidence.md#verifying-an-archive
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from airflow.providers.common.compat.sdk import ObjectStoragePath

__all__ = ["ArchiveView", "LocalArchive", "MemoryArchive", "StorageArchive"]


class ArchiveView(Protocol):
    """
    The objects of an archive, by path below its base (``/``-separated, no leading ``/``).

    ``read_bytes`` and ``open`` raise ``FileNotFoundError`` for a path that is not there.
    """

    def list(self) -> Iterable[str]:
        """Every object's path."""

    def read_bytes(self, path: str) -> bytes:
        """An object's bytes (records, manifests and seals are small)."""

    def open(self, path: str) -> BinaryIO:
        """An object open for reading, to stream it (export files may be large)."""


class LocalArchive:
    """
    An archive in a local directory.

    :param root: the base path the exports were written under.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, path: str) -> Path:
        resolved = (self.root / path).resolve()
        if not resolved.is_relative_to(self.root):
            raise FileNotFoundError(f"{path} lies outside the archive")
        return resolved

    def list(self) -> Iterable[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def read_bytes(self, path: str) -> bytes:
        data: bytes = self._path(path).read_bytes()
        return data

    def open(self, path: str) -> BinaryIO:
        return self._path(path).open("rb")


class MemoryArchive:
    """
    An archive held in memory.

    :param objects: the objects' bytes by path below the base.
    """

    def __init__(self, objects: Mapping[str, bytes]) -> None:
        self.objects = dict(objects)

    def list(self) -> Iterable[str]:
        return sorted(self.objects)

    def read_bytes(self, path: str) -> bytes:
        try:
            return self.objects[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def open(self, path: str) -> BinaryIO:
        return io.BytesIO(self.read_bytes(path))


class StorageArchive:
    """
    An archive on any Airflow object storage (local disks, S3, GCS, Azure...).

    :param root: the base path the exports were written under.
    :param listing: the objects below ``root`` as ``fs.find(root.path, detail=True)`` returned them, when
        the caller has listed them already (the archive check has); default: listed on first use.
    """

    def __init__(self, root: ObjectStoragePath, *, listing: Mapping[str, Any] | None = None) -> None:
        self.root = root
        self._listing = listing

    def list(self) -> Iterable[str]:
        listing = self._listing
        if listing is None:
            try:
                listing = self.root.fs.find(self.root.path, withdirs=False, detail=True)
            except FileNotFoundError:
                listing = {}
        prefix = self.root.path.rstrip("/") + "/"
        return sorted(name[len(prefix) :] for name in listing if name.startswith(prefix))

    def _path(self, path: str) -> ObjectStoragePath:
        if path.startswith("/") or ".." in path.split("/"):
            raise FileNotFoundError(f"{path} lies outside the archive")
        return self.root / path

    def read_bytes(self, path: str) -> bytes:
        data: bytes = self._path(path).read_bytes()
        return data

    def open(self, path: str) -> BinaryIO:
        opened: BinaryIO = self._path(path).open("rb")  # type: ignore[no-untyped-call]
        return opened
