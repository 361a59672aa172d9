"""
Sealing an archive as a task: a signed seal over the current records of each series, whose hash the task
publishes in its log and XCom. The sealing itself is
:func:`~airflow_provider_asana_audit.evidence.signing.seal_archive`'s.

.. seealso:: docs/evidence.md#seals
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_asana_audit.evidence.keys import Keyring, PublicKey
from airflow_provider_asana_audit.evidence.signing import load_signing_key, seal_archive
from airflow_provider_asana_audit.rules import check_conn_id
from airflow_provider_asana_audit.storage import ObjectLock, default_base, resolve_base
from airflow_provider_asana_audit.utils import rendered

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["AsanaAuditLogSealOperator", "public_keys"]


class AsanaAuditLogSealOperator(BaseOperator):
    """
    Seal every series of signed exports under a base path whose records changed since its last seal, and
    return the seals' hashes to publish outside the archive: ``{"seals": [{"workspace_gid", "series",
    "sequence", "intervals", "merkle_root", "path", "seal_sha256"}]}``.

    Runs one at a time per DAG by default (``max_active_tis_per_dag=1``): two seals of one series made
    at once would fork its chain, which the check reports.

    :param signing_conn_id: the connection whose password holds the Ed25519 private key. (templated)
    :param base_path: the root of the default layout; default the config option
        ``[asana_audit_log] base_path``, else ``file://{AIRFLOW_HOME}/asana_audit_log``. (templated)
    :param storage_conn_id: the Airflow connection of the storage, if it needs one. (templated)
    :param public_keys: the public keys of earlier signing keys (PEM text or paths of PEM files), whose
        records the new seals still cover after a key rotation. (templated)
    :param object_lock: write the seals with this S3 Object Lock retention; S3 only.

    .. seealso:: docs/evidence.md#seals
    """

    template_fields: Sequence[str] = ("signing_conn_id", "base_path", "storage_conn_id", "public_keys")
    ui_color = "#f06a6a"

    def __init__(
        self,
        *,
        signing_conn_id: str,
        base_path: str | None = None,
        storage_conn_id: str | None = None,
        public_keys: Sequence[str] = (),
        object_lock: ObjectLock | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("max_active_tis_per_dag", 1)
        super().__init__(**kwargs)
        self.signing_conn_id = signing_conn_id
        self.base_path = base_path
        self.storage_conn_id = storage_conn_id
        self.public_keys = public_keys
        self.object_lock = object_lock

    def execute(self, context: Context) -> dict[str, Any]:
        conn_id = check_conn_id(rendered(self.signing_conn_id), name="signing_conn_id")
        earlier = public_keys(rendered(self.public_keys))
        key = load_signing_key(conn_id)
        base = resolve_base(default_base(rendered(self.base_path)), conn_id=rendered(self.storage_conn_id))
        self.log.info("Sealing the signed exports under %s with key %s", base, key.fingerprint)
        written = seal_archive(
            key=key,
            base=base,
            keyring=Keyring(earlier) if earlier else None,
            object_lock=self.object_lock,
            log=self.log,
        )
        return {"seals": [seal.to_json() for seal in written]}


def public_keys(values: Sequence[str] | str | None) -> list[PublicKey]:
    """
    Public keys given as PEM text or as paths of PEM files (a single string counts as one).

    :raises AsanaAuditLogConfigError: for a file that cannot be read or text that is not a public key.
    """
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [
        PublicKey.from_pem(item) if "-----BEGIN" in item else PublicKey.from_file(Path(item))
        for item in (str(value).strip() for value in items)
        if item
    ]
