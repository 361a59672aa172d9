"""
Seals: signed statements of what a series (a workspace's exports with one set of filters) held when it
was sealed, chained to each other.

A seal lists every interval of the series with the hash of its current record, and the Merkle root of
those ``(start_at, record sha256)`` leaves; it names the previous seal's :func:`seal_hash`, so the seals
of a series form one chain. A seal never covers less than the previous one: :func:`make_seal` refuses
to drop an interval. Publishing each new seal's hash outside the archive (a task log, an XCom, a
ticket) is what makes deleting the newest seals detectable. :mod:`.seal_audit` compares an archive
with its seals.

.. seealso:: docs/evidence.md#seals
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

from airflow_provider_asana_audit.evidence.canonical import canonical_json, read_stored, sha256_hex
from airflow_provider_asana_audit.evidence.keys import Keyring, SigningKey, encode_signature
from airflow_provider_asana_audit.evidence.paths import filter_series, seal_path
from airflow_provider_asana_audit.evidence.problems import SIGNATURE_BAD
from airflow_provider_asana_audit.evidence.records import Record, record_sha256
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogSignatureError
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

__all__ = [
    "SEAL_TYPE",
    "SEAL_VERSION",
    "Seal",
    "SealLink",
    "SealedInterval",
    "make_seal",
    "merkle_root",
    "seal_hash",
    "seal_objects",
    "stored_seal_hash",
    "verify_seal",
]

#: The ``type`` of every seal's JSON.
SEAL_TYPE = "asana_audit_log_seal"
#: The version of the seal format this package writes and reads.
SEAL_VERSION = 1


@dataclass(frozen=True)
class SealedInterval:
    """One interval a seal covers: its file's path below the base, and the hash of its current record."""

    start_at: str
    end_at: str
    path: str
    record: str


@dataclass(frozen=True)
class Seal:
    """
    A signed seal of a series; the fields are its JSON's keys, with ``"type"``.

    :param series: ``unfiltered`` or ``f<hash>`` (see :func:`~.paths.filter_series`).
    :param sequence: its number in the series' chain, from 1.
    :param previous: the :func:`seal_hash` of seal ``sequence - 1``; ``None`` for the first.
    :param covered: every interval of the series, in the order of their start.
    :param merkle_root: :func:`merkle_root` of ``covered``.
    """

    version: int
    workspace_gid: str
    filters: dict[str, str | None]
    series: str
    sequence: int
    previous: str | None
    sealed_at: str
    intervals: int
    first_start_at: str | None
    last_end_at: str | None
    covered: tuple[SealedInterval, ...]
    merkle_root: str
    key: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        # Built by hand: asdict deep-copies every covered interval, and a year of daily seals covers
        # tens of thousands of them (it took half of the check's time with the public keys).
        value: dict[str, Any] = {"type": SEAL_TYPE}
        value.update((field.name, getattr(self, field.name)) for field in fields(self))
        value["filters"] = dict(self.filters)
        value["covered"] = [
            {"start_at": item.start_at, "end_at": item.end_at, "path": item.path, "record": item.record}
            for item in self.covered
        ]
        return value

    def signed_bytes(self) -> bytes:
        """What is signed: the canonical JSON of the seal without its ``signature``."""
        unsigned = self.to_dict()
        del unsigned["signature"]
        return canonical_json(unsigned)

    def to_json(self) -> bytes:
        """The seal as stored: its canonical JSON and a newline."""
        return canonical_json(self.to_dict()) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> Seal:
        """
        Read a stored seal; its signature is not checked (see :func:`verify_seal`).

        :raises ValueError: when it is not a seal of this format (the message says why).
        """
        names = [field.name for field in fields(cls)]
        value = read_stored(data, kind=SEAL_TYPE, version=SEAL_VERSION, names=names)
        try:
            covered = tuple(SealedInterval(**interval) for interval in value["covered"])
            for interval in covered:
                parse_instant(interval.start_at)
        except (AsanaAuditLogConfigError, TypeError, ValueError) as err:
            raise ValueError(f"has a malformed list of covered intervals ({err})") from None
        seal = cls(**{**{name: value[name] for name in names}, "covered": covered})
        if not isinstance(seal.sequence, int) or not all(
            isinstance(getattr(seal, name), str) for name in ("workspace_gid", "series", "key", "signature")
        ):
            raise ValueError("has a sequence that is not an integer, or fields that are not strings")
        return seal


@dataclass(frozen=True)
class SealLink:
    """
    A seal's place in its series' chain, without the intervals it covers: all that checking the chain
    needs of every seal but the newest.

    :param path: where the seal is stored, below the base.
    :param hash: its :func:`seal_hash`.
    """

    path: str
    workspace_gid: str
    series: str
    sequence: int
    previous: str | None
    hash: str

    @classmethod
    def of(cls, seal: Seal, *, path: str) -> SealLink:
        """The link of a seal that was read and verified."""
        return cls(path, seal.workspace_gid, seal.series, seal.sequence, seal.previous, seal_hash(seal))

    @classmethod
    def from_json(cls, data: bytes, *, path: str, stored_hash: str) -> SealLink:
        """
        The link of a stored seal, read without checking it. Use it only when a verified seal names
        ``stored_hash`` (:func:`stored_seal_hash` of ``data``) as its ``previous``: then these are the bytes
        that were sealed, and the signature of the seal naming them vouches for them.

        :raises ValueError: when it has not the fields of a seal.
        """
        try:
            value = json.loads(data)
            link = cls(
                path,
                value["workspace_gid"],
                value["series"],
                value["sequence"],
                value["previous"],
                stored_hash,
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"is not a seal ({err!r})") from None
        if not isinstance(link.sequence, int) or not isinstance(link.previous, (str, type(None))):
            raise ValueError("is not a seal (its sequence or previous is of the wrong type)")
        return link


