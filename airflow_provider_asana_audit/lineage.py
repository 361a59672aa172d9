"""
OpenLineage datasets of an export: the Asana audit log it reads, and the file and manifest it writes.

Used by :meth:`AsanaAuditLogExportOperator.get_openlineage_facets_on_complete
<airflow_provider_asana_audit.operators.audit_log.AsanaAuditLogExportOperator.get_openlineage_facets_on_complete>`.
The lineage that Airflow collects by itself from object-storage writes would name the hidden staging
object the file is streamed to, not the file it becomes; the operator's own lineage takes precedence
over it and names what downstream jobs read. Everything here needs the ``apache-airflow-providers-
openlineage`` package, which the OpenLineage integration brings; nothing imports it before it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

__all__ = ["audit_log_dataset", "export_lineage", "storage_dataset"]

#: Local files, in OpenLineage's naming: namespace ``file``, name the absolute path.
_LOCAL_PROTOCOLS = frozenset({"", "file", "local"})


def audit_log_dataset(*, base_url: str, workspace_gid: str) -> Any:
    """
    The workspace's audit log as an OpenLineage dataset.

    Namespace ``asana://<API host>`` (``asana://app.asana.com`` for Asana itself), name
    ``workspaces/<gid>/audit_log_events``, the endpoint's path.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(
        namespace=f"asana://{urlsplit(base_url).netloc}", name=f"workspaces/{workspace_gid}/audit_log_events"
    )


def storage_dataset(path: ObjectStoragePath, *, rows: int | None = None, size: int | None = None) -> Any:
    """
    A file on object storage as an OpenLineage output dataset, in OpenLineage's naming.

    Local files: namespace ``file``, name the absolute path. Object stores: namespace
    ``<scheme>://<bucket>``, name the key (``s3://audit-lake`` and ``asana/2026-11-24.jsonl.gz``).
    With ``rows`` and ``size``, it carries the output statistics facet.
    """
    from airflow.providers.common.compat.openlineage.facet import (
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )

    protocol = str(path.protocol or "")
    if protocol in _LOCAL_PROTOCOLS:
        namespace, name = "file", str(path.path)
    elif path.bucket:
        namespace, name = f"{protocol}://{path.bucket}", str(path.key)
    else:
        namespace, name = f"{protocol}://", str(path.path)
    output_facets: dict[str, Any] = {}
    if rows is not None or size is not None:
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=rows, size=size)
    return OutputDataset(namespace=namespace, name=name, outputFacets=output_facets)


def export_lineage(
    *,
    base_url: str | None = None,
    workspace_gid: str | None = None,
    file: ObjectStoragePath | None = None,
    manifest: ObjectStoragePath | None = None,
    events: int | None = None,
    size: int | None = None,
) -> Any:
    """
    The ``OperatorLineage`` of one export: the audit log in, the file and its manifest out.

    Without ``file`` (the export did not finish), only the input is named; without ``base_url`` and
    ``workspace_gid`` (the connection was never read), not even that.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs = []
    if base_url is not None and workspace_gid is not None:
        inputs.append(audit_log_dataset(base_url=base_url, workspace_gid=workspace_gid))
    outputs = []
    if file is not None:
        outputs.append(storage_dataset(file, rows=events, size=size))
    if manifest is not None:
        outputs.append(storage_dataset(manifest))
    return OperatorLineage(inputs=inputs, outputs=outputs)
