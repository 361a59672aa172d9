"""
The error classes: which fail a task without retries, and that each survives a trip between processes.
"""

from __future__ import annotations

import pickle

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_asana_audit import exceptions
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogAPIError,
    AsanaAuditLogArchiveError,
    AsanaAuditLogAuthError,
    AsanaAuditLogBadRequestError,
    AsanaAuditLogConfigError,
    AsanaAuditLogError,
    AsanaAuditLogInvalidOffsetError,
    AsanaAuditLogNotFoundError,
    AsanaAuditLogPermanentAPIError,
    AsanaAuditLogRetentionError,
    AsanaAuditLogRetriesExhaustedError,
    AsanaAuditLogSignatureError,
)

#: Whether each class fails a task at once (True) or lets Airflow retry it (False).
FAILS_WITHOUT_RETRY: dict[type[AsanaAuditLogError], bool] = {
    AsanaAuditLogError: False,
    AsanaAuditLogConfigError: True,
    AsanaAuditLogRetentionError: True,
    # The archive will not mend itself: it needs a re-export (or a backup), not the same task again.
    AsanaAuditLogArchiveError: True,
    # A changed or forged record stays so: retrying verifies the same bytes with the same keys.
    AsanaAuditLogSignatureError: True,
    AsanaAuditLogAPIError: False,
    AsanaAuditLogPermanentAPIError: True,
    AsanaAuditLogAuthError: True,
    AsanaAuditLogNotFoundError: True,
    AsanaAuditLogBadRequestError: True,
    AsanaAuditLogInvalidOffsetError: True,
    AsanaAuditLogRetriesExhaustedError: False,
}


def test_every_error_class_is_listed_here() -> None:
    assert sorted(exceptions.__all__) == sorted(cls.__name__ for cls in FAILS_WITHOUT_RETRY)


@pytest.mark.parametrize("cls", list(FAILS_WITHOUT_RETRY), ids=lambda cls: cls.__name__)
def test_each_error_is_an_airflow_error_that_fails_without_retry_when_retrying_cannot_help(
    cls: type[AsanaAuditLogError],
) -> None:
    assert issubclass(cls, AsanaAuditLogError)
    assert issubclass(cls, AirflowException)
    assert issubclass(cls, AirflowFailException) is FAILS_WITHOUT_RETRY[cls]


@pytest.mark.parametrize(
    "error",
    [
        AsanaAuditLogConfigError("page_size=0 is out of range: Asana accepts 1 to 100"),
        AsanaAuditLogRetentionError("Nothing to export"),
        AsanaAuditLogArchiveError("The archive under s3://bucket/asana is not whole: 1 gap"),
        AsanaAuditLogSignatureError("The record x does not match its signature", kind="signature_bad"),
        AsanaAuditLogRetriesExhaustedError("Asana request failed 3 times"),
        AsanaAuditLogAuthError(401, "Not Authorized", "put a valid token in the connection's password"),
        AsanaAuditLogInvalidOffsetError(400, "offset: Your pagination token is invalid."),
        AsanaAuditLogPermanentAPIError(403, "Forbidden (text/html)", "check the proxy", origin="A proxy"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_each_error_survives_pickling_with_its_message_and_fields(error: AsanaAuditLogError) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_an_api_error_names_who_answered() -> None:
    assert str(AsanaAuditLogAuthError(401, "Not Authorized", "Check the token")) == (
        "Asana returned HTTP 401: Not Authorized. Check the token"
    )
    assert str(AsanaAuditLogPermanentAPIError(403, "Forbidden", origin="A proxy")) == (
        "A proxy returned HTTP 403: Forbidden"
    )