def stored_seal_hash(data: bytes) -> str:
    """
    The hash of a stored seal's bytes: its :func:`seal_hash` when it is stored as written
    (:meth:`Seal.to_json`, canonical JSON and a newline), another hash when it was rewritten.
    """
    return sha256_hex(data.removesuffix(b"\n"))


def merkle_root(leaves: Iterable[tuple[str, str]]) -> str:
    """
    The Merkle root (RFC 6962 hashing: a ``0x00`` prefix for leaves, ``0x01`` for nodes) over
    ``(start_at, record sha256)`` leaves, sorted by instant, then hash; hex SHA-256.
    """
    ordered = sorted(leaves, key=lambda leaf: (parse_instant(leaf[0]), leaf[1]))
    hashes = [hashlib.sha256(b"\x00" + canonical_json(list(leaf))).digest() for leaf in ordered]

    def root(nodes: list[bytes]) -> bytes:
        if not nodes:
            return hashlib.sha256(b"").digest()
        if len(nodes) == 1:
            return nodes[0]
        split = 1 << ((len(nodes) - 1).bit_length() - 1)  # the largest power of 2 below the count
        return hashlib.sha256(b"\x01" + root(nodes[:split]) + root(nodes[split:])).digest()

    return root(hashes).hex()


def seal_hash(seal: Seal) -> str:
    """The seal's identity, to publish outside the archive: hex SHA-256 of its canonical JSON, signed."""
    return sha256_hex(canonical_json(seal.to_dict()))


def seal_objects(seal: Seal) -> dict[str, bytes]:
    """What to store for a new seal, by path below the base (see :func:`~.paths.seal_path`)."""
    path = seal_path(
        workspace_gid=seal.workspace_gid,
        series=seal.series,
        sequence=seal.sequence,
        seal_hash=seal_hash(seal),
    )
    return {path: seal.to_json()}


def make_seal(
    *,
    key: SigningKey,
    workspace_gid: str,
    filters: Mapping[str, str | None],
    records: Iterable[Record],
    previous: Seal | None,
    sealed_at: datetime | None = None,
) -> Seal:
    """
    Seal the current records of a series. Verify them first (:func:`~.check.current_records`).

    :param records: the current record of every interval of the series.
    :param previous: the series' newest seal, ``None`` for its first.
    :param sealed_at: when; default now.
    :raises AsanaAuditLogConfigError: when a record belongs to another series, two are of one file, or
        an interval that ``previous`` covers has no record (a seal never covers less than the last).
    """
    series = filter_series(filters)
    chosen = sorted(records, key=lambda record: (parse_instant(record.start_at), record.path))
    paths = [record.path for record in chosen]
    for record in chosen:
        if record.workspace_gid != workspace_gid or filter_series(record.filters) != series:
            raise AsanaAuditLogConfigError(
                f"The record of {record.path} belongs to another series than workspace {workspace_gid}, "
                f"series {series}: seal each series with its own records"
            )
    if len(set(paths)) != len(paths):
        raise AsanaAuditLogConfigError("Two records of one file were given: seal each file's current record")
    if previous is not None:
        if (previous.workspace_gid, previous.series) != (workspace_gid, series):
            raise AsanaAuditLogConfigError(
                f"The previous seal is of workspace {previous.workspace_gid}, series {previous.series}, "
                f"not of workspace {workspace_gid}, series {series}: give this series' newest seal"
            )
        dropped = sorted({interval.path for interval in previous.covered} - set(paths))
        if dropped:
            raise AsanaAuditLogConfigError(
                f"{len(dropped)} intervals sealed by seal {previous.sequence} have no record now "
                f"(e.g. {dropped[0]}): check the archive and restore them before sealing again"
            )
    covered = tuple(SealedInterval(r.start_at, r.end_at, r.path, record_sha256(r)) for r in chosen)
    unsigned = Seal(
        version=SEAL_VERSION,
        workspace_gid=workspace_gid,
        filters=dict(filters),
        series=series,
        sequence=previous.sequence + 1 if previous is not None else 1,
        previous=seal_hash(previous) if previous is not None else None,
        sealed_at=format_instant(sealed_at or datetime.now(timezone.utc)),
        intervals=len(covered),
        first_start_at=covered[0].start_at if covered else None,
        last_end_at=max((i.end_at for i in covered), key=parse_instant) if covered else None,
        covered=covered,
        merkle_root=merkle_root((i.start_at, i.record) for i in covered),
        key=key.fingerprint,
        signature="",
    )
    return Seal(**{**_fields(unsigned), "signature": encode_signature(key.sign(unsigned.signed_bytes()))})


def _fields(seal: Seal) -> dict[str, Any]:
    """The seal's fields, ``covered`` kept as :class:`SealedInterval` objects."""
    return {field.name: getattr(seal, field.name) for field in fields(seal)}


def verify_seal(seal: Seal, keyring: Keyring, *, where: str = "") -> None:
    """
    Check a seal's signature, and that its Merkle root and counts are those of its intervals.

    :param where: the seal's path, for the message.
    :raises AsanaAuditLogSignatureError: ``signature_unknown_key`` or ``signature_bad``.
    """
    what = f"The seal {where or seal.sequence}"
    keyring.verify(fingerprint=seal.key, signature=seal.signature, data=seal.signed_bytes(), what=what)
    if seal.merkle_root != merkle_root((i.start_at, i.record) for i in seal.covered) or seal.intervals != len(
        seal.covered
    ):
        raise AsanaAuditLogSignatureError(
            f"{what} is signed, but its Merkle root or count does not match its intervals: it was made wrong",
            kind=SIGNATURE_BAD,
        )
