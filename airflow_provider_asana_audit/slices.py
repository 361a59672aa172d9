"""
Concurrent reads of one ``[start_at, end_at)`` window: time slices, work stealing, one ordered output.

A sliced read cuts the window into half-open slices ``[a, b)`` whose inner boundaries are whole
milliseconds, and reads them at the same time, one worker thread per slice. Asana's ``created_at``
has millisecond precision, so every event, and every group of events sharing one ``created_at``, lies
in exactly one slice; Asana sorts events by ``created_at``, so the slices' events put one after the
other are the window's events in the window's order, each exactly once.

Each worker reads its slice with its own cursor through the client's one pagination loop (so the
de-duplication at page boundaries and the recovery from a rejected offset hold per slice), with its
own HTTP session and the client's shared rate limiter.

Slices are balanced by work stealing (:class:`SlicePlan`): a worker whose slice is done splits the
unfinished slice with the most events left (estimated from the density read so far) at about the
middle of what is left, strictly after the last event its owner has read, and reads the second half.
The owner keeps its cursor and its query (an offset is only valid for the query it was issued for)
but no longer emits events at or after the new end: it stops at the first page that reaches it, so a
split wastes at most one page.

The output (:class:`SlicedReader`) is streamed in window order. Pages of slices that run ahead of the
consumer are kept in memory up to a fixed number of pages, then spilled to files in a private
temporary directory, so memory stays flat however many events the window holds.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import marshal
import os
import shutil
import struct
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Protocol

from airflow_provider_asana_audit.exceptions import AsanaAuditLogPermanentAPIError
from airflow_provider_asana_audit.query import EPOCH, Event
from airflow_provider_asana_audit.rules import check_integer
from airflow_provider_asana_audit.timeutils import parse_instant

__all__ = [
    "MAX_CONCURRENCY",
    "ReadCancelled",
    "SliceWorker",
    "SlicedReader",
    "check_concurrency",
]

#: The most worker threads one read may use. Asana allows about 50 concurrent GETs per token, and the
#: same token usually serves other tasks, sensors and triggers at the same time: 32 leaves them room.
#: (Throughput stops growing long before that anyway: 1,500 requests a minute is 25 a second.)
MAX_CONCURRENCY = 32
#: Pages of events that slices running ahead of the consumer may keep in memory, per worker, before
#: they spill to disk.
RAM_PAGES_PER_WORKER = 2
#: Pages the slice being consumed may always keep in memory, so that the pages the consumer is about
#: to read are handed over directly rather than through a file.
HEAD_PAGES = 4

_MS = 1000  # microseconds in a millisecond: slice boundaries are whole milliseconds
_LENGTH = struct.Struct("<Q")


def check_concurrency(concurrency: object) -> int:
    """
    Return ``concurrency`` if it is a valid number of concurrent requests for one read.

    :raises AsanaAuditLogConfigError: unless it is an int from 1 to :data:`MAX_CONCURRENCY`.
    """
    return check_integer(
        concurrency,
        name="concurrency",
        minimum=1,
        maximum=MAX_CONCURRENCY,
        hint="(Asana allows about 50 concurrent requests per token, shared with every other reader of "
        "the same token)",
    )


def to_us(instant: datetime) -> int:
    """An aware datetime as whole microseconds since the Unix epoch."""
    return (instant - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def _ceil_ms(us: int) -> int:
    return -(-us // _MS) * _MS


class ReadCancelled(Exception):
    """Raised inside a worker when its read was stopped (the consumer closed it, or another worker failed)."""


@dataclass(eq=False)
class Slice:
    """
    One part ``[start, end)`` of a window, in microseconds since the epoch, read by one worker.

    :param start: the first instant of the slice; its query's ``start_at``.
    :param end: the instant before which its events are emitted; lowered when the slice is split.
    :param query_end: the ``end_at`` its query was sent with; never changes, because the offsets of
        its cursor are valid for that query only.
    :param density: events per microsecond of the slice it was split from, the estimate used until
        the slice has read events of its own.
    """

    start: int
    end: int
    query_end: int
    density: float | None = None
    #: Events accepted so far.
    events: int = 0
    #: ``created_at`` of the last accepted event, in microseconds.
    last: int | None = None
    #: No more events will be accepted: its end was reached, or its cursor ran out.
    done: bool = False

    def next_split_floor(self) -> int:
        """The earliest whole millisecond where the slice may be split: strictly after what was read."""
        if self.last is not None:
            return (self.last // _MS + 1) * _MS
        return _ceil_ms(self.start + 1)

    def own_density(self) -> float | None:
        """Events per microsecond read so far, or ``None`` before the first event."""
        if self.last is None:
            return None
        return self.events / max(_MS, self.last + _MS - self.start)


class SlicePlan:
    """
    Which slices a window is cut into, and where to cut next: the pure logic of a sliced read.

    It does no I/O and takes no lock; :class:`SlicedReader` calls it under its own lock.

    :param start: the window's start, in microseconds since the epoch.
    :param end: the window's end (exclusive).
    :param parts: how many slices of equal length to begin with (fewer if the window is too short).
    :param page_size: events per request; a slice is not split unless about two pages are left in it.
    """

    def __init__(self, start: int, end: int, *, parts: int, page_size: int) -> None:
        if start >= end:
            raise ValueError(f"empty window [{start}, {end})")
        self.page_size = page_size
        bounds = self.boundaries(start, end, parts)
        #: The slices not consumed yet, in window order. Each asks for the rest of the window and
        #: stops at the first page that reaches its end: a page that runs past the end costs no more
        #: than a short last page would, and saves the empty page that confirms a slice's end (Asana
        #: sends ``next_page`` after the last event too). Only the last slice ends on an empty page.
        self.slices: list[Slice] = [Slice(a, b, end) for a, b in itertools.pairwise(bounds)]
        self._finished_events = 0
        self._finished_span = 0
        self._window_span = end - start
        #: Slices read to their end, of every slice made (splits included).
        self.finished = 0

    @staticmethod
    def boundaries(start: int, end: int, parts: int) -> list[int]:
        """``start``, the inner boundaries (whole milliseconds, strictly increasing), and ``end``."""
        inner = {(start + (end - start) * k // parts) // _MS * _MS for k in range(1, parts)}
        return [start, *sorted(b for b in inner if start < b < end), end]

    def accept(self, piece: Slice, stamps: _Stamps | list[int]) -> tuple[int, bool]:
        """
        Record a page of ``piece`` whose events were created at ``stamps`` (ascending, microseconds).

        :return: how many of the page's first events lie before the slice's end (the ones to emit),
            and whether the page reached the end, which finishes the slice.
        """
        if not stamps:
            return 0, False
        if stamps[-1] < piece.end:
            keep, reached_end = len(stamps), False
        else:
            keep, reached_end = bisect.bisect_left(stamps, piece.end), True
        if keep:
            piece.events += keep
            piece.last = stamps[keep - 1]
        if reached_end:
            self.finish(piece)
        return keep, reached_end

    def finish(self, piece: Slice) -> None:
        """Mark ``piece`` as read to its end; its events count toward the window's density."""
        if not piece.done:
            piece.done = True
            self._finished_events += piece.events
            self._finished_span += piece.end - piece.start
            self.finished += 1

    @property
    def all_done(self) -> bool:
        """Whether every slice was read to its end (no more splits can come)."""
        return all(piece.done for piece in self.slices)

    def pop_head(self) -> Slice:
        """Forget the first slice, once it is done and consumed."""
        head = self.slices[0]
        if not head.done:
            raise RuntimeError("the first slice is still being read")
        return self.slices.pop(0)

    def density(self) -> float | None:
        """Events per microsecond over everything read so far, or ``None`` before anything was read."""
        events, span = self._finished_events, self._finished_span
        for piece in self.slices:
            if not piece.done and piece.last is not None:
                events += piece.events
                span += piece.last + _MS - piece.start
        return events / span if span > 0 else None

    def covered(self) -> float:
        """The share of the window read so far, 0 to 1: finished slices, and the read part of the others."""
        span = self._finished_span
        for piece in self.slices:
            if not piece.done and piece.last is not None:
                span += min(piece.last + _MS, piece.end) - piece.start
        return min(1.0, span / self._window_span)

    def remaining(self, piece: Slice, window_density: float | None) -> float:
        """The estimated events left in ``piece`` after what its owner has read."""
        left = piece.end - piece.next_split_floor()
        if left <= 0:
            return 0.0
        density = piece.own_density()
        if density is None:
            density = piece.density if piece.density is not None else window_density
        if density is None:  # nothing read anywhere yet: split by time
            return float("inf")
        return density * left

    def steal(self) -> Slice | None:
        """
        Split the unfinished slice with the most events left; return its second half, or ``None``.

        The cut is the whole millisecond at (or just before) the middle of what is left, and
        strictly after the last event read, so every event its owner already emitted, and every
        event sharing their ``created_at``, stays with the owner. Slices with less than about two
        pages left are not worth a split: the new slice costs a request of its own.
        """
        window_density = self.density()
        best: Slice | None = None
        best_left = 2.0 * self.page_size
        for piece in self.slices:
            if piece.done:
                continue
            left = self.remaining(piece, window_density)
            if left >= best_left and self._cut(piece) is not None:
                best, best_left = piece, left
        if best is None:
            return None
        cut = self._cut(best)
        assert cut is not None
        density = best.own_density()
        new = Slice(cut, best.end, best.end, density=density if density is not None else best.density)
        best.end = cut
        self.slices.insert(self.slices.index(best) + 1, new)
        return new

    @staticmethod
    def _cut(piece: Slice) -> int | None:
        floor = piece.next_split_floor()
        cut = max(floor, (floor + piece.end) // 2 // _MS * _MS)
        return cut if cut < piece.end else None


def _created_us(event: Event) -> int:
    """An event's ``created_at`` in microseconds since the epoch."""
    value = event.get("created_at")
    try:
        return to_us(parse_instant(value, name="created_at"))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise AsanaAuditLogPermanentAPIError(
            200,
            f"event {event.get('gid')!r} has no valid created_at ({value!r})",
            "A sliced read needs every event's created_at; read this window with concurrency=1.",
        ) from None


class _Stamps:
    """The ``created_at`` of a page's events, parsed only where looked at (the last one, mostly)."""

    def __init__(self, events: list[Event]) -> None:
        self._events = events
        self._parsed: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._events)

    def parse_last(self) -> None:
        """Parse the last ``created_at`` now, if there is one."""
        if self._events:
            self[-1]

    def __getitem__(self, index: int) -> int:
        if index < 0:
            index += len(self._events)
        if index not in self._parsed:
            self._parsed[index] = _created_us(self._events[index])
        return self._parsed[index]


