"""
Object storage (``airflow_provider_asana_audit.storage``): where an export goes, and how it gets there
whole. Tested directly and through the export operator, on the local disk and on an object store
that cannot rename.

The object store is fsspec's in-memory filesystem made to behave as S3 and GCS do (a move is a copy,
then a delete), attached to Airflow's object storage under its own scheme, so the operator reaches it
through ``ObjectStoragePath`` exactly as it reaches ``s3://``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath
from fsspec.implementations.memory import MemoryFileSystem
from pytest_mock import MockerFixture

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogAuthError,
    AsanaAuditLogConfigError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.layout import manifest_path
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.query import Page
from airflow_provider_asana_audit.storage import (
    PRIVATE_FILE_MODE,
    STAGING_GRACE_PERIOD,
    atomic_write,
    default_base,
    default_destination,
    executor_on_several_hosts,
    resolve_destination,
    sweep_staging,
)
from airflow_provider_asana_audit.storage.__main__ import main
from airflow_provider_asana_audit.testing import FakeAsana, Fault
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers.exports import midnight, read_events, serialise
from tests.helpers.waiting import wait_until

START, END = midnight(3), midnight(2)
DESTINATION = "noren://audit-bucket/asana/day.jsonl.gz"
#: Two hours ago: a staging object last modified then is stale for an export and for the sweep command.
STALE = time.time() - 2 * 3600


class NoRenameStore(MemoryFileSystem):
    """An in-memory object store whose only move is copy + delete, and which logs every write."""

    protocol = ("noren",)
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]
    written: ClassVar[list[str]] = []
    moves: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("noren://"):
            path = "/" + path.removeprefix("noren://")
        return super()._strip_protocol(path)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode:
            self.written.append(self._strip_protocol(path))
        return super()._open(path, mode, **kwargs)

    def mv(self, path1: str, path2: str, *args: Any, **kwargs: Any) -> None:
        self.moves.append((self._strip_protocol(path1), self._strip_protocol(path2)))
        self.copy(path1, path2)
        self.rm(path1)


@pytest.fixture
def store() -> Iterator[NoRenameStore]:
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.io.store import attach
    else:  # Airflow 2
        from airflow.io.store import attach  # type: ignore[no-redef]
    fsspec.register_implementation("noren", NoRenameStore, clobber=True)
    fs = NoRenameStore()
    NoRenameStore.store.clear()
    NoRenameStore.written.clear()
    NoRenameStore.moves.clear()
    attach(protocol="noren", fs=fs)
    yield fs
    NoRenameStore.store.clear()


def _export(destination: Any = DESTINATION, **kwargs: Any) -> dict[str, Any]:
    operator = AsanaAuditLogExportOperator(
        task_id="export",
        destination=destination,
        settle_period=timedelta(0),
        request_retry=RetryPolicy(max_attempts=2, backoff_base=0.01),
        page_size=20,
        **kwargs,
    )
    context: Any = {"data_interval_start": START, "data_interval_end": END}
    return operator.execute(context)


def _objects(store: NoRenameStore) -> dict[str, bytes]:
    return {path: store.cat_file(path) for path in store.find("/audit-bucket")}


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftover(directory: Path, name: str, *, modified: float | None = STALE) -> Path:
    """A staging file of ``name`` in ``directory``, as a killed attempt leaves it, last modified then."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".{name}.{uuid.uuid4().hex}.partial"
    path.write_bytes(b'{"gid":"1"')
    if modified is not None:
        os.utime(path, (modified, modified))
    return path


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that takes no permission away, so only the code's own mode makes a file private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# ---------------------------------------------------------------- where an export goes


