"""
A local stand-in for Asana's audit log API, for tests, demos and benchmarks.

:class:`FakeAsana` serves ``GET /api/1.0/workspaces/{workspace_gid}/audit_log_events`` over real HTTP
on 127.0.0.1, faithful to Asana's behaviour (the stream contract, opaque signed offsets, retention,
per-token rate limit and cap on requests in flight, error envelopes), with one-shot :class:`Fault`
injection, optional latency and a :meth:`FakeAsana.ground_truth` oracle. :func:`generate_events` makes
deterministic, realistic events of the types Asana documents.
``python -m airflow_provider_asana_audit.testing`` runs it in the foreground.

Only the standard library is used; nothing here imports Airflow or ``requests``.
"""

from __future__ import annotations

from airflow_provider_asana_audit.get_provider_info import CONN_TYPE
from airflow_provider_asana_audit.testing.data import DEFAULT_WORKSPACE_GID, generate_events, make_event
from airflow_provider_asana_audit.testing.fake import DEFAULT_TOKEN, FakeAsana
from airflow_provider_asana_audit.testing.faults import Fault
from airflow_provider_asana_audit.testing.query import INVALID_OFFSET_MESSAGE, ParsedRequest
from airflow_provider_asana_audit.testing.recorder import RecordedRequest, Stats
from airflow_provider_asana_audit.testing.vocabulary import (
    ACTOR_TYPES,
    EVENT_CATEGORIES,
    EVENT_TYPES,
    EventType,
)

__all__ = [
    "ACTOR_TYPES",
    "CONN_TYPE",
    "DEFAULT_TOKEN",
    "DEFAULT_WORKSPACE_GID",
    "EVENT_CATEGORIES",
    "EVENT_TYPES",
    "INVALID_OFFSET_MESSAGE",
    "EventType",
    "FakeAsana",
    "Fault",
    "ParsedRequest",
    "RecordedRequest",
    "Stats",
    "generate_events",
    "make_event",
]
