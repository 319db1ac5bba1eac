"""Every error setpoint raises on purpose.

Each exception carries the context a user needs to fix the problem (the file,
the line, the column, the parameter) as attributes as well as in its message,
so that the CLI and the HTTP layer can render it without parsing text.

::

    SetpointError                       base of everything below; .context dict
    ├── ConfigError                     the user's configuration is wrong
    │   ├── SpecError                   setpoint.yaml: .path .line .key
    │   ├── SettingError                a SETPOINT_* setting: .name .value
    │   ├── InvalidParameterError       a Python argument: .owner .parameter  (also ValueError)
    │   └── MissingExtraError           an optional dependency is absent: .extra .module
    ├── DataError                       the data is wrong
    │   ├── SourceError                 a source cannot be read: .source
    │   ├── SchemaError                 columns disagree with the spec or schema: .column
    │   ├── BatchRefusedError           too many bad rows; nothing was stored: .report
    │   └── InvalidRequestError         a prediction request failed validation: .errors
    ├── StoreError                      the metadata or artifact store
    │   ├── NotFoundError               no such project, dataset, model or alias: .kind .name
    │   ├── ConflictError               a concurrent writer won; retry
    │   ├── ArtifactIntegrityError      sha256 mismatch; the artifact is not loaded: .sha256
    │   └── PredictionLogCorruptError   a prediction log frame fails its CRC: .path .offset
    ├── TrainingError                   a model cannot be trained on this data
    └── ServerError                     a setpoint server refused or is unreachable: .status .kind
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactIntegrityError",
    "BatchRefusedError",
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
    "TrainingError",
]


class SetpointError(Exception):
    """Base class. ``context`` holds the structured facts behind the message."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = context

    def __str__(self) -> str:
        return self.message


class ConfigError(SetpointError):
    """The user's configuration (spec, settings, arguments) is wrong."""


class SpecError(ConfigError):
    """``setpoint.yaml`` is invalid. Names the file, the line and the key."""

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


class SourceError(DataError):
    """A data source cannot be read (missing, empty, truncated, bad encoding)."""

    def __init__(self, message: str, *, source: str, **context: Any) -> None:
        super().__init__(f"{source}: {message}", source=source, **context)
        self.source = source


class SchemaError(DataError):
    """Columns disagree with the spec or the stored schema."""

    def __init__(self, message: str, *, column: str | None = None, **context: Any) -> None:
        super().__init__(message, column=column, **context)
        self.column = column


class BatchRefusedError(DataError):
    """A batch had more bad rows than the spec allows; nothing was stored."""

    def __init__(self, message: str, *, report: Any) -> None:
        super().__init__(message, report=report)
        self.report = report


class InvalidRequestError(DataError):
    """A prediction request failed validation; ``errors`` names every bad field.

    Each entry is ``{"record": i, "field": name, "kind": ..., "detail": ...}``.
    """

    def __init__(self, message: str, *, errors: list[dict[str, Any]]) -> None:
        super().__init__(message, errors=errors)
        self.errors = errors

    @property
    def kinds(self) -> set[str]:
        """The distinct kinds of ``errors`` (``"batch_too_large"`` maps to HTTP 413)."""
        return {str(e["kind"]) for e in self.errors}


class StoreError(SetpointError):
    """The metadata or artifact store failed or refused."""


class NotFoundError(StoreError, LookupError):
    """No such project, dataset, model version or alias."""

    def __init__(self, *, kind: str, name: str, hint: str = "") -> None:
        message = f"No {kind} named {name!r}." + (f" {hint}" if hint else "")
        super().__init__(message, kind=kind, name=name)
        self.kind = kind
        self.name = name


class ConflictError(StoreError):
    """A concurrent writer changed the same record first."""


class ArtifactIntegrityError(StoreError):
    """An artifact's bytes do not match its sha256; it was not loaded."""

    def __init__(self, message: str, *, sha256: str) -> None:
        super().__init__(message, sha256=sha256)
        self.sha256 = sha256


class PredictionLogCorruptError(StoreError):
    """A frame that is not the torn tail of the last segment fails its length or CRC."""

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        super().__init__(f"{path}: {message} at byte {offset}", path=path, offset=offset)
        self.path = path
        self.offset = offset


class TrainingError(SetpointError):
    """A model cannot be trained on this data with this recipe."""


class ServerError(SetpointError):
    """A setpoint server answered with an error, or could not be reached.

    ``status``, ``kind``, ``message``, ``errors`` and ``request_id`` come from the
    server's error shape (docs/serving.md). When there was no answer, ``status``
    is None and ``kind`` is ``"unreachable"``.
    """

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
