"""
100,000 events exported while about a quarter of the requests fail: every kind of fault the stand-in has
(429 with ``Retry-After``, 500, 502, 503, 504, dropped connections, truncated and non-JSON bodies, slow
answers, offsets rejected part-way as expired), each hitting 3 % of the requests, drawn from a seeded
RNG. The file must be byte for byte the fault-free export, which is byte for byte the ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.testing import FakeAsana, Fault
from tests.helpers.exports import midnight, serialise

from .support import SEED, export, inject_fault_mix, record

EVENTS = 100_000
START, END = midnight(8), midnight(1)
#: The chance that a request gets each kind of fault; with ten kinds, about a quarter get one.
SHARE = 0.03
#: Retries at once (no sleeping through a mix this dense), and enough attempts that a run of failures
#: on one request (0.26 ** 16, about 1e-9) never ends the export.
RETRY = RetryPolicy(max_attempts=16, backoff_base=0.001, backoff_max=0.005, max_elapsed=120)


@pytest.fixture(scope="module")
def big_fake() -> Iterator[FakeAsana]:
    """A stand-in holding exactly 100,000 events over the week before yesterday's midnight."""
    with FakeAsana(seed=5, event_count=EVENTS, start=START, end=END) as fake:
        yield fake


@pytest.fixture
def big_conn(big_fake: FakeAsana, monkeypatch: pytest.MonkeyPatch) -> FakeAsana:
    """:func:`big_fake` as ``asana_audit_log_default``, its counters zeroed and no fault pending."""
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", big_fake.connection_json())
    big_fake.clear_faults()
    big_fake.reset_stats()
    return big_fake


@pytest.fixture(scope="module")
def fault_free(big_fake: FakeAsana, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of the week's export without any fault, one request at a time."""
    path = tmp_path_factory.mktemp("fault-free") / "week.jsonl.gz"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", big_fake.connection_json())
        big_fake.reset_stats()
        started = time.monotonic()
        summary = export(str(path), start_at=START, end_at=END, request_retry=RETRY)
        seconds = time.monotonic() - started
    stats = big_fake.stats
    record(
        "faults",
        "no faults, 1 request at a time",
        events=summary["events"],
        requests=stats.requests,
        faulted=0,
        retried=0,
        expired_offsets=0,
        seconds=seconds,
    )
    return path.read_bytes()


def test_the_fault_free_export_is_the_ground_truth(big_fake: FakeAsana, fault_free: bytes) -> None:
    truth = big_fake.ground_truth(START, END)

    assert len(truth) == EVENTS
    assert fault_free == serialise(truth, compressed=True)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_an_export_with_a_quarter_of_its_requests_failing_equals_the_fault_free_export(
    concurrency: int, big_conn: FakeAsana, fault_free: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "week.jsonl.gz"
    kinds = inject_fault_mix(big_conn, seed=SEED + concurrency, share=SHARE, slow_delay=0.02)
    started = time.monotonic()
    try:
        summary = export(str(path), start_at=START, end_at=END, request_retry=RETRY, concurrency=concurrency)
    finally:
        big_conn.clear_faults()
    seconds = time.monotonic() - started

    stats = big_conn.stats
    faulted = sum(stats.faults_served.values())
    assert faulted >= 0.2 * stats.requests, "at least a fifth of the requests must get a fault"
    assert all(stats.faults_served[kind] > 0 for kind in kinds), stats.faults_served
    assert path.read_bytes() == fault_free
    assert summary["events"] == EVENTS
    record(
        "faults",
        f"{faulted / stats.requests:.0%} of requests faulted, {concurrency} at a time",
        events=summary["events"],
        requests=stats.requests,
        faulted=faulted,
        # Every faulted request but a slow one (which is answered) is sent again; a rejected offset
        # is followed by a request that resumes at the last event's created_at.
        retried=faulted - stats.faults_served[Fault.SLOW],
        expired_offsets=stats.faults_served[Fault.EXPIRE_OFFSET],
        seconds=seconds,
        faults_by_kind=", ".join(f"{kind.value} {stats.faults_served[kind]}" for kind in kinds),
    )
