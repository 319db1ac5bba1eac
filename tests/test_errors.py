"""Every error declares its HTTP status, and the API and the dashboard answer it alike."""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape

from setpoint import errors
from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.errors import ApiError, SetpointError, http_kind, http_status
from setpoint.project import Project
from setpoint.quickstart.build import quickstart_spec
from setpoint.registry.api_keys import create_key
from setpoint.registry.models import ModelVersion
from setpoint.serve.server import create_app

REPO = Path(__file__).resolve().parent.parent

CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    ),
    key=lambda cls: cls.__name__,
)


def examples() -> list[SetpointError]:
    """One error of each class, as setpoint raises them."""
    bad_field = {"record": 0, "field": "temp", "kind": "out_of_range", "detail": "above 60"}
    too_many = {"record": None, "field": None, "kind": "batch_too_large", "detail": "5 records"}
    return [
        SetpointError("Nothing to roll back to: no earlier champion.", project="flights"),
        errors.ConfigError("Model flights@2 predicts 'delay', but the spec now says 'late'."),
        errors.SpecError("expected a number", path="setpoint.yaml", line=3, key="gate.confidence"),
        errors.SettingError("must be a whole number", name="SETPOINT_NUM_THREADS", value="many"),
        errors.InvalidParameterError(
            owner="Gate", parameter="confidence", expected="in (0, 1)", got=1.5
        ),
        errors.MissingExtraError(extra="ui", module="jinja2", feature="The dashboard"),
        errors.DataError("The batch holds no row."),
        errors.SourceError("no such file", source="events.csv"),
        errors.SchemaError("The column 'temp' is missing.", column="temp"),
        errors.BatchRefusedError("120 of 1000 rows are bad; at most 5% may be.", report={}),
        errors.InvalidRequestError("record 0: temp: out_of_range", errors=[bad_field]),
        errors.BatchTooLargeError("5 records; at most 4 per request", errors=[too_many]),
        errors.StoreError("Cannot open the metadata store at /nowhere."),
        errors.NotFoundError(kind="model version", name="flights@9"),
        errors.ConflictError("Another writer moved the alias 'champion' first; retry."),
        errors.ArtifactIntegrityError("The bytes of model.txt changed.", sha256="0" * 64),
        errors.StoreFaultError(
            "Cannot write the artifact store at /data: no space left on device.",
            path="/data",
            cause="no space left on device",
        ),
        errors.PredictionLogCorruptError("a bad CRC", path="w0/seg-1.log", offset=128),
        errors.TrainingError("The target column 'late' has only one class."),
        errors.ServerError(
            "POST /v1/predict failed", url="http://127.0.0.1:1", status=None, kind="unreachable"
        ),
        ApiError(
            429, "slow_down", "Too many requests; wait a second.", headers={"Retry-After": "1"}
        ),
    ]


def _id(exc: BaseException) -> str:
    return type(exc).__name__


def test_the_examples_cover_every_class() -> None:
    assert {SetpointError, ApiError, errors.SpecError} <= set(CLASSES)  # it finds the tree
    assert sorted({type(e) for e in examples()}, key=lambda c: c.__name__) == CLASSES


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_class_declares_its_status_and_kind(cls: type[SetpointError]) -> None:
    # declared on the class itself: a new class must choose, not inherit by accident
    assert "http_status" in vars(cls), f"{cls.__name__} does not declare http_status"
    assert "http_kind" in vars(cls), f"{cls.__name__} does not declare http_kind"
    status = vars(cls)["http_status"]
    assert type(status) is int
    assert 400 <= status <= 599
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", vars(cls)["http_kind"])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_the_drawn_tree_shows_each_class_with_its_status(cls: type[SetpointError]) -> None:
    doc = errors.__doc__ or ""
    lines = [
        line
        for line in doc.splitlines()
        if re.search(rf"── {cls.__name__} |^    {cls.__name__} ", line)
    ]
    assert len(lines) == 1, f"{cls.__name__} is not drawn once in the tree of errors.py"
    shown = "(per instance)" if cls is ApiError else f"{cls.http_status} {cls.http_kind} "
    assert shown in lines[0]