@pytest.mark.parametrize(
    ("destination", "advice"),
    [
        pytest.param(
            "s3://bucket/asana/day.jsonl.gz",
            "apache-airflow-providers-amazon",
            # The test extra installs it, for the distributed end-to-end test's S3 API (moto).
            marks=pytest.mark.skipif(
                importlib.util.find_spec("airflow.providers.amazon") is not None,
                reason="apache-airflow-providers-amazon is installed, so s3:// is supported here",
            ),
        ),
        ("gs://bucket/asana/day.jsonl.gz", "apache-airflow-providers-google"),
        ("abfs://container/asana/day.jsonl.gz", "apache-airflow-providers-microsoft-azure"),
        ("nosuchfs://bucket/day.jsonl.gz", "install the Airflow provider that registers"),
    ],
)
def test_a_destination_without_filesystem_support_names_what_to_install(
    destination: str, advice: str
) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match=advice):
        resolve_destination(destination)


def test_an_export_to_a_destination_without_filesystem_support_fails_before_any_request(
    asana_conn: FakeAsana,
) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="apache-airflow-providers-google"):
        _export("gs://bucket/asana/day.jsonl.gz")

    assert asana_conn.stats.requests == 0


def test_a_relative_destination_is_refused() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="relative path"):
        resolve_destination("exports/day.jsonl.gz")


@pytest.mark.parametrize("destination", ["file:///data/asana/", "/data/asana/"])
def test_a_destination_that_names_a_directory_is_refused(destination: str) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="names a directory"):
        resolve_destination(destination)


def test_the_default_layout_is_partitioned_by_workspace_and_day() -> None:
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)

    path = default_destination(
        base_path="file:///data/asana",
        workspace_gid="42",
        start_at=start,
        end_at=start + timedelta(days=1),
        filters=dict.fromkeys(("event_type", "actor_type", "actor_gid", "resource_gid")),
    )

    assert str(path).endswith(
        "/data/asana/workspace_gid=42/date=2026-11-20/asana_audit_log_20261120T000000Z_20261121T000000Z.jsonl.gz"
    )


def test_differently_filtered_exports_of_one_interval_get_different_default_files() -> None:
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)

    def path(**filters: str | None) -> str:
        return str(
            default_destination(
                base_path="file:///data/asana",
                workspace_gid="42",
                start_at=start,
                end_at=start + timedelta(days=1),
                filters=filters,
            )
        )

    paths = {path(), path(event_type="user_login_failed"), path(event_type="task_deleted")}
    assert len(paths) == 3


def test_the_default_base_path_comes_from_the_airflow_config(
    asana_conn: FakeAsana, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__BASE_PATH", f"file://{tmp_path}/configured")

    summary = _export(destination=None)

    assert summary["path"].startswith(f"file://{tmp_path}/configured/workspace_gid=")
    assert f"date={START:%Y-%m-%d}" in summary["path"]


def test_the_default_base_is_base_path_else_the_config_option_else_under_airflow_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__BASE_PATH", "s3://bucket/configured")

    assert default_base("file:///data/asana") == "file:///data/asana"
    assert default_base("/data/asana") == "/data/asana"
    assert default_base(None) == "s3://bucket/configured"
    monkeypatch.delenv("AIRFLOW__ASANA_AUDIT_LOG__BASE_PATH")
    assert default_base(None) == f"file://{tmp_path / 'home'}/asana_audit_log"


@pytest.mark.parametrize(
    ("mounted", "several_hosts"),
    [
        ("ext4", True),  # the worker's own disk
        ("nfs4", False),  # EFS, Filestore, a ReadWriteMany volume: every worker sees the same files
        ("fuse.gcsfuse", False),
        ("cifs", False),
    ],
)
def test_a_local_path_counts_as_one_workers_own_unless_on_a_mount_hosts_can_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mounted: str, several_hosts: bool
) -> None:
    import airflow_provider_asana_audit.storage as storage

    mounts = tmp_path / "mounts"
    mounts.write_text(
        f"/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /data xfs rw 0 0\nserver:/x {tmp_path} {mounted} rw 0 0\n"
    )
    monkeypatch.setattr(storage, "_MOUNTS", str(mounts))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    path = ObjectStoragePath(f"file://{tmp_path}/asana/day.jsonl.gz")

    found = executor_on_several_hosts(path)

    assert found == ("CeleryExecutor" if several_hosts else None)


