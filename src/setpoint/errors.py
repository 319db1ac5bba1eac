"""Every error setpoint raises on purpose, and the HTTP status that answers each.

Each exception carries the context a user needs to fix the problem (the file,
the line, the column, the parameter) as attributes as well as in its message,
so that the CLI and the HTTP layer can render it without parsing text.

Each class declares ``http_status`` and ``http_kind``: what the API, the
dashboard's pages and its actions all answer for it. ``http_status(exc)`` and
``http_kind(exc)`` are the one mapping they use; any other exception is a bug
and answers 500 ``internal``. Only ``ApiError`` sets its own per instance.

::

    SetpointError                     409 conflict        refused by the current state; .context
    ├── ConfigError                   409 conflict        the configuration refuses it
    │   ├── SpecError                 409 conflict        setpoint.yaml: .path .line .key
    │   ├── SettingError              409 conflict        a SETPOINT_* setting: .name .value
    │   ├── InvalidParameterError     400 invalid_request a Python argument: .owner .parameter
    │   └── MissingExtraError         501 missing_extra   an optional dependency: .extra .module
    ├── DataError                     400 invalid_request the data is wrong
    │   ├── SourceError               400 invalid_request a source cannot be read: .source
    │   ├── SchemaError               400 invalid_request columns disagree with schema: .column
    │   ├── BatchRefusedError         400 invalid_request too many bad rows, none kept: .report
    │   └── InvalidRequestError       422 invalid_request a request's bad fields: .errors
    │       └── BatchTooLargeError    413 too_large       more records than serving.max_batch
    ├── StoreError                    503 unavailable     the metadata or artifact store
    │   ├── NotFoundError             404 not_found       no such model, alias...: .kind .name
    │   ├── ConflictError             409 conflict        another writer won, or a contradiction
    │   ├── ArtifactIntegrityError    503 unavailable     sha256 mismatch, not loaded: .sha256
    │   ├── StoreFaultError           503 unavailable     disk full, read-only, denied: .path .cause
    │   └── PredictionLogCorruptError 503 unavailable     a frame fails its CRC: .path .offset
    ├── TrainingError                 422 unprocessable   no model trains or loads from this
    ├── ServerError                   502 bad_gateway     another server refused: .status .kind
    └── ApiError                      (per instance)      a handler's own: .http_status .http_kind

``InvalidParameterError`` is also a ``ValueError``, ``MissingExtraError`` an
``ImportError`` and ``NotFoundError`` a ``LookupError``, for callers that catch those.

Why these statuses: a 4xx says the caller must change something, a 5xx that the
server's side must. Whatever the current state refuses (nothing to roll back
to, a model the spec cannot judge, feedback that contradicts stored feedback)
is 409; a store that cannot answer is 503, which ``Client`` retries; an error
from another setpoint server, met while answering, is 502; a feature whose
optional dependency is not installed is 501. docs/serving.md lists what the
API sends.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "ArtifactIntegrityError",
    "BatchRefusedError",
    "BatchTooLargeError",
    "ConfigError",
    "ConflictError",
    "DataError",
    "InvalidParameterError",
    "InvalidRequestError",
    "MissingExtraError",
    "NotFoundError",
    "PredictionLogCorruptError",
    "SchemaError",
    "ServerError",
    "SetpointError",
    "SettingError",
    "SourceError",
    "SpecError",
    "StoreError",
    "StoreFaultError",
    "TrainingError",
    "http_kind",
    "http_status",
]


class SetpointError(Exception):
    """Base class. ``context`` holds the structured facts behind the message.

    ``http_status`` and ``http_kind`` are what an HTTP answer says for the class
    (read them through ``http_status(exc)`` and ``http_kind(exc)``). They are
    plain class attributes, not ``ClassVar``, so that ``ApiError`` can hold its
    own per instance.
    """

    http_status: int = 409
    http_kind: str = "conflict"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = context

    def __str__(self) -> str:
        return self.message


class ConfigError(SetpointError):
    """The user's configuration (spec, settings, arguments) is wrong."""

    # While serving, the spec and settings are the server's state: what they refuse
    # conflicts with that state; no other body of the same request would pass.
    http_status = 409
    http_kind = "conflict"


