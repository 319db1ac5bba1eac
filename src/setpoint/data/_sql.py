"""SQL sources: run a query through SQLAlchemy without leaking the URL's password."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pandas as pd

from setpoint.config.spec import SourceSpec
from setpoint.errors import SourceError

__all__ = ["read_sql"]


def read_sql(spec: SourceSpec, *, name: str | None) -> tuple[pd.DataFrame, str]:
    """Run the query of ``spec``; return the frame and the label errors use."""
    # Imported here: only SQL sources pay for SQLAlchemy's import time.
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    url = spec.url or ""
    shown = _shown_url(url)
    label = f"source {name!r} (SQL on {shown})" if name else f"SQL on {shown}"

    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        message = _scrub(_first_line(exc), url)
        raise SourceError(
            f"cannot use the database URL: {message}", source=label, url=shown
        ) from None
    try:
        with engine.connect() as connection:
            frame = pd.read_sql(spec.sql or "", connection)
    except (SQLAlchemyError, pd.errors.DatabaseError, ImportError, ValueError) as exc:
        message = _scrub(_first_line(_root_cause(exc)), url)
        raise SourceError(f"the query failed: {message}", source=label, url=shown) from None
    finally:
        engine.dispose()
    return frame, label


def _root_cause(exc: BaseException) -> BaseException:
    # pandas wraps SQLAlchemy's error, which wraps the driver's; the driver's
    # message ("no such table: x") is the one that tells the user something.
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Without a parse we cannot tell which part is the password.
        return "an unparseable database URL"


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scrub(message: str, url: str) -> str:
    match = re.search(r"://[^:/@]*:([^@/]*)@", url)
    if match and match.group(1):
        # Drivers may echo the password as written or percent-decoded.
        for secret in {match.group(1), unquote(match.group(1))}:
            message = message.replace(secret, "***")
    return _redact_url(message)


def _redact_url(url: str) -> str:
    """Return a database URL with its password hidden.

    >>> _redact_url("postgresql://ann:s3cret@db.example.com:5432/sales")
    'postgresql://ann:***@db.example.com:5432/sales'
    >>> _redact_url("sqlite:///data.db")
    'sqlite:///data.db'
    """
    # A regex, not SQLAlchemy's parser: it runs on error messages, where a URL
    # is just part of the text.
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
