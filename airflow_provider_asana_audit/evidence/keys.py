"""
Ed25519 keys: the private key that signs records and seals, the public keys that verify them, and the
keyring of every public key an archive may have been signed with (keys are rotated).

A private key is stored as unencrypted PKCS#8 PEM text in an Airflow connection's password, so that
Airflow's secrets backends and masking keep it. It never appears in a ``repr``, a ``str``, an error
message or a pickle of a :class:`SigningKey`.

.. seealso:: docs/evidence.md#keys
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from airflow_provider_asana_audit.evidence.problems import SIGNATURE_BAD, SIGNATURE_UNKNOWN_KEY
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogSignatureError

__all__ = [
    "Keyring",
    "PublicKey",
    "SigningKey",
    "encode_signature",
    "key_fingerprint",
]

#: What a fingerprint starts with.
FINGERPRINT_PREFIX = "ed25519:"


def key_fingerprint(raw_public_key: bytes) -> str:
    """A public key's fingerprint: ``ed25519:`` and the first 32 hex digits of SHA-256 of its 32 bytes."""
    return FINGERPRINT_PREFIX + hashlib.sha256(raw_public_key).hexdigest()[:32]


def _pem_text(text: str) -> str:
    """PEM text as stored: surrounding blanks removed, and ``\\n`` typed as two characters made real."""
    text = text.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text


class PublicKey:
    """
    An Ed25519 public key, which verifies signatures.

    :param raw: its 32 bytes.
    """

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise AsanaAuditLogConfigError(
                f"An Ed25519 public key is 32 bytes, not {len(raw)}: give the public key PEM that "
                "make-key wrote"
            )
        self.raw = raw
        self._key = Ed25519PublicKey.from_public_bytes(raw)

    @classmethod
    def from_pem(cls, text: str) -> PublicKey:
        """
        Load a public key from PEM text (``-----BEGIN PUBLIC KEY-----``).

        :raises AsanaAuditLogConfigError: when ``text`` is not an Ed25519 public key; the message never
            repeats ``text``, which may be a private key given by mistake.
        """
        text = _pem_text(text)
        if "PRIVATE KEY" in text:
            raise AsanaAuditLogConfigError(
                "A private key was given where a public key belongs: give the public key "
                "(-----BEGIN PUBLIC KEY-----) and keep the private key in the connection's password only"
            )
        loaded: object = None
        # Refused below, outside this block, so that the error has no chained context.
        with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
            loaded = serialization.load_pem_public_key(text.encode("utf-8"))
        if not isinstance(loaded, Ed25519PublicKey):
            raise AsanaAuditLogConfigError(
                "The public key is not an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----): give "
                "the public key file that make-key wrote"
            )
        return cls(loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    @classmethod
    def from_file(cls, path: str | Path) -> PublicKey:
        """Load a public key from a PEM file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise AsanaAuditLogConfigError(
                f"Cannot read the public key file {path}: {reason}. Give the .pub file that make-key wrote"
            ) from None
        return cls.from_pem(text)

    @property
    def fingerprint(self) -> str:
        """See :func:`key_fingerprint`."""
        return key_fingerprint(self.raw)

    @property
    def pem(self) -> str:
        """The key as PEM text (SubjectPublicKeyInfo), ending in a newline."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.fingerprint})"


class SigningKey:
    """
    An Ed25519 private key, which signs records and seals.

    Its ``repr`` and ``str`` show its fingerprint only, and it refuses to be pickled (so that it cannot
    reach an XCom or a trigger's arguments): load it where it is used, from the connection.
    """

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        #: The public key that verifies this key's signatures.
        self.public_key = PublicKey(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, text: str) -> SigningKey:
        """
        Load a private key from unencrypted PKCS#8 PEM text (``-----BEGIN PRIVATE KEY-----``), as stored
        in a connection's password (a ``\\n`` typed as two characters counts as a line break).

        :raises AsanaAuditLogConfigError: when ``text`` is not one; the message never repeats it.
        """
        loaded: object = None
        # Refused below, outside this block, so that the error has no chained context.
        with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
            loaded = serialization.load_pem_private_key(_pem_text(text).encode("utf-8"), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise AsanaAuditLogConfigError(
                "The signing key is not an unencrypted Ed25519 private key in PEM (-----BEGIN PRIVATE "
                "KEY-----): make one with python -m airflow_provider_asana_audit.evidence make-key and "
                "store its private key, whole, in the connection's password"
            )
        return cls(loaded)

    @property
    def fingerprint(self) -> str:
        """The fingerprint of its public key."""
        return self.public_key.fingerprint

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of ``data``."""
        return self._key.sign(data)

    def export_private_pem(self) -> str:
        """The private key as unencrypted PKCS#8 PEM text: the secret, to store in a connection's password."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")

    def __repr__(self) -> str:
        return f"SigningKey({self.fingerprint})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("A SigningKey is not pickled or copied: load it from its connection where it is used")


class Keyring:
    """
    The public keys an archive may be signed with: the current key, and the earlier ones it replaced.

    :param keys: public keys, or their PEM text.
    :raises AsanaAuditLogConfigError: when there is none.
    """

    def __init__(self, keys: Iterable[PublicKey | str]) -> None:
        loaded = [key if isinstance(key, PublicKey) else PublicKey.from_pem(key) for key in keys]
        if not loaded:
            raise AsanaAuditLogConfigError(
                "The keyring holds no public key: give the public key of every signing key the archive "
                "has used"
            )
        self._keys = {key.fingerprint: key for key in loaded}

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> Keyring:
        """A keyring of the public keys in these PEM files."""
        return cls(PublicKey.from_file(path) for path in paths)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The keys' fingerprints, sorted."""
        return tuple(sorted(self._keys))

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._keys

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def public_key(self, fingerprint: str, *, what: str = "The object") -> PublicKey:
        """
        The key of ``fingerprint``.

        :param what: what was signed, for the message (``"The record <path>"``).

        :raises AsanaAuditLogSignatureError: (``signature_unknown_key``) when the keyring has no such key.
        """
        try:
            return self._keys[fingerprint]
        except KeyError:
            raise AsanaAuditLogSignatureError(
                f"{what} is signed by key {fingerprint!s:.80}, which is not in the keyring "
                f"({', '.join(self.fingerprints)}): add its public key if it is one of yours; otherwise "
                "the object was forged",
                kind=SIGNATURE_UNKNOWN_KEY,
            ) from None

    def verify(self, *, fingerprint: str, signature: str, data: bytes, what: str = "The object") -> None:
        """
        Check that ``signature`` (base64) is the signature of ``data`` by the key of ``fingerprint``.

        :param what: what was signed, for the message (``"The record <path>"``).

        :raises AsanaAuditLogSignatureError: ``signature_unknown_key`` when the key is not in the
            keyring, ``signature_bad`` when the signature does not match.
        """
        key = self.public_key(fingerprint, what=what)
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not key.verifies(raw, data):
            raise AsanaAuditLogSignatureError(
                f"{what} does not match its signature by key {fingerprint}: it was changed after it was "
                "signed",
                kind=SIGNATURE_BAD,
            )


def encode_signature(signature: bytes) -> str:
    """A signature as stored: base64."""
    return base64.b64encode(signature).decode("ascii")
