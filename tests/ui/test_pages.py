"""What the dashboard's pages read from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from setpoint.errors import MissingExtraError, NotFoundError
from setpoint.project import Project
from setpoint.quickstart.build import quickstart_spec
from setpoint.registry.events import ALERT_EVENT, record_event
from setpoint.registry.projects import upsert_project
from setpoint.store.workspace import Store
from setpoint.ui.pages import events_page, monitoring_page, overview_page, quality_page


@pytest.fixture
def project(store: Store, tmp_path: Path) -> Project:
    spec = quickstart_spec()
    other = spec.model_copy(update={"project": "hotels"})
    with store.db.write() as conn:
        upsert_project(conn, spec)
        upsert_project(conn, other)
        record_event(conn, project="hotels", kind=ALERT_EVENT, payload={"rule": "drift"})
        record_event(conn, project="hotels", kind=ALERT_EVENT, payload={"rule": "realized"})
    return Project(spec, store, root=tmp_path)


def test_the_overview_lists_every_project_of_the_store(project: Project) -> None:
    page = overview_page(project)
    rows = {row["name"]: row for row in page["projects"]}
    assert set(rows) == {"flights", "hotels"}
    assert rows["flights"]["current"] is True
    assert rows["hotels"]["current"] is False
    assert rows["hotels"]["alerts"] == 2
    assert rows["flights"]["alerts"] == 0
    assert page["champion"] is None
    assert page["window"] is None
    assert page["versions"] == []


def test_an_empty_project_has_empty_pages_or_a_clear_not_found(project: Project) -> None:
    assert events_page(project)["events"] == []
    quality = quality_page(project)
    assert quality["total"] == 0
    assert quality["rows"] == []
    with pytest.raises(NotFoundError, match="setpoint monitor"):
        monitoring_page(project)


def test_without_the_extra_the_dashboard_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # jinja2 is installed here; blocking its import stands in for an install without it.
    monkeypatch.setitem(sys.modules, "jinja2", None)
    monkeypatch.delitem(sys.modules, "setpoint.ui.site", raising=False)
    with pytest.raises(MissingExtraError, match=r"setpoint\[ui\]") as info:
        importlib.import_module("setpoint.ui.site")
    assert info.value.extra == "ui"
    assert info.value.module == "jinja2"
