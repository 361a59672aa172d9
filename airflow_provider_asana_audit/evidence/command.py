"""
The command line: ``python -m airflow_provider_asana_audit.evidence make-key --out-public FILE``
makes a signing key; ``fingerprint FILE`` prints a public key's fingerprint.

.. seealso:: docs/evidence.md#keys
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_asana_audit.evidence.keys import PublicKey, SigningKey
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError

__all__ = ["build_parser", "main"]

PROG = "python -m airflow_provider_asana_audit.evidence"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Keys of the archive's signed evidence.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser(
        "make-key",
        help="make an Ed25519 key pair",
        description="Make an Ed25519 key pair: the public key goes to --out-public, the private key to "
        "standard output, or to --out-private (created with mode 0600).",
    )
    make.add_argument(
        "--out-public", required=True, type=Path, metavar="FILE", help="new file for the public key"
    )
    make.add_argument(
        "--out-private",
        type=Path,
        metavar="FILE",
        help="new file (mode 0600) for the private key",
    )
    show = commands.add_parser("fingerprint", help="print a public key's fingerprint")
    show.add_argument("public_key", type=Path, metavar="FILE", help="a public key PEM file")
    return parser


def _create(path: Path, text: str, *, mode: int) -> None:
    """Write ``text`` to the new file ``path`` with ``mode``; ``FileExistsError`` when it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="ascii") as stream:
        os.fchmod(stream.fileno(), mode)  # whatever the umask
        stream.write(text)


def _make_key(public: Path, private: Path | None) -> int:
    if private is not None and private.resolve() == public.resolve():
        print(f"{PROG}: error: --out-public and --out-private are the same file", file=sys.stderr)
        return 2
    key = SigningKey.generate()
    try:
        _create(public, key.public_key.pem, mode=0o644)
        if private is not None:
            _create(private, key.export_private_pem(), mode=0o600)
    except FileExistsError as err:
        print(
            f"{PROG}: error: {err.filename} exists: choose another file, or remove it first", file=sys.stderr
        )
        if private is not None and public.exists() and err.filename == str(private):
            public.unlink()  # the pair is useless without its private key
        return 2
    if private is None:
        sys.stdout.write(key.export_private_pem())
    where = f"in {private} (mode 0600)" if private is not None else "above, on standard output"
    print(
        f"Key {key.fingerprint}: the public key is in {public}; give it to whoever verifies the archive.\n"
        f"The private key is {where}: store it in an Airflow connection's password (a secrets backend, "
        "if you have one), then delete every other copy. Whoever holds it can sign records and seals.",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit status (0, or 2 for a wrong command line or file)."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "make-key":
        return _make_key(arguments.out_public, arguments.out_private)
    try:
        print(PublicKey.from_file(arguments.public_key).fingerprint)
    except (OSError, AsanaAuditLogConfigError) as err:
        print(f"{PROG}: error: {arguments.public_key}: {err}", file=sys.stderr)
        return 2
    return 0
