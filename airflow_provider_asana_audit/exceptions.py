"""
The package's one family of errors.

Every error derives from :class:`AsanaAuditLogError`, itself an Airflow exception. Errors that a task
retry cannot cure (bad input, a refused token, an unknown workspace) also derive from
``AirflowFailException``, so Airflow fails the task at once instead of retrying it. Messages say what
went wrong and what to change; none ever contains the token.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

__all__ = [
    "AsanaAuditLogAPIError",
    "AsanaAuditLogArchiveError",
    "AsanaAuditLogAuthError",
    "AsanaAuditLogBadRequestError",
    "AsanaAuditLogConfigError",
    "AsanaAuditLogError",
    "AsanaAuditLogInvalidOffsetError",
    "AsanaAuditLogNotFoundError",
    "AsanaAuditLogPermanentAPIError",
    "AsanaAuditLogRetentionError",
    "AsanaAuditLogRetriesExhaustedError",
    "AsanaAuditLogSignatureError",
]


class AsanaAuditLogError(AirflowException):
    """Base class of every error raised by this provider."""


class AsanaAuditLogConfigError(AsanaAuditLogError, AirflowFailException):
    """The arguments or the connection are wrong; nothing was requested. The message says what to change."""


class AsanaAuditLogRetentionError(AsanaAuditLogConfigError):
    """The requested interval lies where Asana keeps no events (older than 90 days or before 2021-10-08)."""


class AsanaAuditLogArchiveError(AsanaAuditLogError, AirflowFailException):
    """
    The archive is not whole, or an export would make it less whole; a retry cannot cure it.

    Raised by the archive check when it finds damage (the message lists what to re-export), and by a
    re-export that lacks events of the file it would replace.
    """


class AsanaAuditLogSignatureError(AsanaAuditLogArchiveError):
    """
    A record or seal failed verification.

    :param kind: ``"signature_bad"`` (the content or the signature was changed) or
        ``"signature_unknown_key"`` (signed by a key that is not in the keyring).
    """

    def __init__(self, message: str, *, kind: str) -> None:
        self.kind = kind
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_signature_error, (type(self), str(self), self.kind))


def _rebuild_signature_error(
    cls: type[AsanaAuditLogSignatureError], message: str, kind: str
) -> AsanaAuditLogSignatureError:
    return cls(message, kind=kind)


class AsanaAuditLogAPIError(AsanaAuditLogError):
    """
    Asana (or something in its place) answered with an error.

    The message reads ``"<origin> returned HTTP <status>: <message>. <hint>"``.

    :param status: the HTTP status code.
    :param message: Asana's own message (``errors[0].message``), or a description of the response.
    :param hint: what the user should change, if known.
    :param origin: who answered: ``"Asana"``, unless the response was not Asana's (a proxy's HTML error
        page, say), so that the message does not blame Asana, or the token, for it.
    """

    def __init__(self, status: int, message: str, hint: str = "", *, origin: str = "Asana") -> None:
        self.status = status
        self.asana_message = message
        self.hint = hint
        self.origin = origin
        text = f"{origin} returned HTTP {status}: {message}"
        super().__init__(f"{text}. {hint}" if hint else text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields, not from its text (the only argument Exception keeps), so that it
        # survives pickling: executors and multiprocessing pass errors between processes that way.
        return (_rebuild_api_error, (type(self), self.status, self.asana_message, self.hint, self.origin))


def _rebuild_api_error(
    cls: type[AsanaAuditLogAPIError], status: int, message: str, hint: str, origin: str
) -> AsanaAuditLogAPIError:
    return cls(status, message, hint, origin=origin)


class AsanaAuditLogPermanentAPIError(AsanaAuditLogAPIError, AirflowFailException):
    """An error response that repeating the request cannot cure (400, 401, 402, 403, 404, 451...)."""


class AsanaAuditLogAuthError(AsanaAuditLogPermanentAPIError):
    """401, 402 or 403: the token is wrong, or it has no access to the audit log API."""


class AsanaAuditLogNotFoundError(AsanaAuditLogPermanentAPIError):
    """404: the workspace gid (or the API URL) is wrong."""


class AsanaAuditLogBadRequestError(AsanaAuditLogPermanentAPIError):
    """400: Asana rejected a parameter."""


class AsanaAuditLogInvalidOffsetError(AsanaAuditLogBadRequestError):
    """400 for the ``offset`` parameter: the pagination token expired or is not valid for this query."""


class AsanaAuditLogRetriesExhaustedError(AsanaAuditLogError):
    """
    Transient failures (429, 5xx, broken connections, bad bodies) outlasted the retry budget.

    This is not a permanent failure: Airflow's own task retries may still succeed later.
    """