class SpecError(ConfigError):
    """``setpoint.yaml`` is invalid. Names the file, the line and the key."""

    http_status = 409
    http_kind = "conflict"

    def __init__(self, message: str, *, path: str, line: int | None = None, key: str = "") -> None:
        where = path if line is None else f"{path}:{line}"
        prefix = f"{where}: {key}: " if key else f"{where}: "
        super().__init__(prefix + message, path=path, line=line, key=key)
        self.path = path
        self.line = line
        self.key = key
        self.detail = message  # without the location, for callers that word it their way


class SettingError(ConfigError):
    """A setting (usually an environment variable) has a bad value."""

    http_status = 409
    http_kind = "conflict"

    def __init__(self, message: str, *, name: str, value: str) -> None:
        super().__init__(message, name=name, value=value)
        self.name = name
        self.value = value


class InvalidParameterError(ConfigError, ValueError):
    """A parameter passed from Python is out of its domain.

    >>> str(InvalidParameterError(owner="Gate", parameter="confidence",
    ...                           expected="in (0, 1)", got=1.5))
    "The 'confidence' parameter of Gate must be in (0, 1). Got 1.5 instead."
    """

    http_status = 400
    http_kind = "invalid_request"

    def __init__(self, *, owner: str, parameter: str, expected: str, got: Any) -> None:
        super().__init__(
            f"The {parameter!r} parameter of {owner} must be {expected}. Got {got!r} instead.",
            owner=owner,
            parameter=parameter,
            expected=expected,
            got=got,
        )
        self.owner = owner
        self.parameter = parameter


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    http_status = 501
    http_kind = "missing_extra"

    def __init__(self, *, extra: str, module: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency {module!r}. "
            f"Install it with: pip install 'setpoint[{extra}]'",
            extra=extra,
            module=module,
        )
        self.extra = extra
        self.module = module


class DataError(SetpointError):
    """The data is wrong."""

    http_status = 400
    http_kind = "invalid_request"


class SourceError(DataError):
    """A data source cannot be read (missing, empty, truncated, bad encoding)."""

    http_status = 400
    http_kind = "invalid_request"

    def __init__(self, message: str, *, source: str, **context: Any) -> None:
        super().__init__(f"{source}: {message}", source=source, **context)
        self.source = source


class SchemaError(DataError):
    """Columns disagree with the spec or the stored schema."""

    http_status = 400
    http_kind = "invalid_request"

    def __init__(self, message: str, *, column: str | None = None, **context: Any) -> None:
        super().__init__(message, column=column, **context)
        self.column = column


class BatchRefusedError(DataError):
    """A batch had more bad rows than the spec allows; nothing was stored."""

    http_status = 400
    http_kind = "invalid_request"

    def __init__(self, message: str, *, report: Any) -> None:
        super().__init__(message, report=report)
        self.report = report


class InvalidRequestError(DataError):
    """A prediction request failed validation; ``errors`` names every bad field.

    Each entry is ``{"record": i, "field": name, "kind": ..., "detail": ...}``.
    """

    http_status = 422
    http_kind = "invalid_request"

    def __init__(self, message: str, *, errors: list[dict[str, Any]]) -> None:
        super().__init__(message, errors=errors)
        self.errors = errors

    @property
    def kinds(self) -> set[str]:
        """The distinct kinds of ``errors``."""
        return {str(e["kind"]) for e in self.errors}


class BatchTooLargeError(InvalidRequestError):
    """A request holds more records than ``serving.max_batch``; none was scored.

    Its own class because its answer is 413, not the 422 of a bad field.
    """

    http_status = 413
    http_kind = "too_large"


class StoreError(SetpointError):
    """The metadata or artifact store failed or refused."""

    # The server's side must recover; the request itself may succeed when retried.
    http_status = 503
    http_kind = "unavailable"


