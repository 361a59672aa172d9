"""
Private: one GET of the audit log endpoint, as fast as ``requests`` allows, retried under the budget.

The session (its proxy and CA environment pinned once), the request prepared once per session, the
body decoded, ``Retry-After`` read, and every answer Asana should not have given mapped to an error
that says what to change. Nothing here is public API: :mod:`airflow_provider_asana_audit.client` is.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.hooks import dispatch_hook
from urllib3.exceptions import NewConnectionError

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.budget import RequestBudget, RetryPolicy
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogAPIError,
    AsanaAuditLogAuthError,
    AsanaAuditLogBadRequestError,
    AsanaAuditLogConfigError,
    AsanaAuditLogInvalidOffsetError,
    AsanaAuditLogNotFoundError,
    AsanaAuditLogPermanentAPIError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.query import AuditLogQuery, Page
from airflow_provider_asana_audit.slices import ReadCancelled
from airflow_provider_asana_audit.utils import Logger, decode_json

DEFAULT_BASE_URL = "https://app.asana.com/api/1.0"
USER_AGENT = f"airflow-provider-asana-audit/{__version__} python-requests/{requests.__version__}"

_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Refused and dropped connections, timeouts, and bodies cut short or badly encoded.
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_HINTS = {
    400: "Check the query parameters named in the message.",
    401: "The token was refused: put a valid Asana service account token in the connection's password.",
    402: (
        "The audit log API needs a service account token of an Enterprise+ organisation, a legacy "
        "Enterprise one, or Enterprise with the Compliance Management add-on; a personal access token "
        "or another plan is refused."
    ),
    403: (
        "The token may not read this audit log: use a service account token of the organisation that "
        "owns the workspace (Enterprise+, legacy Enterprise, or Enterprise with the Compliance "
        "Management add-on)."
    ),
    404: "Check the workspace_gid in the connection's extra and the API base URL in its host.",
    451: "Asana refuses this request for legal reasons; contact Asana support.",
}
#: Said when a response did not come from Asana's API (an HTML page, say).
_NOT_FROM_ASANA = (
    " The responses did not come from Asana's API: if this persists, check the API base URL in the "
    "connection's host and any proxy between Airflow and Asana (HTTPS_PROXY, NO_PROXY)."
)


class Transport:
    """
    Sends the events GET on one session, from a request prepared once, and reads the whole body.

    ``Session.get`` prepares every request from scratch (merging headers, cookies, hooks, encoding
    the URL): about a third of the client's CPU time per page. Only the query string changes from
    one page to the next, so the request is prepared once, with the session's headers, auth and
    hooks, and copied with a new URL for each page; the URL is what ``requests`` would have built
    from the same parameters. It goes straight to the session's transport adapter, with the
    session's (pinned) proxies and TLS settings, and its response hooks are run: what
    ``Session.send`` adds besides is cookie handling, and Asana's API uses no cookies.

    ``Response.content`` reads the body in 10 KiB chunks; a page is about 60 KiB, and reading it in
    one piece is cheaper. Read errors are the ones ``Response.content`` raises.

    :param session: the session to send on; ``requests.Session`` is not thread-safe, so one thread's.
    :param url: the events URL.
    :param timeout: the connect and read timeouts, in seconds.
    """

    def __init__(self, session: requests.Session, url: str, timeout: tuple[float, float]) -> None:
        self.session = session
        self._url = url
        self._timeout = timeout
        self._template = session.prepare_request(requests.Request("GET", url))
        self._encoded: tuple[AuditLogQuery, str] | None = None

    def url(self, query: AuditLogQuery, offset: str | None) -> str:
        """The URL of a page of ``query``: its parameters, then ``offset``, encoded as requests would."""
        encoded = self._encoded  # one reference, read and replaced whole: safe across threads
        if encoded is None or encoded[0] is not query:  # one query object serves a cursor's pages
            encoded = self._encoded = (query, urlencode(query.params()))
        if offset is None:
            return f"{self._url}?{encoded[1]}"
        return f"{self._url}?{encoded[1]}&{urlencode({'offset': offset})}"

    def get(self, url: str) -> tuple[requests.Response, bytes]:
        """GET ``url`` (no redirect is followed); return the response and its body."""
        # A copy of the template, without PreparedRequest.copy()'s copy of an empty cookie jar.
        template, prepared = self._template, requests.PreparedRequest()
        prepared.method, prepared.url = template.method, url
        prepared.headers, prepared.hooks = template.headers.copy(), template.hooks
        session = self.session
        response = session.get_adapter(url).send(
            prepared,
            stream=True,
            timeout=self._timeout,
            verify=True if session.verify is None else session.verify,
            cert=session.cert,
            proxies=session.proxies,
        )
        if prepared.hooks["response"]:
            response = dispatch_hook("response", prepared.hooks, response)  # type: ignore[no-untyped-call]
        # Closed on the way out: the connection goes back to the pool once the body is read, and is
        # dropped if reading it failed.
        with response:
            return response, b"".join(response.iter_content(chunk_size=None))

    def fetch_page(
        self,
        query: AuditLogQuery,
        offset: str | None,
        *,
        retry: RetryPolicy,
        budget: RequestBudget,
        log: Logger,
        cancel: threading.Event | None = None,
    ) -> Page:
        """
        One page of ``query`` at ``offset``, its GET retried under ``retry``.

        :param budget: the token's budget: asked before every attempt, told what became of it.
        :param log: where retries are logged.
        :param cancel: set when a concurrent read stops: waits end at once with :class:`ReadCancelled`.
        """
        url = self.url(query, offset)
        started = time.monotonic()
        attempt = 0  # failed attempts so far; a 429 with Retry-After is not one
        while True:
            if not budget.acquire(cancel=cancel):
                raise ReadCancelled
            retry_after: float | None = None
            foreign = False  # the last failure was a response that did not come from Asana's API
            unreachable = False  # nothing answered at the host and port
            refused = False  # a 429 that counts as a failure: no Retry-After, or beyond max_elapsed
            try:
                response, content = self.get(url)
            except _TRANSIENT_ERRORS as err:
                # Refused and dropped connections, timeouts and truncated bodies. requests' own text
                # can be long (it repeats the URL, never the headers), so it is cut to 200 characters.
                problem = f"{type(err).__name__} ({_short(err)})"
                unreachable = _is_unreachable(err)
            else:
                if response.status_code == 200:
                    body = decode(content)
                    if body is not None:
                        budget.settle("ok")
                        next_page = body.get("next_page")
                        next_offset = next_page.get("offset") if isinstance(next_page, dict) else None
                        return Page(events=body["data"], next_offset=next_offset or None)
                    problem = f"a response that is not Asana's JSON ({_content_type(response)})"
                    foreign = True
                elif response.status_code in _RETRYABLE_STATUSES:
                    problem = f"HTTP {response.status_code}"
                    retry_after = parse_retry_after(response)
                    if not _is_asana_error(content):
                        problem += f" ({_content_type(response)}, not Asana's JSON error)"
                        foreign = True
                    # A rate limit that says when to come back is no failure: the budget holds
                    # every request of the token back until then, and slows down after. Only
                    # max_elapsed bounds it: a request the server keeps refusing for that long
                    # fails with the usual message.
                    if (
                        response.status_code == 429
                        and retry_after is not None
                        and time.monotonic() - started + retry_after <= retry.max_elapsed
                    ):
                        refusals = budget.settle("refused", retry_after=retry_after)
                        if refusals:  # folded: one line every few seconds at most
                            log.warning(
                                "Asana's rate limit (HTTP 429): %d refusals since the last such line; "
                                "every request of this token waits %.1f s (Retry-After), then they "
                                "resume one at a time at a lower rate",
                                refusals,
                                retry_after,
                            )
                        continue
                    refused = response.status_code == 429  # without Retry-After it is a failure too
                else:
                    budget.settle("failed")
                    raise _permanent_error(response, content)
            budget.settle("refused" if refused else "failed", retry_after=retry_after)
            attempt += 1
            elapsed = time.monotonic() - started
            wait = max(retry.backoff(attempt), retry_after or 0.0)
            if attempt >= retry.max_attempts or elapsed + wait > retry.max_elapsed:
                advice = (
                    " Nothing answered there: check the host and port in the connection's host."
                    if unreachable
                    else " Raise the retry limits or try again later."
                )
                raise AsanaAuditLogRetriesExhaustedError(
                    f"Asana request failed {attempt} times in {elapsed:.0f} s; last failure: {problem}"
                    + (f" (Retry-After: {retry_after:g} s)" if retry_after is not None else "")
                    + "."
                    + advice
                    + (_NOT_FROM_ASANA if foreign else "")
                )
            log.warning(
                "Asana request failed with %s (attempt %d of %d); retrying in %.1f s",
                problem,
                attempt,
                retry.max_attempts,
                wait,
            )
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                raise ReadCancelled


def open_session(token: str, url: str, session: requests.Session | None = None) -> requests.Session:
    """
    ``session`` (or a new one) set up to send ``token`` to ``url``, its environment pinned.

    With ``trust_env``, ``requests`` looks up the proxy variables (and ``NO_PROXY``), the CA bundle
    variables and ``~/.netrc`` again on every request: about a fifth of the client's CPU time per
    page. The proxies and the CA bundle are resolved here by ``requests``' own
    ``merge_environment_settings`` for this URL (one host, so the answer is the same for every
    request) and set on the session, which then stops looking. A ``~/.netrc`` entry is no longer
    consulted: it would have replaced the bearer token with a Basic login anyway.
    """
    session = session or requests.Session()
    session.headers.update(
        {"Authorization": f"Bearer {token.strip()}", "Accept": "application/json", "User-Agent": USER_AGENT}
    )
    if session.trust_env:
        settings = session.merge_environment_settings(url, {}, None, None, None)
        session.proxies = settings["proxies"]
        session.verify = settings["verify"]
        session.cert = settings["cert"]
        session.trust_env = False
    return session


def copy_session(source: requests.Session) -> requests.Session:
    """A new session set up like ``source`` (headers, proxies, TLS); its adapters are not copied."""
    session = requests.Session()
    session.headers.clear()
    session.headers.update(source.headers)
    session.proxies = dict(source.proxies)
    session.verify = source.verify
    session.cert = source.cert
    session.auth = source.auth
    session.trust_env = source.trust_env
    return session


def check_base_url(base_url: str) -> str:
    """
    Return ``base_url`` without a trailing slash if the token may be sent there.

    :raises AsanaAuditLogConfigError: for anything but ``https://``, or ``http://`` to a loopback
        address, and for a host name or port that no request could be sent to.
    """
    parts = urlsplit(base_url.strip())
    if "@" in parts.netloc or "@" in base_url.split("?", 1)[0]:
        # Never repeat the URL here: what stands before the "@" may be the token itself.
        raise AsanaAuditLogConfigError(
            "The API base URL must not contain a user name or password: put the token in the "
            f"connection's password, and the URL alone in its host, e.g. {DEFAULT_BASE_URL!r}"
        )
    try:
        parts.port  # noqa: B018 -- a port that is not a number raises ValueError here
        requests.Request("GET", base_url.strip()).prepare()  # what requests would refuse later
        well_formed = bool(parts.hostname)
    except (ValueError, requests.exceptions.RequestException):
        well_formed = False
    if parts.scheme not in ("https", "http") or not well_formed or parts.hostname is None:
        raise AsanaAuditLogConfigError(
            f"The API base URL {base_url!r} is not a full URL; use e.g. {DEFAULT_BASE_URL!r}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise AsanaAuditLogConfigError(
            f"Refusing to send the token over plain http to {parts.hostname}: use an https:// URL "
            "(plain http is allowed for loopback addresses only)"
        )
    return base_url.strip().rstrip("/")


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def decode(content: bytes) -> dict[str, Any] | None:
    """The JSON body if it has Asana's shape (a ``data`` list), else None."""
    try:
        body = decode_json(content)
    except ValueError:
        # What the fast decoder refuses (a byte-order mark, UTF-16, NaN, a lone surrogate) is
        # decoded by the standard one, so that the result never depends on which decoder ran.
        try:
            body = json.loads(content)
        except ValueError:
            return None
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return body
    return None


