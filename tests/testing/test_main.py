"""``python -m airflow_provider_asana_audit.testing``: the stand-in from the command line."""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.testing.__main__ import build_parser, main, setup_lines

from .support import DEADLINE

ROOT = Path(__file__).resolve().parents[2]
EVENTS_PATH = "/workspaces/1200000000000001/audit_log_events"
AUTH = {"Authorization": "Bearer fake-asana-token"}

Launch = Callable[..., tuple[subprocess.Popen[str], str]]


def _readline(process: subprocess.Popen[str]) -> str:
    """The next line the process prints, waiting at most :data:`DEADLINE` seconds for it."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], DEADLINE)
    assert ready, f"the stand-in printed nothing in {DEADLINE} s"
    return process.stdout.readline()


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Start the CLI with extra arguments; return the process and its base URL. Ended afterwards."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_asana_audit.testing", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            start_new_session=True,  # its own process group, ended as a whole below
        )
        processes.append(process)
        first = _readline(process).strip()
        match = re.fullmatch(r"ASANA_STANDIN_URL=(http://127\.0\.0\.1:\d+/api/1\.0)", first)
        assert match, first
        return process, match.group(1)

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(DEADLINE)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def test_cli_prints_url_first_and_exits_cleanly_on_sigterm(launch: Launch) -> None:
    process, url = launch("--events-per-day", "10")
    response = requests.get(url + EVENTS_PATH, headers=AUTH, timeout=DEADLINE)
    assert response.status_code == 200
    assert response.json()["data"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(DEADLINE) == 0
    assert process.stdout is not None
    rest = process.stdout.read()
    assert "export AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT='{" in rest
    assert "airflow connections add asana_audit_log_default --conn-type asana_audit_log" in rest
    assert rest.rstrip().endswith("stopped")


def test_cli_events_gives_exactly_that_many_events(launch: Launch) -> None:
    _process, url = launch("--events", "250", "--days", "2")
    with requests.Session() as session:
        session.headers.update(AUTH)
        body = session.get(url + EVENTS_PATH, timeout=DEADLINE).json()
        count = 0
        while body["data"]:
            count += len(body["data"])
            body = session.get(body["next_page"]["uri"], timeout=DEADLINE).json()
    assert count == 250


def test_cli_latency_delays_each_request(launch: Launch) -> None:
    _process, url = launch("--events-per-day", "10", "--latency", "0.3")
    response = requests.get(url + EVENTS_PATH, headers=AUTH, timeout=DEADLINE)
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.3


def test_cli_rate_limit_is_a_token_bucket_of_burst_size(launch: Launch) -> None:
    _process, url = launch("--events-per-day", "10", "--requests-per-minute", "60", "--burst", "2")
    with requests.Session() as session:
        session.headers.update(AUTH)
        responses = [session.get(url + EVENTS_PATH, params={"limit": 1}, timeout=DEADLINE) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].headers["Retry-After"] == "2"


def test_cli_exits_2_when_the_port_is_taken() -> None:
    with FakeAsana(events=[]) as taken:
        result = subprocess.run(
            [sys.executable, "-m", "airflow_provider_asana_audit.testing", "--port", str(taken.bound_port)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            timeout=DEADLINE,
        )
    assert result.returncode == 2
    assert "cannot listen" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latency", "-1"], "latency"),
        (["--burst", "3"], "burst needs requests_per_minute"),
        (["--requests-per-minute", "0"], "requests_per_minute"),
        (["--events", "-5"], "count"),
        (["--max-in-flight", "0"], "max_in_flight"),
    ],
)
def test_an_invalid_option_value_exits_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--port", "0", *args]) == 2
    assert message in capsys.readouterr().err


def test_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.port, args.days, args.events_per_day, args.events) == (8765, 7, 200, None)
    assert (args.requests_per_minute, args.burst, args.latency) == (None, None, 0.0)
    assert args.max_in_flight is None


def test_parser_reads_the_benchmark_options() -> None:
    benchmark = ["--events", "1000000", "--requests-per-minute", "1500", "--burst", "30", "--latency", "0.05"]
    args = build_parser().parse_args([*benchmark, "--max-in-flight", "50"])
    assert (args.events, args.requests_per_minute, args.burst, args.latency) == (1_000_000, 1500, 30, 0.05)
    assert args.max_in_flight == 50


def test_the_max_in_flight_flag_needs_a_whole_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--max-in-flight", "fifty"])
    assert exit_.value.code == 2
    assert "--max-in-flight" in capsys.readouterr().err


def test_cli_max_in_flight_caps_concurrent_requests(launch: Launch) -> None:
    # One slot and a latency far beyond the deadline: of two requests sent at once, one holds the slot
    # until SIGTERM cuts its latency short, so the first answer to come back is the other's refusal.
    process, url = launch("--events-per-day", "10", "--max-in-flight", "1", "--latency", "600")
    answers: queue.Queue[object] = queue.Queue()

    def get() -> None:
        try:
            answers.put(requests.get(url + EVENTS_PATH, headers=AUTH, timeout=DEADLINE * 2))
        except requests.RequestException as exc:  # the held one, when the stand-in stops under it
            answers.put(exc)

    threads = [threading.Thread(target=get, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        first = answers.get(timeout=DEADLINE)
        assert isinstance(first, requests.Response)
        assert first.status_code == 429
        assert first.headers["Retry-After"] == "1"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(DEADLINE)
        for thread in threads:
            thread.join(DEADLINE)
    assert answers.qsize() == 1  # the held request ended too


def test_setup_lines_start_with_the_url_and_give_the_connection(fake: FakeAsana) -> None:
    lines = setup_lines(fake)
    assert lines[0] == f"ASANA_STANDIN_URL={fake.base_url}"
    assert any(line.startswith("export AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT=") for line in lines)
    assert f"workspace gid: {fake.workspace_gid}" in lines