def test_an_object_store_path_is_shared_and_a_local_path_without_a_mount_table_is_not(
    store: NoRenameStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_provider_asana_audit.storage as storage

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "KubernetesExecutor")
    monkeypatch.setattr(storage, "_MOUNTS", str(tmp_path / "no-such-table"))  # as on macOS

    assert executor_on_several_hosts(ObjectStoragePath(DESTINATION)) is None
    local = ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz")
    assert executor_on_several_hosts(local) == "KubernetesExecutor"


@pytest.mark.parametrize("configured", [False, True], ids=["argument", "config option"])
def test_a_relative_default_base_is_refused_naming_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    if configured:
        monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__BASE_PATH", "exports")

    with pytest.raises(AsanaAuditLogConfigError, match="relative path") as caught:
        default_base(None if configured else "exports")

    named = "The option [asana_audit_log] base_path" if configured else "base_path 'exports'"
    assert named in str(caught.value)


@pytest.mark.parametrize(
    "file",
    ["file:///data/asana/day.jsonl.gz", "noren://audit-bucket/asana/day.jsonl"],
    ids=["local", "object store"],
)
def test_an_export_files_manifest_lies_beside_it_named_after_it(store: NoRenameStore, file: str) -> None:
    export = ObjectStoragePath(file)

    manifest = manifest_path(export)

    assert str(manifest) == f"{export}.manifest.json"
    assert manifest.protocol == export.protocol


# ---------------------------------------------------------------- staging and the atomic move


