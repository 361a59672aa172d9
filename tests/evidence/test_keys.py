"""
Signing keys, public keys, fingerprints and the keyring; and the secret: a private key never appears
in a ``repr``, a ``str``, an error (its text, arguments, chained context or traceback) or a pickle.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import re
import traceback

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airflow_provider_asana_audit.evidence import Keyring, PublicKey, SigningKey
from airflow_provider_asana_audit.evidence.keys import encode_signature
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogSignatureError

# RFC 8032, section 7.1, test 1: a secret key, its public key, and its signature of the empty message.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25b"
    "f5f0595bbe24655141438e7a100b"
)


def _secret_parts(key: SigningKey) -> list[str]:
    """What must never be seen of ``key``: its PEM text, each line of its body, its seed."""
    pem = key.export_private_pem()
    body = [line for line in pem.splitlines() if not line.startswith("-----")]
    seed = key._key.private_bytes_raw()  # the 32 secret bytes
    return [pem, *body, *(line[8:40] for line in body), seed.hex()]


def _everything_about(error: BaseException) -> str:
    """An error's text, repr, arguments, attributes, chained errors and traceback."""
    parts = [str(error), repr(error), repr(error.args), repr(vars(error))]
    parts += traceback.format_exception(type(error), error, error.__traceback__)
    for chained in (error.__cause__, error.__context__):
        if chained is not None:
            parts.append(_everything_about(chained))
    return "\n".join(parts)


def test_a_key_pair_round_trips_through_pem() -> None:
    key = SigningKey.generate()
    loaded = SigningKey.from_pem(key.export_private_pem())
    public = PublicKey.from_pem(key.public_key.pem)
    assert loaded.fingerprint == key.fingerprint == public.fingerprint
    assert public == key.public_key
    assert hash(public) == hash(key.public_key)
    assert key.export_private_pem().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert key.public_key.pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert public.verifies(loaded.sign(b"data"), b"data")
    assert not public.verifies(loaded.sign(b"data"), b"other data")
    assert SigningKey.generate().fingerprint != key.fingerprint


def test_a_pem_typed_on_one_line_with_backslash_n_loads() -> None:
    key = SigningKey.generate()
    one_line = key.export_private_pem().strip().replace("\n", "\\n")
    assert SigningKey.from_pem(f"  {one_line}  ").fingerprint == key.fingerprint


def test_the_rfc_8032_vector() -> None:
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET))
    assert key.public_key.raw == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIGNATURE
    assert key.fingerprint == "ed25519:" + hashlib.sha256(RFC8032_PUBLIC).hexdigest()[:32]
    assert re.fullmatch(r"ed25519:[0-9a-f]{32}", key.fingerprint)


def test_the_keyring_verifies_with_the_right_key_and_refuses_an_unknown_one() -> None:
    old, new, stranger = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    keyring = Keyring([old.public_key, new.public_key.pem])
    assert len(keyring) == 2
    assert old.fingerprint in keyring
    assert stranger.fingerprint not in keyring
    for key in (old, new):  # both keys of a rotation verify
        keyring.verify(fingerprint=key.fingerprint, signature=encode_signature(key.sign(b"x")), data=b"x")
    with pytest.raises(AsanaAuditLogSignatureError, match="not in the keyring") as unknown:
        keyring.verify(
            fingerprint=stranger.fingerprint, signature=encode_signature(stranger.sign(b"x")), data=b"x"
        )
    assert unknown.value.kind == "signature_unknown_key"
    with pytest.raises(AsanaAuditLogSignatureError, match="changed after it was signed") as bad:
        keyring.verify(fingerprint=old.fingerprint, signature=encode_signature(old.sign(b"x")), data=b"y")
    assert bad.value.kind == "signature_bad"
    with pytest.raises(AsanaAuditLogSignatureError) as garbled:
        keyring.verify(fingerprint=old.fingerprint, signature="not base64!", data=b"x")
    assert garbled.value.kind == "signature_bad"
    restored = pickle.loads(pickle.dumps(bad.value))
    assert (str(restored), restored.kind) == (str(bad.value), "signature_bad")


def test_an_empty_keyring_is_refused() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="holds no public key"):
        Keyring([])


def test_the_key_is_not_in_repr_str_or_a_pickle() -> None:
    key = SigningKey.generate()
    shown = "\n".join([repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"key": key})])
    assert key.fingerprint in shown
    assert not [part for part in _secret_parts(key) if part in shown]
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError, match="not pickled"):
        copy.deepcopy(key)
    assert not hasattr(key, "__dict__")


def test_a_damaged_private_key_is_refused_without_repeating_it() -> None:
    key = SigningKey.generate()
    pem = key.export_private_pem()
    damaged = pem.replace(pem.splitlines()[1][:10], "A" * 10)
    for text in (damaged, pem[: len(pem) // 2], pem.replace("PRIVATE KEY", "RSA PRIVATE KEY")):
        with pytest.raises(
            AsanaAuditLogConfigError, match="not an unencrypted Ed25519 private key"
        ) as refused:
            SigningKey.from_pem(text)
        seen = _everything_about(refused.value)
        assert refused.value.__context__ is None
        assert refused.value.__cause__ is None
        assert not [part for part in [*_secret_parts(key), text] if part in seen]


def test_a_private_key_given_as_a_public_key_is_refused_without_repeating_it() -> None:
    key = SigningKey.generate()
    for attempt in (
        lambda: PublicKey.from_pem(key.export_private_pem()),
        lambda: Keyring([key.export_private_pem()]),
    ):
        with pytest.raises(
            AsanaAuditLogConfigError, match="private key was given where a public key"
        ) as refused:
            attempt()
        assert not [part for part in _secret_parts(key) if part in _everything_about(refused.value)]


def test_a_public_key_that_is_not_ed25519_is_refused() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="not an Ed25519 public key"):
        PublicKey.from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(AsanaAuditLogConfigError, match="32 bytes, not 31"):
        PublicKey(b"\x01" * 31)
