"""The server's log throttle on a real logger: one record of a kind per interval."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from setpoint.serve.logs import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, Clock]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    clock = Clock()
    handler.addFilter(Throttle(interval=60.0, clock=clock))
    logger = logging.getLogger("test.serve.throttle")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, out, clock
    finally:
        logger.removeHandler(handler)


def _fail(kind: type[Exception]) -> None:
    raise kind("boom")


@pytest.mark.hostile
def test_a_bug_hit_a_thousand_times_logs_one_traceback_then_a_count(
    logged: tuple[logging.Logger, io.StringIO, Clock],
) -> None:
    logger, out, clock = logged
    for _ in range(1000):
        try:
            _fail(KeyError)
        except KeyError:
            logger.exception("unexpected error in %s", "predict")
    assert out.getvalue().count("Traceback") == 1
    clock.now = 61.0
    try:
        _fail(KeyError)
    except KeyError:
        logger.exception("unexpected error in %s", "predict")
    text = out.getvalue()
    assert text.count("Traceback") == 2
    assert "unexpected error in predict (and 999 more like this in the last 60 s" in text


def test_each_kind_is_let_through_once(logged: tuple[logging.Logger, io.StringIO, Clock]) -> None:
    logger, out, _ = logged
    for _ in range(50):
        for endpoint in ("predict", "feedback"):
            try:
                _fail(ValueError)
            except ValueError:
                logger.exception("unexpected error in %s", endpoint)
        try:
            _fail(TypeError)
        except TypeError:
            logger.exception("unexpected error in %s", "predict")
        logger.warning("Invalid HTTP request received.")
    text = out.getvalue()
    assert text.count("Traceback") == 3  # ValueError on two endpoints, TypeError on one
    assert text.count("Invalid HTTP request received.") == 1
