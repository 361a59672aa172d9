"""``python -m airflow_provider_asana_audit.evidence make-key`` and ``fingerprint``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_asana_audit.evidence import PublicKey, SigningKey
from airflow_provider_asana_audit.evidence.command import main


def test_make_key_prints_the_private_key_and_writes_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = tmp_path / "evidence.pub"
    assert main(["make-key", "--out-public", str(public)]) == 0
    out, err = capsys.readouterr()
    key = SigningKey.from_pem(out)
    assert out.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert out.count("-----BEGIN") == 1
    assert PublicKey.from_file(public) == key.public_key
    assert "Airflow connection's password" in err
    assert key.fingerprint in err
    assert [p.name for p in tmp_path.iterdir()] == ["evidence.pub"]  # the private key is in no file


def test_make_key_writes_the_private_key_to_a_file_only_its_owner_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public, private = tmp_path / "evidence.pub", tmp_path / "evidence.key"
    assert main(["make-key", "--out-public", str(public), "--out-private", str(private)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "PRIVATE KEY" not in err
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert SigningKey.from_pem(private.read_text()).public_key == PublicKey.from_file(public)
    assert str(private) in err
    assert "Airflow connection's password" in err


def test_make_key_overwrites_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public, private = tmp_path / "evidence.pub", tmp_path / "evidence.key"
    public.write_text("mine")
    assert main(["make-key", "--out-public", str(public)]) == 2
    assert public.read_text() == "mine"
    assert "exists" in capsys.readouterr().err
    public.unlink()
    private.write_text("mine too")
    assert main(["make-key", "--out-public", str(public), "--out-private", str(private)]) == 2
    assert private.read_text() == "mine too"
    assert not public.exists()
    assert main(["make-key", "--out-public", str(public), "--out-private", str(public)]) == 2
    assert "the same file" in capsys.readouterr().err


def test_fingerprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = SigningKey.generate()
    (tmp_path / "k.pub").write_text(key.public_key.pem)
    assert main(["fingerprint", str(tmp_path / "k.pub")]) == 0
    assert capsys.readouterr().out == f"{key.fingerprint}\n"
    (tmp_path / "k.key").write_text(key.export_private_pem())
    assert main(["fingerprint", str(tmp_path / "k.key")]) == 2
    assert "private key was given" in capsys.readouterr().err


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    public = tmp_path / "evidence.pub"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_asana_audit.evidence",
            "make-key",
            "--out-public",
            str(public),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    assert SigningKey.from_pem(done.stdout).public_key == PublicKey.from_file(public)
