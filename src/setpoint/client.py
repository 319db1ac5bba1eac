"""A Python client for ``setpoint serve``: the HTTP contract of docs/serving.md.

Needs the ``serve`` extra (httpx)::

    from setpoint import Client

    with Client("http://127.0.0.1:8000", api_key=key) as client:
        answer = client.predict({"carrier": "UA", "distance": 1400.0})
        client.feedback([{"request_id": answer.request_id, "index": 0, "label": True}])

Connection failures and ``503 not_ready`` are retried with backoff: ``predict``
sends one ``X-Request-ID`` for all its attempts (the server keeps it as the
client's id, for tracing, and names the request itself) and feedback is idempotent;
``rollback`` is retried only when the request surely never left. Any other
error raises :class:`setpoint.errors.ServerError` with the server's ``status``,
``kind``, ``message`` and per-field ``errors``.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Self

from setpoint import __version__
from setpoint.errors import InvalidParameterError, MissingExtraError, ServerError

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_URL", "Client", "PredictResponse", "new_request_id"]

DEFAULT_URL = "http://127.0.0.1:8000"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_PAUSE = 5.0  # seconds: the longest wait between two attempts
_SHOWN_ERRORS = 5  # per-field errors spelled out in a message


@dataclass(frozen=True, slots=True)
class PredictResponse:
    """The answer to ``POST /v1/predict``: one prediction per record, in order."""

    request_id: str  # the server's name for the request: what feedback refers to
    model_version: int
    predictions: list[dict[str, Any]]
    client_request_id: str  # the X-Request-ID this client sent, kept in the log for tracing


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, valid as an ``X-Request-ID``."""
    return uuid.uuid4().hex


def _httpx() -> ModuleType:
    try:
        import httpx
    except ImportError:
        raise MissingExtraError(extra="serve", module="httpx", feature="setpoint.Client") from None
    return httpx


class Client:
    """A connection pool to one setpoint server; safe to share between threads."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        hx = _httpx()
        _check(base_url.startswith(("http://", "https://")), "base_url", "an http(s) URL", base_url)
        _check(timeout > 0, "timeout", "a positive number of seconds", timeout)
        _check(_is_int(retries) and retries >= 0, "retries", "an int >= 0", retries)
        _check(backoff >= 0, "backoff", "a number of seconds >= 0", backoff)
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        headers = {"Accept": "application/json", "User-Agent": f"setpoint/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http: httpx.Client = hx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def predict(
        self,
        records: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        explain: bool = False,
        client_request_id: str | None = None,
    ) -> PredictResponse:
        """Score one record or a batch; every attempt carries the same ``X-Request-ID``.

        The answer's ``request_id`` is the server's own name for the request, unique
        however often a client id is reused; ``client_request_id`` is the id sent.
        """
        batch = _as_list(records, owner="Client.predict", parameter="records")
        rid = new_request_id() if client_request_id is None else client_request_id
        ok = isinstance(rid, str) and REQUEST_ID.fullmatch(rid) is not None
        _check(ok, "client_request_id", "1 to 64 of A-Z a-z 0-9 . _ -", rid, owner="Client.predict")
        path = "/v1/predict?explain=true" if explain else "/v1/predict"
        response = self._call("POST", path, {"records": batch}, headers={"X-Request-ID": rid})
        data = self._json(response)
        try:
            return PredictResponse(
                request_id=str(data["request_id"]),
                model_version=int(data["model_version"]),
                predictions=[dict(p) for p in data["predictions"]],
                client_request_id=rid,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad_answer(response, f"no valid predictions ({exc})") from None

    def feedback(self, items: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store true outcomes, item by item; returns what became of them.

        ``{"stored": n, "duplicates": m, "conflicts": [...], "rejected": [...]}``:
        a conflict (an item whose key already has another label) and a rejected
        item (a bad field, or a label the served model cannot be judged on) are
        named by their position, ``record``, and were not stored while the
        others were. Raises ``ServerError`` (409 or 422) when no item was taken.
        """
        batch = _as_list(items, owner="Client.feedback", parameter="items")
        return self._json(self._call("POST", "/v1/feedback", {"feedback": batch}))

    def models(self) -> dict[str, Any]:
        """The champion, the challenger and the registered versions."""
        return self._json(self._call("GET", "/v1/models"))

    def health(self) -> bool:
        """Whether the server process answers (one attempt, no retry)."""
        return self._probe("/healthz")

    def ready(self) -> bool:
        """Whether a champion is loaded and the server takes predictions (one attempt)."""
        return self._probe("/readyz")

    # Administration (needs a key) -------------------------------------------------
    def promote(self, version: int, *, reason: str, force: bool = False) -> dict[str, Any]:
        """Put ``version`` through the gate; it becomes champion if it passes (or if forced)."""
        ok = _is_int(version) and version >= 1
        _check(ok, "version", "an int >= 1", version, owner="Client.promote")
        body = {"version": version, "reason": reason, "force": force}
        return self._json(self._call("POST", "/v1/admin/promote", body))

    def rollback(self, *, reason: str) -> dict[str, Any]:
        """Give ``champion`` back to the version before; not retried once it may have arrived."""
        body = {"reason": reason}
        return self._json(self._call("POST", "/v1/admin/rollback", body, idempotent=False))

    def reload(self) -> dict[str, Any]:
        """Make the server look at the aliases now instead of at its next poll."""
        return self._json(self._call("POST", "/v1/admin/reload", {}))

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        return bool(self._http.is_closed)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    # Internals --------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        from setpoint._json import jsonable  # numpy: paid on the first call, not at import

        hx = _httpx()
        sent = dict(headers or {})
        content = None
        if body is not None:
            content = json.dumps(jsonable(body), allow_nan=False, separators=(",", ":"))
            sent["Content-Type"] = "application/json"
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, content=content, headers=sent)
            except hx.TransportError as exc:
                never_sent = isinstance(exc, hx.ConnectError | hx.ConnectTimeout)
                if attempt >= self.retries or not (idempotent or never_sent):
                    raise self._no_answer(exc, method, path) from exc
                self._pause(attempt, None)
            else:
                if response.is_success:
                    return response
                if response.status_code != 503 or attempt >= self.retries:
                    raise _server_error(response, url=self.base_url, method=method, path=path)
                self._pause(attempt, response.headers.get("Retry-After"))
            attempt += 1

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2**attempt * (0.5 + random.random() / 2)
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, float(retry_after))
        time.sleep(min(delay, _MAX_PAUSE))

    def _probe(self, path: str) -> bool:
        hx = _httpx()
        try:
            return self._http.get(path).status_code == 200
        except hx.TransportError:
            return False

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._bad_answer(response, "the body is not a JSON object")
        return data

    def _bad_answer(self, response: httpx.Response, why: str) -> ServerError:
        request = response.request
        return ServerError(
            f"{request.method} {request.url.path} at {self.base_url} answered "
            f"{response.status_code} but {why}; is this a setpoint server?",
            url=self.base_url,
            status=response.status_code,
            kind="bad_response",
        )

    def _no_answer(self, exc: Exception, method: str, path: str) -> ServerError:
        hx = _httpx()
        tries = f"after {self.retries + 1} attempts" if self.retries else "(no retry)"
        if isinstance(exc, hx.TimeoutException) and not isinstance(exc, hx.ConnectTimeout):
            kind = "timeout"
            text = f"The setpoint server at {self.base_url} did not answer {method} {path} "
            text += f"in time {tries} ({type(exc).__name__})."
        else:
            kind = "unreachable"
            text = f"Cannot reach the setpoint server at {self.base_url} {tries} "
            text += f"({type(exc).__name__}: {exc or 'no detail'}). Is it running? "
            text += "Start one with 'setpoint serve'."
        return ServerError(text, url=self.base_url, status=None, kind=kind)