class SliceWorker(Protocol):
    """What a worker thread reads with: made once per thread, closed when the thread ends."""

    def read(self, start: datetime, end: datetime) -> Generator[list[Event], None, None]:
        """The events of ``[start, end)`` page by page, each once, up to the end of the events."""
        ...

    def close(self) -> None:
        """Release the worker's resources (its HTTP session)."""
        ...


class _Output:
    """
    The pages of one slice waiting for the consumer: in memory first, then in a spill file.

    Written by the slice's owner only, read by the consumer only; the counters are guarded by the
    :class:`SlicedReader`'s lock. A page goes to memory only while no spilled page waits, so pages
    always come out in the order they went in.
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.ram: deque[list[Event]] = deque()
        self.path: str | None = None
        self.writer: IO[bytes] | None = None
        self.reader: IO[bytes] | None = None
        self.spilled = 0
        self.unspilled = 0
        self.finished = False

    @property
    def waiting_on_disk(self) -> int:
        return self.spilled - self.unspilled

    def write(self, events: list[Event]) -> None:
        """Append a page to the spill file (the owner's thread; the file is opened by then)."""
        assert self.writer is not None
        # marshal: the events are plain JSON values, which marshal writes and reads back exactly
        # and about seven times faster than json. The file lies in a directory that mkdtemp made
        # for this user alone, and is read back by this process only: nothing else's data is read.
        record = marshal.dumps(events)
        self.writer.write(_LENGTH.pack(len(record)))
        self.writer.write(record)
        self.writer.flush()

    def read(self) -> list[Event]:
        """Read the next spilled page (the consumer's thread; only pages counted as written)."""
        assert self.path is not None
        if self.reader is None:
            self.reader = open(self.path, "rb")  # noqa: SIM115 -- kept open across pages, closed by close()
        (length,) = _LENGTH.unpack(self.reader.read(_LENGTH.size))
        events: list[Event] = marshal.loads(self.reader.read(length))
        return events

    def close(self) -> None:
        """Close both files and delete the spill file."""
        for handle in (self.writer, self.reader):
            if handle is not None:
                handle.close()
        self.writer = self.reader = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.path = None


class SlicedReader:
    """
    Reads one window with several worker threads and yields its pages of events in window order.

    Iterate over :meth:`pages` once. Closing that generator (or an exception in its consumer, or in
    any worker) stops every worker, waits for each thread to end (a worker in the middle of a
    request ends when that request does), closes every session and removes every spill file.
    The first error of a worker is raised to the consumer.

    :param start: the window's start.
    :param end: the window's end (exclusive).
    :param concurrency: worker threads, and slices to begin with.
    :param page_size: events per request.
    :param make_worker: makes a thread's :class:`SliceWorker`; it is given the read's cancel flag,
        which is set when the read stops, so that waits (rate limiter, retries) end at once.
    :param on_page: called by workers after each page with the number of events it added.
    :param split_worthwhile: asked (under the reader's lock) before a slice is split; while it says
        no (the token's budget, not latency, bounds the read), idle workers wait instead.
    :param spill_dir: where to make the temporary spill directory; the system's default if ``None``.
    """

    def __init__(
        self,
        *,
        start: datetime,
        end: datetime,
        concurrency: int,
        page_size: int,
        make_worker: Callable[[threading.Event], SliceWorker],
        on_page: Callable[[int], None],
        split_worthwhile: Callable[[], bool] = lambda: True,
        spill_dir: str | None = None,
    ) -> None:
        self._split_worthwhile = split_worthwhile
        self._plan = SlicePlan(to_us(start), to_us(end), parts=concurrency, page_size=page_size)
        self._concurrency = concurrency
        self._make_worker = make_worker
        self._on_page = on_page
        self._spill_parent = spill_dir
        self._spill_dir: str | None = None
        # One lock guards the plan and the outputs. The consumer waits on ``_ready`` (woken only when
        # the slice it reads gets a page or ends), idle workers on ``_changed`` (woken only while
        # some wait): every wake-up makes the woken thread fight for the GIL, so none is wasted.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._changed = threading.Condition(self._lock)
        self._idle = 0
        self._outputs: dict[Slice, _Output] = {}
        self._slices_made = 0
        for piece in self._plan.slices:
            self._add_output(piece)
        self._ram_pages = 0
        self._ram_limit = RAM_PAGES_PER_WORKER * concurrency
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    def pages(self) -> Generator[list[Event], None, None]:
        """Start the workers; yield every non-empty page of events in window order; stop them all."""
        try:
            initial = list(self._plan.slices)
            for number in range(self._concurrency):
                thread = threading.Thread(
                    target=self._work,
                    args=(initial[number] if number < len(initial) else None,),
                    name=f"asana-audit-slice-{number}",
                    daemon=True,  # joined below; daemon only so a crash can never hang the interpreter
                )
                thread.start()
                self._threads.append(thread)
            while True:
                events = self._next_page()
                if events is None:
                    return
                yield events
        finally:
            self._shutdown()

    def progress(self) -> tuple[float, int, int]:
        """The share of the window read (0 to 1), the slices read to their end, and the slices made."""
        with self._lock:
            return self._plan.covered(), self._plan.finished, self._slices_made

    # ------------------------------------------------------------------ consumer side

    def _next_page(self) -> list[Event] | None:
        with self._lock:
            while True:
                if self._error is not None:
                    raise self._error
                if not self._plan.slices:
                    return None
                head = self._plan.slices[0]
                output = self._outputs[head]
                if output.ram:
                    self._ram_pages -= 1
                    return output.ram.popleft()
                if output.waiting_on_disk:
                    output.unspilled += 1
                    break
                if output.finished:
                    self._plan.pop_head()
                    del self._outputs[head]
                    output.close()
                    continue
                self._ready.wait()
        return output.read()  # outside the lock: only this thread reads, the owner only appends

    # ------------------------------------------------------------------ worker side

    def _work(self, piece: Slice | None) -> None:
        worker: SliceWorker | None = None
        try:
            worker = self._make_worker(self._cancel)
            while True:
                if piece is None:
                    piece = self._steal()
                    if piece is None:
                        return
                self._read(worker, piece)
                piece = None
        except ReadCancelled:
            pass
        except BaseException as err:  # every error reaches the consumer, which re-raises it
            with self._lock:
                if self._error is None:
                    self._error = err
                self._cancel.set()
                self._ready.notify_all()
                self._changed.notify_all()
        finally:
            if worker is not None:
                worker.close()

    def _steal(self) -> Slice | None:
        with self._lock:
            while True:
                if self._cancel.is_set() or self._plan.all_done:
                    return None
                piece = self._plan.steal() if self._split_worthwhile() else None
                if piece is not None:
                    self._add_output(piece)
                    return piece
                self._idle += 1
                try:
                    self._changed.wait()  # until a page changes the estimates, or a slice ends
                finally:
                    self._idle -= 1

    def _read(self, worker: SliceWorker, piece: Slice) -> None:
        with self._lock:
            output = self._outputs[piece]
        pages = worker.read(from_us(piece.start), from_us(piece.query_end))
        try:
            for events in pages:
                if self._cancel.is_set():
                    raise ReadCancelled
                stamps = _Stamps(events)
                stamps.parse_last()  # outside the lock: accept() looks at it first
                with self._lock:
                    # Under the lock, so that no split can move the end between the check and the
                    # record of the last event read, which the next split starts after.
                    keep, reached_end = self._plan.accept(piece, stamps)
                    if self._idle:
                        self._changed.notify_all()
                    kept = events if keep == len(events) else events[:keep]
                    in_memory = not kept or self._keep_in_memory(piece, output, kept)
                if not in_memory:
                    self._spill(piece, output, kept)
                self._on_page(keep)
                if reached_end:
                    break
        finally:
            pages.close()
        with self._lock:
            self._plan.finish(piece)
            if output.writer is not None:
                output.writer.close()
                output.writer = None
            output.finished = True
            self._wake(piece)
            if self._idle:
                self._changed.notify_all()

    def _keep_in_memory(self, piece: Slice, output: _Output, events: list[Event]) -> bool:
        """Queue a page in memory if the budget allows (caller holds the lock); else make its file."""
        head = self._plan.slices[0] is piece
        if not output.waiting_on_disk and (
            self._ram_pages < self._ram_limit or (head and len(output.ram) < HEAD_PAGES)
        ):
            output.ram.append(events)
            self._ram_pages += 1
            self._wake(piece)
            return True
        if self._spill_dir is None:
            # mkdtemp makes the directory readable and writable by this user only.
            self._spill_dir = tempfile.mkdtemp(prefix="asana-audit-spill-", dir=self._spill_parent)
        if output.path is None:
            output.path = os.path.join(self._spill_dir, f"slice-{output.number}.bin")
        return False

    def _spill(self, piece: Slice, output: _Output, events: list[Event]) -> None:
        """Append a page to the slice's spill file (outside the lock: only its owner writes it)."""
        if output.writer is None:
            assert output.path is not None
            output.writer = open(output.path, "wb")  # noqa: SIM115 -- appended page by page, closed by _read
        output.write(events)
        with self._lock:
            output.spilled += 1
            self._wake(piece)

    def _wake(self, piece: Slice) -> None:
        """Wake the consumer if it reads ``piece`` (caller holds the lock)."""
        if self._plan.slices and self._plan.slices[0] is piece:
            self._ready.notify()

    def _add_output(self, piece: Slice) -> None:
        self._outputs[piece] = _Output(self._slices_made)
        self._slices_made += 1

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        self._cancel.set()
        with self._lock:
            self._ready.notify_all()
            self._changed.notify_all()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:  # a finaliser may run in a worker; it cannot wait for itself
                thread.join()
        with self._lock:
            outputs = list(self._outputs.values())
            self._outputs.clear()
        for output in outputs:
            output.close()
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None
