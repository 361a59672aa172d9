"""
Tamper-evident evidence of an archive of exports: signed records of what each export wrote, and signed
seals over what each series holds, verifiable with public keys only.

- :mod:`.keys`: Ed25519 signing keys, public keys, fingerprints and the keyring;
- :mod:`.records`: the signed record of one export, chained per interval;
- :mod:`.seals`: the seals of a series, their Merkle root and chain; :mod:`.seal_audit`: an archive
  against its seals;
- :mod:`.check`: the check of an archive through a read-only :mod:`.view`;
- :mod:`.paths`: where records and seals are stored; :mod:`.problems`: what the check reports;
- ``python -m airflow_provider_asana_audit.evidence make-key`` (:mod:`.command`).

.. seealso:: docs/evidence.md
"""

from __future__ import annotations

from airflow_provider_asana_audit.evidence.check import check_evidence, current_records, newest_seal
from airflow_provider_asana_audit.evidence.keys import (
    Keyring,
    PublicKey,
    SigningKey,
    key_fingerprint,
)
from airflow_provider_asana_audit.evidence.paths import history_path, record_path, seal_path
from airflow_provider_asana_audit.evidence.problems import EVIDENCE_PROBLEM_KINDS, EvidenceProblem
from airflow_provider_asana_audit.evidence.records import (
    Record,
    record_objects,
    record_sha256,
    sign_manifest,
    sign_record,
    verify_record,
)
from airflow_provider_asana_audit.evidence.seal_audit import audit_seals
from airflow_provider_asana_audit.evidence.seals import (
    Seal,
    SealedInterval,
    SealLink,
    make_seal,
    merkle_root,
    seal_hash,
    seal_objects,
    verify_seal,
)
from airflow_provider_asana_audit.evidence.view import (
    ArchiveView,
    LocalArchive,
    MemoryArchive,
    StorageArchive,
)

__all__ = [
    "EVIDENCE_PROBLEM_KINDS",
    "ArchiveView",
    "EvidenceProblem",
    "Keyring",
    "LocalArchive",
    "MemoryArchive",
    "PublicKey",
    "Record",
    "Seal",
    "SealLink",
    "SealedInterval",
    "SigningKey",
    "StorageArchive",
    "audit_seals",
    "check_evidence",
    "current_records",
    "history_path",
    "key_fingerprint",
    "make_seal",
    "merkle_root",
    "newest_seal",
    "record_objects",
    "record_path",
    "record_sha256",
    "seal_hash",
    "seal_objects",
    "seal_path",
    "sign_manifest",
    "sign_record",
    "verify_record",
    "verify_seal",
]