def parse_retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_unreachable(err: Exception) -> bool:
    """Whether nothing answered at all: the connection was refused, or the host name did not resolve."""
    if not isinstance(err, requests.ConnectionError) or isinstance(err, requests.Timeout):
        return False
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, NewConnectionError)


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= 200 else text[:200] + "..."


def _asana_message(response: requests.Response, content: bytes) -> str:
    """Asana's own error message from the ``errors`` envelope, or a short description of the body."""
    try:
        errors = json.loads(content).get("errors") or []
        messages = [str(error.get("message")) for error in errors if error.get("message")]
        if messages:
            return "; ".join(messages)
    except (ValueError, AttributeError):
        pass
    return response.reason or "no error message"


def _content_type(response: requests.Response) -> str:
    """The response's media type, e.g. ``text/html``, for messages."""
    return response.headers.get("Content-Type", "").split(";")[0].strip()[:60] or "no Content-Type"


def _is_asana_error(content: bytes) -> bool:
    """Whether a body is Asana's error envelope, ``{"errors": [...]}``."""
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("errors"), list)


def _permanent_error(response: requests.Response, content: bytes) -> AsanaAuditLogAPIError:
    status = response.status_code
    message = _asana_message(response, content)
    hint = _HINTS.get(status, "")
    if 300 <= status < 400:
        return AsanaAuditLogPermanentAPIError(
            status, f"redirect to {response.headers.get('Location', '?')}", "Check the API base URL."
        )
    if not _is_asana_error(content):
        return AsanaAuditLogPermanentAPIError(
            status,
            f"{response.reason or 'no reason given'} ({_content_type(response)})",
            "Something between Airflow and Asana answered instead of Asana's API: check the API base URL "
            "in the connection's host and any proxy (HTTPS_PROXY, NO_PROXY); Asana did not see the token",
            origin="A server other than Asana's API",
        )
    if status in (401, 402, 403):
        return AsanaAuditLogAuthError(status, message, hint)
    if status == 404:
        return AsanaAuditLogNotFoundError(status, message, hint)
    if status == 400 and "offset" in message.lower():
        return AsanaAuditLogInvalidOffsetError(
            status, message, "The pagination offset expired or belongs to another query."
        )
    if status == 400:
        return AsanaAuditLogBadRequestError(status, message, hint)
    return AsanaAuditLogPermanentAPIError(status, message, hint)
