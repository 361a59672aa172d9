"""
Object storage for exports: where a file goes, and how it gets there whole, privately, without litter.

Everything here works on Airflow's ``ObjectStoragePath``, so local disks, S3, GCS, Azure and every other
filesystem Airflow's object storage supports behave the same. Files are written through a hidden staging
object beside the destination and moved into place only when complete: a rename on local disks, a copy
then delete on object stores (where the destination object appears whole), so a destination holds
either its previous content or the complete new one.

**Private files.** On a local disk, staging files are created with mode ``0600`` (owner read and write
only) from their first byte, whatever the umask, and the move keeps that mode: audit events are
personal data. Object stores have no file modes; their bucket policies decide who reads.

**Staging leftovers.** An attempt that is killed (``SIGKILL``, a lost worker) leaves its staging object
``.<name>.<32 hex digits>.partial`` beside the destination, never at it. The rule for removing them:
*a staging object whose modification time is older than the grace period* (:data:`STAGING_GRACE_PERIOD`)
*belongs to an attempt that is gone.* It holds on both kinds of storage:

* On a local disk the staging file is visible while it is written. A live attempt holds a lease on it:
  a thread touches its modification time every tenth of the grace period, also while the attempt waits
  for Asana (retries, ``Retry-After``), so only a dead attempt's file grows old.
* On object stores an object being uploaded is invisible until its upload completes; a staging object
  that can be listed is complete and about to be moved (within moments), or left by an attempt killed
  between upload and move.

After each successful move, :func:`write_atomically` sweeps the stale staging objects of the same
destination, measuring their age against the modification time of the object it has just written (the
storage's own clock, so the workers' clocks do not matter). :func:`sweep_staging` and the command
``python -m airflow_provider_asana_audit.storage sweep BASE`` sweep a whole base path (a dry run unless
``--delete``). Should a sweep ever remove a live attempt's staging object (an attempt frozen for longer
than the grace period), that attempt fails at its move and is retried: nothing incomplete is published.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, TypeVar

from airflow.providers.common.compat.sdk import ObjectStoragePath, conf

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.timeutils import format_duration, parse_instant
from airflow_provider_asana_audit.utils import Logger

__all__ = [
    "FILESYSTEM_PROVIDERS",
    "MANIFEST_SUFFIX",
    "PRIVATE_FILE_MODE",
    "STAGING_GRACE_PERIOD",
    "HashingWriter",
    "LayoutEntry",
    "StagingObject",
    "default_base",
    "default_destination",
    "layout_entry",
    "main",
    "manifest_path",
    "modified_at",
    "resolve_base",
    "resolve_destination",
    "sweep_staging",
    "write_atomically",
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
_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<attempt>[0-9a-f]{32})\.partial$")
#: The default layout's names (see :func:`default_destination`).
MANIFEST_SUFFIX = ".manifest.json"
_NAME_INSTANT = "%Y%m%dT%H%M%SZ"
_FILE_NAME = re.compile(
    r"^asana_audit_log_(?P<start>\d{8}T\d{6}Z)_(?P<end>\d{8}T\d{6}Z)(?P<filters>_f[0-9a-f]{10})?\.jsonl(?:\.gz)?$"
)
_WORKSPACE_DIR = re.compile(r"^workspace_gid=(?P<gid>[0-9]+)$")
_DATE_DIR = re.compile(r"^date=(?P<date>\d{4}-\d{2}-\d{2})$")
_DURATION = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>[smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_T = TypeVar("_T")
_log = logging.getLogger(__name__)


class HashingWriter:
    """A write-only file wrapper that counts and hashes the bytes that reach storage."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


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
    The file of one interval in the default layout.

    ``{base}/workspace_gid={gid}/date={start:%Y-%m-%d}/asana_audit_log_{start}_{end}.jsonl.gz``, with
    ``_f<hash of the filters>`` before ``.jsonl.gz`` when any filter is set, so differently filtered
    exports of one interval never overwrite each other. ``base`` is ``base_path``, else the config option
    ``[asana_audit_log] base_path``, else ``file://{AIRFLOW_HOME}/asana_audit_log``.
    """
    base = default_base(base_path)
    suffix = ""
    if any(value is not None for value in filters.values()):
        digest = hashlib.sha256(json.dumps(dict(filters), sort_keys=True).encode()).hexdigest()
        suffix = f"_f{digest[:10]}"
    name = f"asana_audit_log_{start_at:{_NAME_INSTANT}}_{end_at:{_NAME_INSTANT}}{suffix}.jsonl.gz"
    return resolve_destination(
        f"{str(base).rstrip('/')}/workspace_gid={workspace_gid}/date={start_at:%Y-%m-%d}/{name}",
        conn_id=conn_id,
    )


@dataclass(frozen=True)
class LayoutEntry:
    """
    An object of the default layout, recognised by its path below the base (see :func:`layout_entry`).

    :param kind: ``"file"`` (an export file), ``"manifest"`` (``<file>.manifest.json``) or ``"staging"``
        (``.<file>.<32 hex digits>.partial``).
    :param workspace_gid: the ``workspace_gid=`` directory.
    :param date: the ``date=`` directory, ``YYYY-MM-DD``.
    :param file_name: the export file's name (for a manifest or staging object: the file it belongs to).
    :param start_at: the start of the interval the file name gives.
    :param end_at: its end.
    :param filter_suffix: ``_f<hash>`` of filtered exports, ``""`` for unfiltered ones.
    """

    kind: str
    workspace_gid: str
    date: str
    file_name: str
    start_at: datetime
    end_at: datetime
    filter_suffix: str


def layout_entry(relative: str) -> LayoutEntry | None:
    """
    What the object at ``relative`` (its path below the base, ``/``-separated) is in the default layout.

    The inverse of :func:`default_destination`: ``None`` for anything the export does not write there.
    """
    parts = relative.strip("/").split("/")
    if len(parts) != 3:
        return None
    workspace, day, name = parts
    workspace_match, day_match = _WORKSPACE_DIR.match(workspace), _DATE_DIR.match(day)
    if workspace_match is None or day_match is None:
        return None
    kind, file_name = "file", name
    staging = _STAGING_NAME.match(name)
    if staging is not None:
        kind, file_name = "staging", staging["name"]
    elif name.endswith(MANIFEST_SUFFIX):
        kind, file_name = "manifest", name[: -len(MANIFEST_SUFFIX)]
    match = _FILE_NAME.match(file_name)
    if match is None:
        return None
    try:
        start_at, end_at = (
            datetime.strptime(match[key], _NAME_INSTANT).replace(tzinfo=timezone.utc)
            for key in ("start", "end")
        )
    except ValueError:
        return None
    return LayoutEntry(
        kind=kind,
        workspace_gid=workspace_match["gid"],
        date=day_match["date"],
        file_name=file_name,
        start_at=start_at,
        end_at=end_at,
        filter_suffix=match["filters"] or "",
    )


def manifest_path(file: ObjectStoragePath) -> ObjectStoragePath:
    """The manifest of an export file: ``<file>.manifest.json`` beside it."""
    return file.parent / f"{file.name}{MANIFEST_SUFFIX}"


def write_atomically(
    target: ObjectStoragePath,
    write: Callable[[BinaryIO], _T],
    *,
    before_commit: Callable[[_T], None] | None = None,
    log: Logger | None = None,
    grace_period: timedelta = STAGING_GRACE_PERIOD,
) -> _T:
    """
    Write ``target`` through a hidden staging object in the same place, then move it over ``target``.

    ``write(raw)`` fills the staging object ``.<name>.<uuid>.partial``; ``before_commit(result)`` runs
    just before the move. The staging object is removed on any failure, so ``target`` holds either its
    previous content or the complete new one. On a local disk the staging file is created with mode
    :data:`PRIVATE_FILE_MODE`, leased while it is written, and synced to disk before the move (and the
    directory after it). After the move, the staging objects of ``target`` that other attempts left and
    that are older than ``grace_period`` are removed (see the module's documentation).

    :param grace_period: how long a staging object may go unmodified before it counts as left by a dead
        attempt; a live local attempt renews its lease ten times per grace period.
    """
    log = log or _log
    if grace_period <= timedelta(0):
        raise ValueError(f"grace_period must be positive, not {grace_period}")
    parent = target.parent
    local = _is_local(target)
    if local:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _unwritable(parent, err) from err
    staging = parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    renew_every = grace_period.total_seconds() / _LEASE_RENEWALS_PER_GRACE_PERIOD
    try:
        with (
            _open_staging(staging, local=local) as raw,
            _lease(staging.path if local else None, every=renew_every, log=log),
        ):
            result = write(raw)
        if before_commit is not None:
            before_commit(result)
        staging.rename(target)
    except BaseException:
        _remove_quietly(staging, log)
        raise
    if local:
        _sync_directory(parent.path)
    _sweep_beside(target, grace_period=grace_period, log=log)
    return result


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
        match = _STAGING_NAME.match(name.rstrip("/").rsplit("/", 1)[-1])
        if match is None or info.get("type", "file") != "file":
            continue
        if destination is not None and match["name"] != destination:
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
                destination=match["name"],
                size=int(info.get("size") or 0),
                modified=modified,
                age=now - modified,
                removed=removed,
            )
        )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """
    ``python -m airflow_provider_asana_audit.storage sweep BASE [--older-than 1h] [--delete]``.

    Lists the stale staging objects under ``BASE`` and, with ``--delete``, removes them. Exit status 0
    when done, 1 when an object could not be removed, 2 for a wrong command line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_asana_audit.storage",
        description="Maintain the storage that Asana audit log exports are written to.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser(
        "sweep",
        help="list (and with --delete remove) the staging objects killed export attempts left",
        description=(
            "List the staging objects (.<name>.<32 hex digits>.partial) under BASE that were last "
            "modified longer ago than --older-than: what killed export attempts left. Nothing else is "
            "touched. A dry run unless --delete is given."
        ),
    )
    sweep.add_argument("base", help="directory or URI to sweep, with everything below it")
    sweep.add_argument(
        "--older-than",
        type=_parse_duration,
        default=timedelta(hours=1),
        metavar="DURATION",
        help=(
            "only objects last modified longer ago than this, e.g. 90s, 30m, 1h, 2d (default: 1h; keep "
            f"it above {format_duration(STAGING_GRACE_PERIOD)} plus any clock difference between this "
            "machine and the storage)"
        ),
    )
    sweep.add_argument("--delete", action="store_true", help="remove them (default: only list them)")
    sweep.add_argument("--conn-id", default=None, help="Airflow connection of the storage, if it needs one")
    args = parser.parse_args(argv)
    try:
        found = sweep_staging(
            args.base, older_than=args.older_than, dry_run=not args.delete, conn_id=args.conn_id
        )
    except AsanaAuditLogConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    verb = "removed" if args.delete else "would remove"
    failed = [item for item in found if args.delete and not item.removed]
    for item in found:
        state = "NOT removed" if item in failed else verb
        print(f"{state} {item.path} ({item.size} bytes, {format_duration(item.age)} old)")
    summary = (
        f"{len(found)} staging object(s) older than {format_duration(args.older_than)} under {args.base}"
    )
    if not args.delete:
        summary += ": dry run, nothing removed (add --delete to remove them)"
    elif failed:
        summary += f": {len(failed)} could not be removed"
    print(summary)
    return 1 if failed else 0


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
        path.fs  # noqa: B018  # resolves the filesystem: fails when its provider is missing
    except (ValueError, ImportError) as err:
        raise _filesystem_error(str(path.protocol or ""), err) from None
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


def _is_local(path: ObjectStoragePath) -> bool:
    protocol = path.fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


@contextmanager
def _open_staging(staging: ObjectStoragePath, *, local: bool) -> Iterator[BinaryIO]:
    """
    The staging object open for writing; on a local disk private from its creation and synced at the end.

    The mode is given to ``open(2)`` itself, so there is no moment when the file is readable by others
    (the umask can only take permissions away).
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
    try:
        descriptor = os.open(staging.path, flags, PRIVATE_FILE_MODE)
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


def _parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 1h or 2d")
    return timedelta(seconds=float(match["number"]) * _UNIT_SECONDS[match["unit"]])


def _remove_quietly(path: ObjectStoragePath, log: Logger) -> None:
    try:
        if path.exists():
            path.unlink()
    except Exception as err:  # the original error matters more
        log.warning("Could not remove the staging object %s: %s", path, err)


if __name__ == "__main__":
    sys.exit(main())