class NotFoundError(StoreError, LookupError):
    """No such project, dataset, model version or alias."""

    http_status = 404
    http_kind = "not_found"

    def __init__(self, *, kind: str, name: str, hint: str = "") -> None:
        message = f"No {kind} named {name!r}." + (f" {hint}" if hint else "")
        super().__init__(message, kind=kind, name=name)
        self.kind = kind
        self.name = name


class ConflictError(StoreError):
    """A concurrent writer changed the same record first, or an item contradicts a stored one."""

    http_status = 409
    http_kind = "conflict"


class ArtifactIntegrityError(StoreError):
    """An artifact's bytes do not match its sha256; it was not loaded."""

    http_status = 503
    http_kind = "unavailable"

    def __init__(self, message: str, *, sha256: str) -> None:
        super().__init__(message, sha256=sha256)
        self.sha256 = sha256


class StoreFaultError(StoreError):
    """The disk or database under the store refused: full, read-only, permission denied.

    ``path`` is the file, folder or database that refused, ``cause`` the reason in
    a few words ("no space left on device"); the message says what to do.
    """

    http_status = 503
    http_kind = "unavailable"

    def __init__(self, message: str, *, path: str, cause: str) -> None:
        super().__init__(message, path=path, cause=cause)
        self.path = path
        self.cause = cause


class PredictionLogCorruptError(StoreError):
    """A frame that is not the torn tail of the last segment fails its length or CRC."""

    http_status = 503
    http_kind = "unavailable"

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        super().__init__(f"{path}: {message} at byte {offset}", path=path, offset=offset)
        self.path = path
        self.offset = offset


class TrainingError(SetpointError):
    """A model cannot be trained on this data with this recipe, or stored files are no model."""

    # Well-formed, but nothing can be made of this data or these files.
    http_status = 422
    http_kind = "unprocessable"


class ServerError(SetpointError):
    """A setpoint server answered with an error, or could not be reached.

    ``status``, ``kind``, ``message``, ``errors`` and ``request_id`` come from the
    server's error shape (docs/serving.md). When there was no answer, ``status``
    is None and ``kind`` is ``"unreachable"``.
    """

    # Met while answering, it is another server's failure, passed on.
    http_status = 502
    http_kind = "bad_gateway"

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None,
        kind: str,
        errors: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            url=url,
            status=status,
            kind=kind,
            errors=errors or [],
            request_id=request_id,
        )
        self.url = url
        self.status = status
        self.kind = kind
        self.errors: list[dict[str, Any]] = errors or []
        self.request_id = request_id


class ApiError(SetpointError):
    """An answer a handler decides itself: its status, kind and per-field details.

    The only error whose ``http_status`` and ``http_kind`` are its own rather
    than its class's: the handler knows that a body is malformed (400) or a key
    is missing (401). Every instance is made with its status, so the class's
    500 is never answered.
    """

    http_status = 500
    http_kind = "internal"

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise InvalidParameterError(
                owner="ApiError", parameter="status", expected="an int in [400, 599]", got=status
            )
        super().__init__(message, status=status, kind=kind)
        self.http_status = status
        self.http_kind = kind
        self.errors = errors
        self.headers: dict[str, str] = headers or {}


def http_status(exc: BaseException) -> int:
    """The HTTP status that answers ``exc``: its class's, an ``ApiError``'s own, else 500.

    Any exception that is not a ``SetpointError`` was not raised on purpose: a bug.

    >>> http_status(NotFoundError(kind="model version", name="flights@9"))
    404
    >>> http_status(ApiError(415, "unsupported_media_type", "Send JSON."))
    415
    >>> http_status(KeyError("x"))
    500
    """
    return exc.http_status if isinstance(exc, SetpointError) else 500


def http_kind(exc: BaseException) -> str:
    """The ``kind`` of the API's error shape for ``exc``, beside ``http_status(exc)``."""
    return exc.http_kind if isinstance(exc, SetpointError) else "internal"
