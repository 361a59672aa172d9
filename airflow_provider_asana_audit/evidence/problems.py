"""
What the evidence check can find: the kinds of problem, and the problem itself.

.. seealso:: docs/evidence.md#what-the-check-reports
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVIDENCE_PROBLEM_KINDS",
    "INTERVAL_REMOVED",
    "RECORD_MISMATCH",
    "RECORD_MISSING",
    "SEAL_CHAIN_BROKEN",
    "SEAL_MISSING",
    "SEAL_UNPUBLISHED_MISMATCH",
    "SIGNATURE_BAD",
    "SIGNATURE_UNKNOWN_KEY",
    "VERSION_ROLLED_BACK",
    "EvidenceProblem",
]

RECORD_MISSING = "record_missing"
RECORD_MISMATCH = "record_mismatch"
SIGNATURE_BAD = "signature_bad"
SIGNATURE_UNKNOWN_KEY = "signature_unknown_key"
INTERVAL_REMOVED = "interval_removed"
VERSION_ROLLED_BACK = "version_rolled_back"
SEAL_MISSING = "seal_missing"
SEAL_CHAIN_BROKEN = "seal_chain_broken"
SEAL_UNPUBLISHED_MISMATCH = "seal_unpublished_mismatch"

#: Every kind of problem, with what it means.
EVIDENCE_PROBLEM_KINDS: dict[str, str] = {
    RECORD_MISSING: "an export file has no signed record",
    RECORD_MISMATCH: "an export file or its manifest differs from its signed record",
    SIGNATURE_BAD: "a record or seal is not intact: its signature does not match its content",
    SIGNATURE_UNKNOWN_KEY: "a record or seal is signed by a key that is not in the keyring",
    INTERVAL_REMOVED: "an interval that was recorded or sealed is gone",
    VERSION_ROLLED_BACK: "an interval holds an older (or another) version than its newest record or seal",
    SEAL_MISSING: "a series has records but no seal",
    SEAL_CHAIN_BROKEN: "the seals of a series do not form one unbroken chain",
    SEAL_UNPUBLISHED_MISMATCH: "a seal hash published outside the archive is not in it",
}


@dataclass(frozen=True)
class EvidenceProblem:
    """
    One thing the evidence check found wrong.

    :param kind: one of :data:`EVIDENCE_PROBLEM_KINDS`.
    :param message: what is wrong, for people.
    :param path: the object concerned, below the archive's base (``/``-separated), if one is.
    """

    kind: str
    message: str
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "path": self.path}
