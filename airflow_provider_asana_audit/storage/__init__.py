"""
Object storage for exports: where a file goes, and how it gets there whole, privately, without litter.

Works on Airflow's ``ObjectStoragePath`` (local disks, S3, GCS, Azure...): destination and base
resolution, the atomic write through a hidden staging object with its lease, and the sweep of the
staging objects that killed attempts left; with an :class:`ObjectLock`, write-once files on S3
(:mod:`~airflow_provider_asana_audit.storage.object_lock`). The command line is ``python -m
airflow_provider_asana_audit.storage sweep BASE`` (:mod:`~airflow_provider_asana_audit.storage.__main__`).

.. seealso:: docs/reliability.md and docs/write-once.md
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO

from airflow.providers.common.compat.sdk import ObjectStoragePath, conf

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.layout import default_relative_path, staged_file_name, staging_path
from airflow_provider_asana_audit.storage.object_lock import (
    LockStatus,
    ObjectLock,
    check_lockable,
    lock_status,
    locked_move,
)
from airflow_provider_asana_audit.timeutils import parse_instant
from airflow_provider_asana_audit.utils import Logger

__all__ = [
    "FILESYSTEM_PROVIDERS",
    "PRIVATE_FILE_MODE",
    "SINGLE_HOST_EXECUTORS",
    "STAGING_GRACE_PERIOD",
    "LockStatus",
    "ObjectLock",
    "StagedWrite",
    "StagingObject",
    "atomic_write",
    "default_base",
    "default_destination",
    "executor_on_several_hosts",
    "lock_status",
    "resolve_base",
    "resolve_destination",
    "sweep_staging",
]

#: The provider that registers each URL scheme's filesystem, for the "cannot write there" error.
FILESYSTEM_PROVIDERS = {
    "s3": "apache-airflow-providers-amazon",
    "s3a": "apache-airflow-providers-amazon",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "abfss": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
}
#: The mode of every file written on a local disk: read and write for the owner only.
PRIVATE_FILE_MODE = 0o600
#: A staging object not modified for longer than this belongs to an attempt that is gone.
STAGING_GRACE_PERIOD = timedelta(minutes=10)
#: How often per grace period a live attempt renews its lease on a local staging file.
_LEASE_RENEWALS_PER_GRACE_PERIOD = 10
#: How often a local write makes its directories and opens its staging file, if a concurrent failed write
#: removes a directory between the two.
_OPEN_ATTEMPTS = 3
#: The executors (by class name) that run every task on one host, the scheduler's; any other executor,
#: including one this package does not know, may run a DAG's tasks on several hosts.
SINGLE_HOST_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})
#: Filesystem types (before any ``.subtype``) of mounts that several hosts can share, such as NFS (EFS,
#: Filestore, Kubernetes ReadWriteMany volumes), SMB, CephFS or FUSE mounts of a bucket.
_SHARED_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "9p", "fuse"}
)
#: Where Linux lists this process's mounts.
_MOUNTS = "/proc/self/mounts"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagingObject:
    """
    A staging object that :func:`sweep_staging` found stale.

    :param path: its URI.
    :param destination: the name of the file it was staging.
    :param size: its size in bytes.
    :param modified: when it was last modified, by the storage's clock.
    :param age: how long before the sweep's reference instant that was.
    :param removed: whether the sweep removed it (never in a dry run).
    """

    path: str
    destination: str
    size: int
    modified: datetime
    age: timedelta
    removed: bool


def resolve_base(
    value: str | os.PathLike[str] | ObjectStoragePath, *, conn_id: str | None = None
) -> ObjectStoragePath:
    """
    A base path (the root of the default layout) as an ``ObjectStoragePath`` whose filesystem is available.

    :raises AsanaAuditLogConfigError: for a relative path, or a scheme whose filesystem is not installed.
    """
    return _storage_path(value, conn_id=conn_id, what="base path", example="")


def resolve_destination(
    value: str | os.PathLike[str] | ObjectStoragePath, *, conn_id: str | None = None
) -> ObjectStoragePath:
    """
    The destination file as an ``ObjectStoragePath`` whose filesystem is available.

    :param value: an absolute path, a URI or an ``ObjectStoragePath``.
    :param conn_id: the Airflow connection of the destination's filesystem, if it needs one.
    :raises AsanaAuditLogConfigError: for a relative path, a directory, or a scheme whose filesystem is
        not installed (the message names the provider to install).
    """
    if not isinstance(value, ObjectStoragePath) and os.fspath(value).strip().endswith("/"):
        # Checked on the text: the path object drops a trailing slash and would name a file.
        raise AsanaAuditLogConfigError(
            f"destination {os.fspath(value).strip()!r} names a directory: name the file, "
            "e.g. '.../export.jsonl.gz'"
        )
    path = _storage_path(value, conn_id=conn_id, what="destination", example="export.jsonl.gz")
    if not path.name:
        raise AsanaAuditLogConfigError(
            f"destination {str(path)!r} names a directory: name the file, e.g. '.../export.jsonl.gz'"
        )
    return path


def default_base(base_path: str | None = None) -> str:
    """
    The root of the default layout: ``base_path``, else the config option ``[asana_audit_log] base_path``,
    else ``file://{AIRFLOW_HOME}/asana_audit_log``.

    :raises AsanaAuditLogConfigError: for a relative path.
    """
    base = base_path or conf.get("asana_audit_log", "base_path", fallback=None)
    if base and "://" not in str(base) and not os.path.isabs(str(base)):
        name = "base_path" if base_path else "The option [asana_audit_log] base_path"
        raise AsanaAuditLogConfigError(
            f"{name} {str(base)!r} is a relative path: use an absolute path or a URI such as "
            "'file:///data/asana' or 's3://bucket/asana'"
        )
    if not base:
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        base = f"file://{os.path.abspath(home)}/asana_audit_log"
    return str(base)


def default_destination(
    *,
    base_path: str | None,
    workspace_gid: str,
    start_at: datetime,
    end_at: datetime,
    filters: Mapping[str, str | None],
    conn_id: str | None = None,
) -> ObjectStoragePath:
    """
    The file of one interval in the default layout under :func:`default_base`.

    :param base_path: the root of the layout, see :func:`default_base`.
    :param workspace_gid: the exported workspace.
    :param start_at: the interval's start.
    :param end_at: its end.
    :param filters: Asana's filters (a filtered export's name says so).
    :param conn_id: the Airflow connection of the filesystem, if it needs one.

    .. seealso:: docs/operators.md#where-files-go
    """
    relative = default_relative_path(
        workspace_gid=workspace_gid, start_at=start_at, end_at=end_at, filters=filters
    )
    return resolve_destination(f"{default_base(base_path).rstrip('/')}/{relative}", conn_id=conn_id)


def executor_on_several_hosts(path: ObjectStoragePath, *, executor: str | None = None) -> str | None:
    """
    The executor that may run this task on several hosts, when ``path`` is on the disk of the one it runs on.

    Then each run writes where the worker that ran it is, and no host holds the whole archive. Only the
    configuration is read (``[core] executor``, whose first entry is the default, and the task's own
    ``executor``), never the metadata database, which a task cannot reach on Airflow 3. A local path
    on a mount that hosts can share (NFS, SMB, CephFS, FUSE...) counts as shared.

    :param path: where the export writes.
    :param executor: the task's ``executor`` argument: an executor's name, alias or module path.
    :return: the executor, as configured, or ``None`` when every run writes to the same place.

    .. seealso:: docs/scheduling.md#several-workers
    """
    if not _is_local(path) or _on_shared_mount(path.path):
        return None
    name = _task_executor(executor)
    return None if name.rsplit(".", 1)[-1] in SINGLE_HOST_EXECUTORS else name


class StagedWrite:
    """
    A write in progress, made by :func:`atomic_write`: write :attr:`file`, then :meth:`commit`.

    :param target: the file being written.
    :param staging: its staging object.
    :param file: the staging object, open for writing.
    :param close: what closes ``file`` (synced to disk) and ends its lease.
    :param object_lock: the S3 Object Lock retention the target gets, if any.
    :param log: where the locked move logs.
    """

    def __init__(
        self,
        target: ObjectStoragePath,
        staging: ObjectStoragePath,
        file: BinaryIO,
        close: ExitStack,
        *,
        object_lock: ObjectLock | None = None,
        log: Logger | None = None,
    ) -> None:
        self.target = target
        self.staging = staging
        self.file = file
        self.committed = False
        self.object_lock = object_lock
        self._close = close
        self._log = log

    def commit(self) -> None:
        """
        Close the staging object (synced to disk, lease ended) and move it over the target: a rename,
        or with :attr:`object_lock` a locked copy (:func:`~.object_lock.locked_move`).
        """
        self._close.close()
        if self.object_lock is None:
            self.staging.rename(self.target)
        else:
            locked_move(self.staging, self.target, self.object_lock, log=self._log)
        self.committed = True


@contextmanager
def atomic_write(
    target: ObjectStoragePath,
    *,
    log: Logger | None = None,
    grace_period: timedelta = STAGING_GRACE_PERIOD,
    object_lock: ObjectLock | None = None,
) -> Iterator[StagedWrite]:
    """
    Write ``target`` whole or not at all: ``with atomic_write(target) as staged:``, write
    ``staged.file``, then ``staged.commit()``.

    Without a commit, or on an exception, the staging object is removed and ``target`` keeps what it
    held; so are the local directories this write created, if they are still empty. On a local disk the
    staging file is private (:data:`PRIVATE_FILE_MODE`) from its creation, leased while it is written,
    and synced before the move. After the move, the stale staging objects of ``target`` are removed.

    :param target: the file to write.
    :param log: where removals and failures are logged.
    :param grace_period: how long a staging object may go unmodified before it counts as left by a dead
        attempt; a live local attempt renews its lease ten times per grace period.
    :param object_lock: write ``target`` once: its new version gets this S3 Object Lock retention and
        cannot be deleted or overwritten before the date (a later write adds a version). The target
        must be on S3, in a bucket created with Object Lock; the staging object is never locked.
    :raises AsanaAuditLogConfigError: with ``object_lock``, before anything is written when ``target``
        is not on S3, and at the commit when its bucket does not have Object Lock enabled (``target``
        is then left as it was).

    .. seealso:: docs/reliability.md#staging-objects-and-the-sweep and docs/write-once.md
    """
    log = log or _log
    if grace_period <= timedelta(0):
        raise ValueError(f"grace_period must be positive, not {grace_period}")
    if object_lock is not None:
        check_lockable(target, object_lock)
    parent = target.parent
    local = _is_local(target)
    staging = staging_path(target)
    renew_every = grace_period.total_seconds() / _LEASE_RENEWALS_PER_GRACE_PERIOD
    created: list[str] = []  # the local directories this write made, deepest first
    try:
        with ExitStack() as open_staging:
            raw = open_staging.enter_context(_open_staging(staging, local=local, created=created))
            open_staging.enter_context(_lease(staging.path if local else None, every=renew_every, log=log))
            staged = StagedWrite(target, staging, raw, open_staging, object_lock=object_lock, log=log)
            yield staged
        if not staged.committed:
            _remove_quietly(staging, log)
            _remove_empty_directories(created)
            return
    except BaseException:
        _remove_quietly(staging, log)
        _remove_empty_directories(created)
        raise
    if local:
        _sync_directory(parent.path)
    _sweep_beside(target, grace_period=grace_period, log=log)


def sweep_staging(
    base: str | os.PathLike[str] | ObjectStoragePath,
    *,
    older_than: timedelta = STAGING_GRACE_PERIOD,
    dry_run: bool = True,
    conn_id: str | None = None,
    destination: str | None = None,
    now: datetime | None = None,
    log: Logger | None = None,
) -> list[StagingObject]:
    """
    Find, and unless ``dry_run`` remove, the staging objects that dead export attempts left.

    A staging object is an object named ``.<name>.<32 hex digits>.partial``; nothing else is ever
    touched. It is stale when it was last modified more than ``older_than`` before ``now``; an object
    whose modification time the storage does not report is kept.

    :param base: the directory or prefix to sweep (an absolute path, a URI or an ``ObjectStoragePath``),
        with everything below it; with ``destination``, only its direct children.
    :param older_than: the grace period; keep it well above the longest time an attempt can go without
        renewing its lease (see :data:`STAGING_GRACE_PERIOD`), plus any difference between this
        machine's clock and the storage's.
    :param dry_run: only report what would be removed.
    :param conn_id: the Airflow connection of the filesystem, if it needs one.
    :param destination: only the staging objects of the file of this name directly in ``base``.
    :param now: the reference instant (aware); default this machine's clock.
    :param log: where removals and failures are logged.
    :return: the stale staging objects, in path order, each saying whether it was removed.
    """
    log = log or _log
    root = resolve_base(base, conn_id=conn_id)
    fs = root.fs
    now = now or datetime.now(timezone.utc)
    infos: list[dict[str, Any]]
    try:
        if destination is None:
            infos = list(fs.find(root.path, withdirs=False, detail=True).values())
        else:
            infos = fs.ls(root.path, detail=True)
    except FileNotFoundError:
        infos = []
    found: list[StagingObject] = []
    for info in sorted(infos, key=lambda item: str(item.get("name"))):
        name = str(info.get("name", ""))
        staged = staged_file_name(name.rstrip("/").rsplit("/", 1)[-1])
        if staged is None or info.get("type", "file") != "file":
            continue
        if destination is not None and staged != destination:
            continue
        modified = modified_at(fs, info)
        if modified is None or now - modified <= older_than:
            continue
        removed = False
        if not dry_run:
            try:
                fs.rm(name)
                removed = True
                log.info(
                    "Removed %s, the staging object of an export attempt that did not finish "
                    "(last modified %s ago)",
                    fs.unstrip_protocol(name),
                    now - modified,
                )
            except FileNotFoundError:
                removed = True  # another sweep was first
            except Exception as err:
                log.warning("Could not remove the stale staging object %s: %s", name, err)
        found.append(
            StagingObject(
                path=fs.unstrip_protocol(name),
                destination=staged,
                size=int(info.get("size") or 0),
                modified=modified,
                age=now - modified,
                removed=removed,
            )
        )
    return found


# ---------------------------------------------------------------------- internals


def _storage_path(
    value: str | os.PathLike[str] | ObjectStoragePath, *, conn_id: str | None, what: str, example: str
) -> ObjectStoragePath:
    """``value`` as an ``ObjectStoragePath`` whose filesystem is available."""
    if isinstance(value, ObjectStoragePath):
        path = value
    else:
        text = os.fspath(value).strip()
        if "://" not in text and not os.path.isabs(text):
            raise AsanaAuditLogConfigError(
                f"{what} {text!r} is a relative path: use an absolute path or a URI such as "
                f"'file:///data/asana/{example}' or 's3://bucket/asana/{example}'"
            )
        try:
            path = ObjectStoragePath(text, conn_id=conn_id) if conn_id else ObjectStoragePath(text)
        except (ValueError, ImportError) as err:
            raise _filesystem_error(text.split("://", 1)[0] if "://" in text else "", err) from None
    try:
        fs = path.fs  # resolves the filesystem: fails when its provider is missing
    except (ValueError, ImportError) as err:
        raise _filesystem_error(str(path.protocol or ""), err) from None
    # Filesystems are cached per process, with their listings and object versions (s3fs), and s3fs
    # forgets a folder's cached contents only when told to forget them all. Otherwise what another
    # process changed since would be missed (a file taken for absent, a record read at an old ETag).
    fs.invalidate_cache()
    return path


def _unwritable(where: ObjectStoragePath, err: OSError) -> AsanaAuditLogConfigError:
    reason = "a file of that name is in the way" if isinstance(err, FileExistsError) else err.strerror or err
    return AsanaAuditLogConfigError(
        f"Cannot write the export to {where}: {reason}. Make sure the directory can be created and the "
        "Airflow workers may write to it, or choose another destination or base_path"
    )


def _filesystem_error(scheme: str, err: Exception) -> AsanaAuditLogConfigError:
    provider = FILESYSTEM_PROVIDERS.get(scheme.lower())
    if provider:
        advice = f"install {provider} in every Airflow worker"
    else:
        advice = (
            "install the Airflow provider that registers this filesystem for object storage, or use "
            "file://, s3:// (apache-airflow-providers-amazon) or gs:// (apache-airflow-providers-google)"
        )
    return AsanaAuditLogConfigError(f"Airflow cannot open {scheme or 'this'}:// paths ({err}): {advice}")


def _task_executor(executor: str | None) -> str:
    """
    The module path or name of the executor that runs a task, from ``[core] executor`` and its ``executor``.

    The option lists executors separated by commas, each a name, a module path or ``alias:name-or-path``;
    on Airflow 3 team lists follow after ``;`` as ``team=...``. A task without ``executor`` runs on
    the first.
    """
    config = conf.get("core", "executor", fallback="") or ""
    entries = [
        entry.strip()
        for segment in config.split(";")
        for entry in segment.split("=")[-1].split(",")
        if entry.strip()
    ]
    aliases = dict(entry.split(":", 1) for entry in entries if ":" in entry)
    chosen = (executor or "").strip() or (entries[0] if entries else "LocalExecutor")
    chosen = aliases.get(chosen, chosen)
    return chosen.split(":", 1)[-1]


def _on_shared_mount(path: str) -> bool:
    """Whether the longest mount point above ``path`` holds a filesystem several hosts can share."""
    try:
        with open(_MOUNTS, encoding="utf-8", errors="replace") as mounts:
            lines = mounts.read().splitlines()
    except OSError:  # not Linux: nothing tells, so the path counts as this host's own
        return False
    real = os.path.realpath(path)
    longest, kind = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ").replace("\\011", "\t")  # the table escapes blanks
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(longest):
            longest, kind = point, fields[2]
    return kind.split(".", 1)[0] in _SHARED_FILESYSTEMS


def _is_local(path: ObjectStoragePath) -> bool:
    protocol = path.fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


@contextmanager
def _open_staging(staging: ObjectStoragePath, *, local: bool, created: list[str]) -> Iterator[BinaryIO]:
    """
    The staging object open for writing; on a local disk private from its creation and synced at the end.

    The mode is given to ``open(2)`` itself, so there is no moment when the file is readable by others
    (the umask can only take permissions away). On a local disk the missing directories are made first
    and added to ``created``, deepest first.
    """
    if not local:
        try:
            opened = staging.open("wb")  # type: ignore[no-untyped-call]
        except OSError as err:
            raise _unwritable(staging.parent, err) from err
        with opened as raw:
            yield raw
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            _make_directories(os.path.dirname(staging.path), created)
            descriptor = os.open(staging.path, flags, PRIVATE_FILE_MODE)
            break
        except FileNotFoundError as err:
            # A failed write of a sibling file removed a directory it had made, just after this write
            # found it there: make it again.
            if attempt + 1 == _OPEN_ATTEMPTS:
                raise _unwritable(staging.parent, err) from err
        except OSError as err:
            raise _unwritable(staging.parent, err) from err
    with os.fdopen(descriptor, "wb") as raw:
        yield raw
        raw.flush()
        os.fsync(raw.fileno())  # the move must never publish a name whose bytes are still in flight


@contextmanager
def _lease(path: str | None, *, every: float, log: Logger) -> Iterator[None]:
    """Renew the lease on the local staging file ``path`` (its modification time) every ``every`` s."""
    if path is None:
        yield
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(every):
            try:
                os.utime(path)
            except FileNotFoundError:
                log.warning(
                    "The staging file %s was removed while being written (this attempt was frozen for "
                    "longer than the grace period?); the export will fail and be retried",
                    path,
                )
                return
            except OSError as err:
                log.warning("Could not renew the lease on the staging file %s: %s", path, err)

    thread = threading.Thread(target=renew, name="asana-audit-staging-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _make_directories(directory: str, made: list[str]) -> None:
    """Make ``directory`` and its missing parents, one by one, adding each made to ``made``, deepest first."""
    missing: list[str] = []
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        missing.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise  # a file of that name is in the way
            continue  # made by a concurrent write: not ours to remove
        made.insert(0, path)


def _remove_empty_directories(directories: list[str]) -> None:
    """
    Remove the directories a write made (deepest first) while they are empty; never fails.

    ``os.rmdir`` removes only an empty directory, so whatever another write put there since stays.
    """
    for path in directories:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            # Not empty (another write's file): nor are its parents. Any other refusal leaves an empty
            # folder, which is harmless, and must not hide the error that failed the write.
            return


def _sync_directory(path: str) -> None:
    """Make a rename in ``path`` durable; best effort, since not every filesystem can sync a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sweep_beside(target: ObjectStoragePath, *, grace_period: timedelta, log: Logger) -> None:
    """Remove the stale staging objects of ``target``, aged by the storage's clock; never fails."""
    try:
        written = modified_at(target.fs, target.fs.info(target.path))
        sweep_staging(
            target.parent,
            destination=target.name,
            older_than=grace_period,
            dry_run=False,
            now=written,
            log=log,
        )
    except Exception as err:  # the export is complete: litter must not fail it
        log.warning("Could not sweep the stale staging objects beside %s: %s", target, err)


def modified_at(fs: Any, info: Mapping[str, Any]) -> datetime | None:
    """When an object was last modified, from its listing (each filesystem names it differently)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        instant = _instant(info.get(key))
        if instant is not None:
            return instant
    try:
        return _instant(fs.modified(info["name"]))
    except Exception:  # not every filesystem implements it: an unknown age is never stale
        return None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str) and value:
        try:
            return parse_instant(value, name="modified")
        except ValueError:
            return None
    return None


def _remove_quietly(path: ObjectStoragePath, log: Logger) -> None:
    try:
        if path.exists():
            path.unlink()
    except Exception as err:  # the original error matters more
        log.warning("Could not remove the staging object %s: %s", path, err)
