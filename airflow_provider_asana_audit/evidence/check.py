"""
The evidence check: does every export file match its signed record, is every record intact and
signed by a known key, is every record the newest of its interval, and do the seals show that nothing
sealed has gone or been replaced.

It reads through an :class:`~.view.ArchiveView` and needs the public keys only.

.. seealso:: docs/evidence.md#verifying-an-archive
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from airflow_provider_asana_audit.evidence.canonical import sha256_hex
from airflow_provider_asana_audit.evidence.keys import Keyring
from airflow_provider_asana_audit.evidence.paths import (
    SEALS_DIR,
    EvidenceEntry,
    evidence_entry,
    filter_series,
    record_path,
)
from airflow_provider_asana_audit.evidence.problems import (
    INTERVAL_REMOVED,
    RECORD_MISMATCH,
    RECORD_MISSING,
    SEAL_CHAIN_BROKEN,
    SEAL_MISSING,
    SIGNATURE_BAD,
    VERSION_ROLLED_BACK,
    EvidenceProblem,
)
from airflow_provider_asana_audit.evidence.records import Record, record_sha256, verify_record
from airflow_provider_asana_audit.evidence.seal_audit import audit_seals, published_seal_problem
from airflow_provider_asana_audit.evidence.seals import Seal, SealLink, stored_seal_hash, verify_seal
from airflow_provider_asana_audit.evidence.view import ArchiveView
from airflow_provider_asana_audit.exceptions import AsanaAuditLogSignatureError
from airflow_provider_asana_audit.layout import MANIFEST_SUFFIX, layout_entry

__all__ = ["SeriesState", "check_evidence", "current_records", "newest_seal", "series_state"]

_CHUNK = 1 << 20

#: A series: (workspace gid, series name).
SeriesKey = tuple[str, str]


@dataclass
class _Index:
    """What an archive holds, its records and seals read and their signatures checked."""

    files: dict[str, SeriesKey] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    unusable_records: set[str] = field(default_factory=set)
    history: dict[str, Record] = field(default_factory=dict)
    #: Records whose signatures were checked, by their stored bytes.
    verified: dict[bytes, Record] = field(default_factory=dict)
    seals: dict[SeriesKey, list[SealLink]] = field(default_factory=lambda: defaultdict(list))
    #: The newest valid seal of each series, whole.
    newest: dict[SeriesKey, Seal] = field(default_factory=dict)
    #: The filters of each series that has a readable current record, its signature good or not.
    filters: dict[SeriesKey, dict[str, str | None]] = field(default_factory=dict)
    problems: list[EvidenceProblem] = field(default_factory=list)
    _successors: dict[str, list[Record]] | None = None

    def later(self, record: Record) -> list[Record]:
        """Valid records that supersede ``record``."""
        if self._successors is None:
            self._successors = defaultdict(list)
            for other in self.history.values():
                if other.supersedes is not None:
                    self._successors[other.supersedes].append(other)
        return [
            other for other in self._successors.get(record_sha256(record), []) if other.path == record.path
        ]


def _signature_problem(err: AsanaAuditLogSignatureError, path: str) -> EvidenceProblem:
    return EvidenceProblem(err.kind, f"{err} ({path})", path)


def _read_record(
    view: ArchiveView, keyring: Keyring, path: str, index: _Index, *, current: bool
) -> Record | None:
    data = view.read_bytes(path)
    known = index.verified.get(data)  # a file's current record is also kept, byte for byte, in its history
    try:
        record = known or Record.from_json(data)
    except ValueError as err:
        index.problems.append(EvidenceProblem(SIGNATURE_BAD, f"The record {path} {err}", path))
        return None
    if current:
        index.filters.setdefault((record.workspace_gid, filter_series(record.filters)), dict(record.filters))
    if known is not None:
        return known
    try:
        verify_record(record, keyring)
    except AsanaAuditLogSignatureError as err:
        index.problems.append(_signature_problem(err, path))
        return None
    index.history[record_sha256(record)] = record
    index.verified[data] = record
    return record


def _index(view: ArchiveView, keyring: Keyring) -> _Index:
    index = _Index()
    seals: list[tuple[str, EvidenceEntry]] = []
    for path in view.list():
        layout = layout_entry(path)
        if layout is not None and layout.kind == "file":
            index.files[path] = (layout.workspace_gid, layout.filter_suffix.lstrip("_") or "unfiltered")
            continue
        entry = evidence_entry(path)
        if entry is None:
            continue
        if entry.kind in ("record", "history"):
            current = entry.kind == "record" and entry.file is not None
            record = _read_record(view, keyring, path, index, current=current)
            if not current or entry.file is None:
                continue
            if record is None:
                index.unusable_records.add(entry.file)
            elif record.path != entry.file:
                index.unusable_records.add(entry.file)
                index.problems.append(
                    EvidenceProblem(
                        RECORD_MISMATCH,
                        f"The record {path} is the record of another file, {record.path}",
                        path,
                    )
                )
            else:
                index.records[entry.file] = record
        elif entry.kind == "seal":
            seals.append((path, entry))
    _read_seals(view, keyring, seals, index)
    return index


def _read_seals(
    view: ArchiveView, keyring: Keyring, entries: Iterable[tuple[str, EvidenceEntry]], index: _Index
) -> None:
    """
    Read the seals, newest first, into ``index``. The newest seal of each series is verified in full
    (signature, key, Merkle root) and kept whole. An older seal whose stored bytes hash to the
    ``previous`` of a seal already verified or vouched for is vouched for by that seal's signature, as
    the chain intends: only its link is read, so that a year of daily seals, each listing every interval
    of its series, is neither verified nor held in memory 365 times. Any other seal (one the chain does
    not reach, or whose bytes differ) is verified in full, so that what is wrong with it is reported.
    """
    vouched: set[str] = set()
    for path, entry in sorted(entries, key=lambda item: (item[1].sequence or 0, item[0]), reverse=True):
        data = view.read_bytes(path)
        stored_hash = stored_seal_hash(data)
        seal: Seal | None = None
        try:
            if stored_hash in vouched:
                link = SealLink.from_json(data, path=path, stored_hash=stored_hash)
            else:
                seal = Seal.from_json(data)
                verify_seal(seal, keyring, where=path)
                link = SealLink.of(seal, path=path)
        except ValueError as err:
            index.problems.append(EvidenceProblem(SIGNATURE_BAD, f"The seal {path} {err}", path))
            continue
        except AsanaAuditLogSignatureError as err:
            index.problems.append(_signature_problem(err, path))
            continue
        if (link.workspace_gid, link.series, link.sequence) != (
            entry.workspace_gid,
            entry.series,
            entry.sequence,
        ):
            index.problems.append(
                EvidenceProblem(
                    SEAL_CHAIN_BROKEN,
                    f"The seal {path} is seal {link.sequence} of workspace {link.workspace_gid}, series "
                    f"{link.series}: it was moved from elsewhere",
                    path,
                )
            )
            continue
        series = (link.workspace_gid, link.series)
        index.seals[series].append(link)
        if seal is not None and series not in index.newest:
            index.newest[series] = seal
        if link.previous is not None:
            vouched.add(link.previous)


def _digest(view: ArchiveView, path: str) -> tuple[str, int]:
    """Hex SHA-256 and size of an object, streamed."""
    digest, size = hashlib.sha256(), 0
    with view.open(path) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _check_file(
    view: ArchiveView, index: _Index, file: str, digests: Mapping[str, tuple[str, int]]
) -> EvidenceProblem | None:
    """
    The problem of one export file against its current record, if it has one.

    :param digests: the hex SHA-256 and size of files already read, by path; others are read here.
    """
    record = index.records.get(file)
    if record is None:
        if file in index.unusable_records:
            return None  # reported with the record
        return EvidenceProblem(RECORD_MISSING, f"{file} has no signed record ({record_path(file)})", file)
    later = index.later(record)
    if later:
        return EvidenceProblem(
            VERSION_ROLLED_BACK,
            f"The record of {file} was superseded by a later one (exported at {later[0].exported_at}, kept "
            f"in the record history): an older version was put back",
            file,
        )
    sha256, size = digests[file] if file in digests else _digest(view, file)
    wrong: list[str] = []
    if (sha256, size) != (record.sha256, record.bytes):
        older = [r for r in index.history.values() if r.path == file and r.sha256 == sha256]
        if older:
            return EvidenceProblem(
                VERSION_ROLLED_BACK,
                f"{file} holds the bytes of an earlier export (exported at {older[0].exported_at}), not "
                f"those of its newest record (exported at {record.exported_at}): an older version was put "
                "back",
                file,
            )
        wrong.append(
            f"the file has sha256 {sha256} and {size} bytes, its record says {record.sha256} and "
            f"{record.bytes} bytes"
        )
    try:
        manifest: bytes | None = view.read_bytes(f"{file}{MANIFEST_SUFFIX}")
    except FileNotFoundError:
        manifest = None
    if manifest is None:
        wrong.append("the manifest is gone")
    elif sha256_hex(manifest) != record.manifest_sha256:
        try:
            described = json.loads(manifest)
        except ValueError:
            described = None
        described = described if isinstance(described, dict) else {}
        changed = [key for key in ("sha256", "bytes", "events") if described.get(key) != getattr(record, key)]
        wrong.append(
            f"the manifest was changed after it was signed ({', '.join(changed)} differ)"
            if changed
            else "the manifest was changed after it was signed"
        )
    if not wrong:
        return None
    return EvidenceProblem(
        RECORD_MISMATCH, f"{file} differs from its signed record: {'; '.join(wrong)}", file
    )


def check_evidence(
    view: ArchiveView,
    keyring: Keyring,
    *,
    published_seal_hashes: Iterable[str] = (),
    require_seals: bool = True,
    digests: Mapping[str, tuple[str, int]] | None = None,
) -> list[EvidenceProblem]:
    """
    Check an archive's evidence; an empty list when nothing is wrong.

    :param view: the archive, e.g. :class:`~.view.LocalArchive`.
    :param keyring: the public keys of every key that may have signed it.
    :param published_seal_hashes: seal hashes published outside the archive, each of which must be the
        hash of a seal in it; without them, deleting the newest seals cannot be detected.
    :param require_seals: report a series that has records but no seal (``seal_missing``).
    :param digests: the hex SHA-256 and size of export files the caller has read already, by path, so
        that they are not read twice (the archive check passes what it hashed); others are read here.
    :returns: the problems, by path, at most one of a kind per path.
    """
    index = _index(view, keyring)
    problems = list(index.problems)
    for file in index.files:
        problem = _check_file(view, index, file, digests or {})
        problems.extend([problem] if problem else [])
    kept: dict[str, list[Record]] = defaultdict(list)
    for record in index.history.values():
        kept[record.path].append(record)
    for file in sorted(set(index.records) | set(kept)):
        if file not in index.files:
            evidence = "its signed record remains" if file in index.records else "its records are kept"
            problems.append(
                EvidenceProblem(
                    INTERVAL_REMOVED,
                    f"{file} is gone, but {evidence}: restore it from a backup, or re-export it",
                    file,
                )
            )
    series = {*index.files.values(), *index.seals}
    series |= {(r.workspace_gid, filter_series(r.filters)) for r in index.records.values()}
    for gid, name in sorted(series):
        seals = index.seals.get((gid, name), [])
        if not seals:
            if require_seals:
                problems.append(
                    EvidenceProblem(
                        SEAL_MISSING,
                        f"Workspace {gid}, series {name} has records but no seal: seal it; until then, "
                        "intervals deleted with their records cannot be detected",
                        f"workspace_gid={gid}/{SEALS_DIR}/series={name}",
                    )
                )
            continue
        current = {
            path: record
            for path, record in index.records.items()
            if (record.workspace_gid, filter_series(record.filters)) == (gid, name)
        }
        files = {path for path, key in index.files.items() if key == (gid, name)}
        problems.extend(
            audit_seals(
                chain=seals,
                newest=index.newest[(gid, name)],
                current=current,
                history=index.history,
                files=files,
            )
        )
    every_hash = {link.hash for links in index.seals.values() for link in links}
    for published_hash in published_seal_hashes:
        problem = published_seal_problem(published_hash, every_hash, series="the archive")
        problems.extend([problem] if problem else [])
    unique = {(problem.kind, problem.path): problem for problem in reversed(problems)}
    return sorted(unique.values(), key=lambda p: (p.path or "", p.kind, p.message))


def current_records(
    view: ArchiveView, keyring: Keyring, *, workspace_gid: str, filters: Mapping[str, str | None]
) -> list[Record]:
    """
    The current records of a series, as :func:`~.seals.make_seal` seals them: those whose signatures are
    good, whose files are there, and that no kept record supersedes. Files are not read: a seal pins
    records, and a file that differs from its record is reported by :func:`check_evidence` whether or
    not it was sealed.
    """
    return series_state(view, keyring)(workspace_gid, filters)[0]


def newest_seal(
    view: ArchiveView, keyring: Keyring, *, workspace_gid: str, filters: Mapping[str, str | None]
) -> Seal | None:
    """The valid seal of a series with the highest number, or ``None`` when it has none."""
    return series_state(view, keyring)(workspace_gid, filters)[1]


class SeriesState:
    """What an archive's records and seals say of each series, read once (see :func:`series_state`)."""

    def __init__(self, index: _Index) -> None:
        self._index = index

    @property
    def series(self) -> dict[SeriesKey, dict[str, str | None]]:
        """
        The filters of each series (workspace gid, series name) that has a readable current record,
        whether or not its signature is good: sealing such a series must fail rather than skip it.
        """
        return dict(self._index.filters)

    def __call__(
        self, workspace_gid: str, filters: Mapping[str, str | None]
    ) -> tuple[list[Record], Seal | None]:
        """The :func:`current_records` and the :func:`newest_seal` of one series."""
        index = self._index
        series = (workspace_gid, filter_series(filters))
        records = [
            record
            for file, record in sorted(index.records.items())
            if index.files.get(file) == series and not index.later(record)
        ]
        return records, index.newest.get(series)


def series_state(view: ArchiveView, keyring: Keyring) -> SeriesState:
    """
    Read the archive's records and seals once, for every series: sealing every series of an archive
    needs each one's current records and newest seal, and each reads every record and seal.
    """
    return SeriesState(_index(view, keyring))
