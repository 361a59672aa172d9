"""What an export file must hold, how to read one, and the midnights the export tests use."""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

__all__ = ["midnight", "read_events", "serialise"]


def midnight(days_ago: int) -> datetime:
    """Midnight UTC ``days_ago`` days before today."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def serialise(events: list[dict[str, Any]], *, compressed: bool) -> bytes:
    """The bytes an export of ``events`` must consist of (the operator's documented format)."""
    text = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in events)
    data = text.encode("utf-8")
    if not compressed:
        return data
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buffer.getvalue()


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events in an export file, parsed line by line."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]