def _server_error(response: httpx.Response, *, url: str, method: str, path: str) -> ServerError:
    """The server's error shape as a ServerError; any other body still gives status and text."""
    status = response.status_code
    kind, message = f"http_{status}", response.reason_phrase or "error"
    errors: list[dict[str, Any]] = []
    request_id = response.headers.get("X-Request-ID")
    try:
        body = response.json()
    except ValueError:
        body = None
    shape = body.get("error") if isinstance(body, dict) else None
    if isinstance(shape, dict):
        kind = str(shape.get("kind") or kind)
        message = str(shape.get("message") or message)
        errors = [e for e in shape.get("errors") or [] if isinstance(e, dict)]
        request_id = str(shape.get("request_id") or request_id or "") or None
    elif response.text.strip():
        message = response.text.strip()[:200]
    lines = [f"{method} {path} failed with {status} {kind}: {message}"]
    # Spelled out unless the message already names every field.
    shown = [e for e in errors if str(e.get("field")) not in message][:_SHOWN_ERRORS]
    lines += [
        f"  record {e.get('record')}, field {e.get('field')!r}: {e.get('kind')}"
        + (f" ({e['detail']})" if e.get("detail") else "")
        for e in shown
    ]
    text = "\n".join(lines)
    return ServerError(
        text, url=url, status=status, kind=kind, errors=errors, request_id=request_id
    )


def _as_list(
    value: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, owner: str, parameter: str
) -> list[dict[str, Any]]:
    items = [value] if isinstance(value, Mapping) else value
    ok = isinstance(items, Sequence) and not isinstance(items, str | bytes)
    if not ok or not items or not all(isinstance(item, Mapping) for item in items):
        got = value if len(repr(value)) <= 80 else f"<{type(value).__name__} {repr(value)[:60]}...>"
        expected = "a dict or a non-empty list of dicts"
        raise InvalidParameterError(owner=owner, parameter=parameter, expected=expected, got=got)
    return [dict(item) for item in items]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, parameter: str, expected: str, got: object, *, owner: str = "Client") -> None:
    if not ok:
        raise InvalidParameterError(owner=owner, parameter=parameter, expected=expected, got=got)
