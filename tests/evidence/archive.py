"""
A small archive with evidence, written the way an export writes it: gzip JSON Lines files in the
default layout, their manifests (the :class:`Manifest` dataclass), a signed record of each export and
the series' seals. Tests damage copies of it and check what the evidence check finds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow_provider_asana_audit.evidence import (
    EvidenceProblem,
    Keyring,
    LocalArchive,
    Record,
    Seal,
    SigningKey,
    check_evidence,
    current_records,
    make_seal,
    newest_seal,
    record_objects,
    seal_hash,
    seal_objects,
    sign_manifest,
)
from airflow_provider_asana_audit.export_file import ExportWriter, Manifest
from airflow_provider_asana_audit.layout import MANIFEST_SUFFIX, default_relative_path
from airflow_provider_asana_audit.timeutils import format_instant

__all__ = ["DAY0", "FILTERS", "WORKSPACE", "EvidenceArchive", "events_of"]

WORKSPACE = "1200000000000001"
FILTERS: dict[str, str | None] = {
    "event_type": None,
    "actor_type": None,
    "actor_gid": None,
    "resource_gid": None,
}
DAY0 = datetime(2026, 11, 22, tzinfo=timezone.utc)


def events_of(day: int, count: int, *, first: int = 0) -> list[dict[str, Any]]:
    """``count`` audit events of day ``day`` (after :data:`DAY0`), numbered from ``first``."""
    start = DAY0 + timedelta(days=day)
    return [
        {
            "gid": f"{day:02d}{number:06d}",
            "created_at": format_instant(start + timedelta(minutes=7 * number)),
            "event_type": "user_login_succeeded",
            "actor": {"actor_type": "user", "gid": "1200000000000009", "email": "ada@example.com"},
        }
        for number in range(first, first + count)
    ]


@dataclass
class EvidenceArchive:
    """An archive under ``base``, signed with ``key``."""

    base: Path
    key: SigningKey = field(default_factory=SigningKey.generate)

    @property
    def keyring(self) -> Keyring:
        return Keyring([self.key.public_key])

    @property
    def view(self) -> LocalArchive:
        return LocalArchive(self.base)

    def file(self, day: int) -> str:
        """The path below the base of day ``day``'s file."""
        start = DAY0 + timedelta(days=day)
        return default_relative_path(
            workspace_gid=WORKSPACE, start_at=start, end_at=start + timedelta(days=1), filters=FILTERS
        )

    def write(self, relative: str, data: bytes) -> None:
        path = self.base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read(self, relative: str) -> bytes:
        return (self.base / relative).read_bytes()

    def current(self, day: int) -> Record:
        """Day ``day``'s current record."""
        return Record.from_json(self.read(self.file(day) + ".record.json"))

    def write_export(
        self, day: int, events: list[dict[str, Any]], *, exported_at: datetime, changes: list[dict[str, Any]]
    ) -> bytes:
        """Write day ``day``'s file and manifest, as the export does, without a record; the manifest."""
        relative = self.file(day)
        start = DAY0 + timedelta(days=day)
        target = self.base / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as raw:
            writer = ExportWriter(
                raw, file_format="jsonl.gz", start_at=start, end_at=start + timedelta(days=1)
            )
            writer.write(events)
            written = writer.close()
        manifest = Manifest(
            events=written.events,
            start_at=format_instant(start),
            end_at=format_instant(start + timedelta(days=1)),
            filters=FILTERS,
            sha256=written.sha256,
            bytes=written.bytes,
            path=str(target),
            format="jsonl.gz",
            exported_at=format_instant(exported_at),
            package_version="0.1.0",
            workspace_gid=WORKSPACE,
            exported_by={
                "dag_id": "asana_audit_export",
                "task_id": "export",
                "run_id": f"r{day}",
                "try_number": 1,
            },
            changes=changes,
        ).to_json()
        self.write(relative + MANIFEST_SUFFIX, manifest)
        return manifest

    def export(self, day: int, events: list[dict[str, Any]], *, exported_at: datetime) -> Record:
        """
        Export ``events`` as day ``day``'s file, with its manifest and its signed record. A re-export
        records its change in the manifest (late events), and its record supersedes the previous one.
        """
        relative = self.file(day)
        previous = self.current(day) if (self.base / f"{relative}.record.json").exists() else None
        changes: list[dict[str, Any]] = []
        if previous is not None:
            changes = [
                {
                    "detected_at": format_instant(exported_at),
                    "previous_sha256": previous.sha256,
                    "previous_bytes": previous.bytes,
                    "previous_events": previous.events,
                    "previous_exported_at": previous.exported_at,
                    "added_events": len(events) - previous.events,
                    "removed_events": 0,
                    "added_created_at": {"first": events[-1]["created_at"], "last": events[-1]["created_at"]},
                    "previous_damaged": False,
                }
            ]
        manifest = self.write_export(day, events, exported_at=exported_at, changes=changes)
        record = sign_manifest(key=self.key, path=relative, manifest=manifest, supersedes=previous)
        for path, data in record_objects(record).items():
            self.write(path, data)
        return record

    def seal(self, *, at: datetime) -> Seal:
        """Seal the series' current records; returns the new seal, stored."""
        view, keyring = self.view, self.keyring
        seal = make_seal(
            key=self.key,
            workspace_gid=WORKSPACE,
            filters=FILTERS,
            records=current_records(view, keyring, workspace_gid=WORKSPACE, filters=FILTERS),
            previous=newest_seal(view, keyring, workspace_gid=WORKSPACE, filters=FILTERS),
            sealed_at=at,
        )
        for path, data in seal_objects(seal).items():
            self.write(path, data)
        return seal

    def seal_files(self) -> list[Path]:
        return sorted((self.base / f"workspace_gid={WORKSPACE}" / "_seals").rglob("seal_*.json"))

    def check(self, *, published: tuple[str, ...] = ()) -> list[EvidenceProblem]:
        return check_evidence(self.view, self.keyring, published_seal_hashes=published)

    def found(self, *, published: tuple[str, ...] = ()) -> list[tuple[str, str | None]]:
        """What the check finds: ``(kind, path)`` of each problem."""
        return [(problem.kind, problem.path) for problem in self.check(published=published)]

    def copy(self, to: Path) -> EvidenceArchive:
        shutil.copytree(self.base, to)
        return EvidenceArchive(to, self.key)

    @staticmethod
    def hash_of(seal: Seal) -> str:
        return seal_hash(seal)