# The Client raises ServerError; no handler calls another server, so the API never sends it.
SENT = [cls for cls in CLASSES if cls not in (ApiError, errors.ServerError)]


@pytest.mark.parametrize("cls", SENT, ids=lambda cls: cls.__name__)
def test_docs_serving_lists_every_status_the_api_sends_for_a_class(
    cls: type[SetpointError],
) -> None:
    table = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    assert f"| {cls.http_status} | `{cls.http_kind}` |" in table


@pytest.mark.parametrize("exc", examples(), ids=_id)
def test_http_status_is_the_class_status(exc: SetpointError) -> None:
    if isinstance(exc, ApiError):
        assert (http_status(exc), http_kind(exc)) == (429, "slow_down")
    else:
        assert (http_status(exc), http_kind(exc)) == (type(exc).http_status, type(exc).http_kind)


def test_a_subclass_takes_its_own_status_over_its_parents() -> None:
    too_many = errors.BatchTooLargeError("6 records", errors=[])
    assert isinstance(too_many, errors.InvalidRequestError)
    assert (http_status(too_many), http_kind(too_many)) == (413, "too_large")
    assert http_status(errors.NotFoundError(kind="alias", name="x")) == 404  # not StoreError's 503


@pytest.mark.parametrize(
    "exc", [KeyError("x"), RuntimeError("boom"), ValueError("bad"), KeyboardInterrupt()], ids=_id
)
def test_any_other_exception_is_a_500(exc: BaseException) -> None:
    assert (http_status(exc), http_kind(exc)) == (500, "internal")


@pytest.mark.parametrize("status", [200, 302, 600, True])
def test_an_api_error_needs_an_error_status(status: Any) -> None:
    with pytest.raises(errors.InvalidParameterError, match="'status' parameter of ApiError"):
        ApiError(status, "odd", "An answer that is no error.")


# -- the same status from the API, a dashboard page and a dashboard action -----------------


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A project with no model yet (none is needed to list versions) and an API key."""
    root = tmp_path_factory.mktemp("errors") / "flights"
    root.mkdir()
    (root / SPEC_FILE).write_text(dump_spec(quickstart_spec()), encoding="utf-8")
    project = Project.open(root)
    key = create_key(project.store.db, name="ops")
    project.store.db.dispose()
    return root, key


async def _ask(root: Path, key: str) -> list[httpx.Response]:
    """The API, a dashboard page, an action's confirmation and the action, in that order,
    from the app of ``setpoint serve`` (the API with the dashboard at /ui), started."""
    app = create_app(root)
    # A bug answers 500 here as it does to a client, instead of failing the request.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    form = {"content-type": "application/x-www-form-urlencoded"}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://setpoint") as client,
        ):
            return [
                await client.get("/v1/models"),
                await client.get("/ui/"),
                await client.get("/ui/actions/promote", params={"version": "1"}),
                await client.post(
                    "/ui/actions/promote",
                    content=f"version=1&confirm=yes&key={key}",
                    headers=form,
                ),
            ]
    finally:
        gc.unfreeze()  # the server froze the collector's view of everything, this test's too


@pytest.mark.parametrize("exc", [*examples(), RuntimeError("an unexpected bug")], ids=_id)
def test_the_api_and_the_dashboard_answer_an_error_alike(
    project_root: tuple[Path, str], exc: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def versions(self: Project) -> list[ModelVersion]:
        raise exc

    # Each of the four requests lists the project's versions first thing.
    monkeypatch.setattr(Project, "versions", versions)
    api, page, confirm, action = asyncio.run(_ask(*project_root))
    expected = http_status(exc)
    assert [r.status_code for r in (api, page, confirm, action)] == [expected] * 4
    error = api.json()["error"]
    assert (error["status"], error["kind"]) == (expected, http_kind(exc))
    if isinstance(exc, SetpointError):
        assert error["message"] == str(exc)
        for answer in (page, confirm, action):
            assert str(escape(str(exc))) in answer.text  # as the template escapes it
    else:  # a bug's text may hold anything: the client is told where to look instead
        assert "server log" in error["message"]
    if isinstance(exc, errors.InvalidRequestError):
        assert error["errors"] == exc.errors
    if isinstance(exc, ApiError):
        assert api.headers["retry-after"] == "1"