def test_a_failed_write_leaves_the_target_as_it_was_and_no_staging_object(tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/day.jsonl")
    target.write_bytes(b"previous\n")

    def write() -> None:
        with atomic_write(target) as staged:
            staged.file.write(b"half of the new")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write()

    assert (tmp_path / "day.jsonl").read_bytes() == b"previous\n"
    assert _files(tmp_path) == ["day.jsonl"]


def test_a_write_that_is_not_committed_leaves_the_target_as_it_was_and_no_staging_object(
    tmp_path: Path,
) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/day.jsonl")
    target.write_bytes(b"previous\n")

    with atomic_write(target) as staged:
        staged.file.write(b"new\n")

    assert staged.committed is False
    assert (tmp_path / "day.jsonl").read_bytes() == b"previous\n"
    assert _files(tmp_path) == ["day.jsonl"]


def _tree(root: Path) -> list[str]:
    """Every file and directory below ``root``, relative to it."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize("commit", [False, True], ids=["not committed", "committed"])
def test_a_write_without_a_commit_removes_the_directories_it_made_and_only_those(
    tmp_path: Path, commit: bool
) -> None:
    (tmp_path / "kept" / "empty").mkdir(parents=True)  # existed before: stays, though empty
    (tmp_path / "kept" / "full").mkdir()
    (tmp_path / "kept" / "full" / "other.jsonl").write_bytes(b"{}\n")
    before = _tree(tmp_path)
    targets = [
        ObjectStoragePath(f"file://{tmp_path}/kept/empty/made/day.jsonl"),
        ObjectStoragePath(f"file://{tmp_path}/kept/full/day.jsonl"),
        ObjectStoragePath(f"file://{tmp_path}/new/made/day.jsonl"),
    ]

    for target in targets:
        with atomic_write(target) as staged:
            staged.file.write(b"{}\n")
            if commit:
                staged.commit()

    if commit:
        assert all(target.exists() for target in targets)
    else:
        assert _tree(tmp_path) == before


def test_a_failed_write_keeps_a_directory_it_made_once_another_write_put_a_file_there(
    tmp_path: Path,
) -> None:
    failing = ObjectStoragePath(f"file://{tmp_path}/day=1/a.jsonl")
    sibling = ObjectStoragePath(f"file://{tmp_path}/day=1/b.jsonl")

    def write() -> None:
        with atomic_write(failing):
            with atomic_write(sibling) as other:  # found the directory: not its own
                other.file.write(b"{}\n")
                other.commit()
            raise OSError("read failed")

    with pytest.raises(OSError, match="read failed"):
        write()

    assert _tree(tmp_path) == ["day=1", "day=1/b.jsonl"]


@pytest.mark.parametrize("earlier", [False, True], ids=["new base", "base with an earlier empty folder"])
def test_a_failed_export_to_a_local_base_leaves_no_new_folder(
    asana_conn: FakeAsana, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier: bool
) -> None:
    workspace = f"asana/workspace_gid={asana_conn.workspace_gid}"
    if earlier:  # existed before the run: stays, though empty
        (tmp_path / workspace / "date=2020-01-01").mkdir(parents=True)
    before = _tree(tmp_path)
    conn = json.loads(asana_conn.connection_json())
    conn["password"] = "revoked-token"
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps(conn))

    with pytest.raises(AsanaAuditLogAuthError):
        _export(None, base_path=str(tmp_path / "asana"))

    assert _tree(tmp_path) == before
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", asana_conn.connection_json())
    summary = _export(None, base_path=str(tmp_path / "asana"))  # the next run makes the folder again
    assert Path(summary["path"]).parent == tmp_path / workspace / f"date={START:%Y-%m-%d}"
    assert summary["events"] == len(asana_conn.ground_truth(START, END))


def test_the_target_is_replaced_only_by_the_commit(tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/day.jsonl")
    target.write_bytes(b"previous\n")
    seen: list[bytes] = []

    with atomic_write(target) as staged:
        written = staged.file.write(b"new\n")
        seen.append(target.read_bytes())
        staged.commit()

    assert written == 4
    assert seen == [b"previous\n"]
    assert (tmp_path / "day.jsonl").read_bytes() == b"new\n"
    assert _files(tmp_path) == ["day.jsonl"]


def _pages(*pages: list[dict[str, Any]], then: BaseException | None = None) -> Any:
    """A stand-in for ``AsanaAuditLogHook.iter_pages`` that yields ``pages``, then raises ``then``."""

    def iter_pages(self: AsanaAuditLogHook, *args: Any, **kwargs: Any) -> Iterator[Page]:
        for events in pages:
            yield Page(events=events, next_offset="next")
        if then is not None:
            raise then

    return iter_pages


def test_a_killed_export_leaves_the_previous_file_and_no_staging_object(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    destination = tmp_path / "day.jsonl.gz"
    _export(str(destination))
    before = destination.read_bytes()
    manifest_before = (tmp_path / "day.jsonl.gz.manifest.json").read_bytes()
    first_page = asana_conn.ground_truth(START, END)[:3]
    mocker.patch.object(AsanaAuditLogHook, "iter_pages", _pages(first_page, then=KeyboardInterrupt()))

    with pytest.raises(KeyboardInterrupt):
        _export(str(destination))

    assert destination.read_bytes() == before
    assert (tmp_path / "day.jsonl.gz.manifest.json").read_bytes() == manifest_before
    assert _files(tmp_path) == ["day.jsonl.gz", "day.jsonl.gz.manifest.json"]


def test_a_stale_manifest_is_removed_before_different_bytes_replace_the_file(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    destination = tmp_path / "day.jsonl"
    _export(str(destination))
    asana_conn.append_events(2, created_at=START + timedelta(hours=1))
    seen: list[bool] = []
    rename = ObjectStoragePath.rename

    def spy(self: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        if str(target).endswith("day.jsonl"):
            seen.append((tmp_path / "day.jsonl.manifest.json").exists())
        return rename(self, target, *args, **kwargs)

    mocker.patch.object(ObjectStoragePath, "rename", spy)

    summary = _export(str(destination))

    assert seen == [False]
    manifest = json.loads((tmp_path / "day.jsonl.manifest.json").read_text())
    assert manifest["sha256"] == summary["sha256"]
    assert read_events(destination) == asana_conn.ground_truth(START, END)


# ---------------------------------------------------------------- an object store that cannot rename


def test_the_export_reaches_the_object_store_whole_through_copy_and_delete(
    store: NoRenameStore, asana_conn: FakeAsana
) -> None:
    summary = _export()

    stored = _objects(store)
    truth = asana_conn.ground_truth(START, END)
    assert sorted(stored) == [
        "/audit-bucket/asana/day.jsonl.gz",
        "/audit-bucket/asana/day.jsonl.gz.manifest.json",
    ]
    assert stored["/audit-bucket/asana/day.jsonl.gz"] == serialise(truth, compressed=True)
    manifest = json.loads(stored["/audit-bucket/asana/day.jsonl.gz.manifest.json"])
    assert manifest["events"] == summary["events"] == len(truth)
    assert manifest["sha256"] == summary["sha256"]
    # Nothing was ever written at the destination itself: it only appeared, whole, by a copy.
    assert len(store.written) == 2
    assert all(path.rsplit("/", 1)[1].startswith(".") for path in store.written)
    assert [target for _, target in store.moves] == [
        "/audit-bucket/asana/day.jsonl.gz",
        "/audit-bucket/asana/day.jsonl.gz.manifest.json",
    ]


def test_a_failure_part_way_leaves_the_previous_objects_untouched(
    store: NoRenameStore, asana_conn: FakeAsana
) -> None:
    _export()
    before = _objects(store)
    asana_conn.append_events(3, created_at=START + timedelta(hours=2))  # the new export would differ
    asana_conn.inject(Fault.SERVER_ERROR_500, count=10, when=lambda request: request.has_offset)

    with pytest.raises(AsanaAuditLogRetriesExhaustedError, match="HTTP 500"):
        _export()

    assert _objects(store) == before
    events = gzip.decompress(before["/audit-bucket/asana/day.jsonl.gz"]).decode().splitlines()
    assert len(events) == len(asana_conn.ground_truth(START, END)) - 3


def test_a_refused_token_writes_nothing(
    store: NoRenameStore, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(asana_conn.connection_json())
    conn["password"] = "revoked-token"
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps(conn))

    with pytest.raises(AsanaAuditLogAuthError):
        _export()

    assert _objects(store) == {}


def test_stale_staging_objects_on_the_object_store_are_removed_by_a_later_export(
    store: NoRenameStore, asana_conn: FakeAsana
) -> None:
    stale = "/audit-bucket/asana/.day.jsonl.gz.0123456789abcdef0123456789abcdef.partial"
    fresh = "/audit-bucket/asana/.day.jsonl.gz.fedcba9876543210fedcba9876543210.partial"
    store.pipe(stale, b"half")
    store.pipe(fresh, b"half")
    NoRenameStore.store[stale].created = datetime.now(timezone.utc) - 2 * STAGING_GRACE_PERIOD

    _export()

    assert not store.exists(stale)
    assert store.exists(fresh), "a staging object within the grace period may be a live attempt's"


# ---------------------------------------------------------------- private files


def test_a_local_staging_file_is_private_from_its_first_byte(tmp_path: Path, permissive_umask: None) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/day.jsonl")
    modes: list[int] = []

    with atomic_write(target) as staged:
        (staging,) = tmp_path.glob(".day.jsonl.*.partial")
        modes.append(_mode(staging))  # before any byte is written
        staged.file.write(b"{}\n")
        staged.commit()

    assert modes == [PRIVATE_FILE_MODE] == [0o600]


def test_an_export_replaces_a_readable_file_with_a_private_file_and_manifest(
    asana_conn: FakeAsana, tmp_path: Path, permissive_umask: None
) -> None:
    destination = tmp_path / "day.jsonl.gz"
    destination.write_bytes(b"an export by an older version\n")
    destination.chmod(0o644)

    _export(str(destination))

    assert _mode(destination) == 0o600
    assert _mode(tmp_path / "day.jsonl.gz.manifest.json") == 0o600


# ---------------------------------------------------------------- staging leftovers


def test_a_live_local_attempt_renews_the_lease_on_its_staging_file(tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/day.jsonl")

    with atomic_write(target, grace_period=timedelta(seconds=1)) as staged:
        (staging,) = tmp_path.glob(".day.jsonl.*.partial")
        os.utime(staging, (STALE, STALE))
        wait_until(
            lambda: staging.stat().st_mtime > STALE + 3600,
            message="the attempt should renew its lease (every 0.1 s with a grace period of 1 s)",
        )
        staged.file.write(b"{}\n")
        staged.commit()

    assert (tmp_path / "day.jsonl").read_bytes() == b"{}\n"


def test_a_write_removes_the_stale_staging_objects_of_its_target_only(tmp_path: Path) -> None:
    stale = _leftover(tmp_path, "day.jsonl")
    fresh = _leftover(tmp_path, "day.jsonl", modified=None)
    of_another_file = _leftover(tmp_path, "other.jsonl")
    of_the_manifest = _leftover(tmp_path, "day.jsonl.manifest.json")

    with atomic_write(ObjectStoragePath(f"file://{tmp_path}/day.jsonl")) as staged:
        staged.file.write(b"{}\n")
        staged.commit()

    assert not stale.exists()
    assert fresh.exists(), "a staging file within the grace period may be a live attempt's"
    assert of_another_file.exists()
    assert of_the_manifest.exists()


def test_a_sweep_finds_only_stale_staging_objects_anywhere_below_the_base(tmp_path: Path) -> None:
    stale = [
        _leftover(tmp_path / "date=2026-11-01", "a.jsonl.gz"),
        _leftover(tmp_path / "x" / "y", "b.jsonl"),
    ]
    _leftover(tmp_path, "c.jsonl", modified=None)
    for name in (".notes.partial", "a.jsonl.partial", f".a.jsonl.{'0' * 31}.partial", "a.jsonl"):
        (tmp_path / name).write_bytes(b"not a staging object")
        os.utime(tmp_path / name, (STALE, STALE))

    found = sweep_staging(str(tmp_path), older_than=timedelta(hours=1))

    assert [item.path for item in found] == sorted(f"file://{path}" for path in stale)
    assert [item.destination for item in found] == ["a.jsonl.gz", "b.jsonl"]
    assert all(timedelta(hours=2) <= item.age < timedelta(hours=3) for item in found)


def test_a_sweep_is_a_dry_run_unless_told_otherwise(tmp_path: Path) -> None:
    stale = _leftover(tmp_path, "a.jsonl")

    (found,) = sweep_staging(str(tmp_path))

    assert not found.removed
    assert stale.exists()


def test_a_sweep_that_is_no_dry_run_removes_the_stale_staging_objects(tmp_path: Path) -> None:
    stale = _leftover(tmp_path / "deep" / "down", "a.jsonl")
    fresh = _leftover(tmp_path, "a.jsonl", modified=None)

    (found,) = sweep_staging(ObjectStoragePath(f"file://{tmp_path}"), dry_run=False)

    assert found.removed
    assert not stale.exists()
    assert fresh.exists()


def test_a_sweep_of_a_missing_base_finds_nothing(tmp_path: Path) -> None:
    assert sweep_staging(str(tmp_path / "nothing here"), dry_run=False) == []


def test_the_sweep_command_lists_stale_staging_objects_without_removing_them_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = _leftover(tmp_path, "a.jsonl")

    assert main(["sweep", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert f"would remove file://{stale} (10 bytes, 2h" in out
    assert "dry run, nothing removed (add --delete to remove them)" in out
    assert stale.exists()


def test_the_sweep_command_removes_them_with_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = _leftover(tmp_path, "a.jsonl", modified=time.time() - 40 * 60)

    assert main(["sweep", f"file://{tmp_path}", "--delete", "--older-than", "30m"]) == 0

    out = capsys.readouterr().out
    assert f"removed file://{stale} (10 bytes, 40m" in out
    assert f"1 staging object(s) older than 30m under file://{tmp_path}" in out
    assert not stale.exists()


@pytest.mark.parametrize("arguments", [["--older-than", "soon"], ["--older-than=-1h"]])
def test_the_sweep_command_refuses_a_duration_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["sweep", str(tmp_path), *arguments])

    assert caught.value.code == 2
    assert "is not a duration such as 90s, 30m, 1h or 2d" in capsys.readouterr().err


def test_the_sweep_command_refuses_a_relative_base(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["sweep", "exports"])

    assert caught.value.code == 2
    assert "relative path" in capsys.readouterr().err
