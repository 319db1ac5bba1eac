"""What the dashboard's pages read from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.windows import END, START, real_window
from setpoint.errors import MissingExtraError, NotFoundError
from setpoint.project import Project
from setpoint.quickstart.build import quickstart_spec
from setpoint.registry.events import ALERT_EVENT, record_event
from setpoint.registry.projects import upsert_project
from setpoint.registry.stored_windows import StoredWindow, save_windows
from setpoint.store.workspace import Store
from setpoint.ui.pages import (
    events_page,
    monitoring_page,
    overview_page,
    quality_page,
    store_projects,
)


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


def _store_windows(project: Project, results: list[dict[str, Any]]) -> None:
    save_windows(
        project.store.db,
        project=project.name,
        version=1,
        window="1d",
        clock="event",
        windows=[
            StoredWindow(
                project=project.name,
                version=1,
                window="1d",
                clock="event",
                start=START + timedelta(days=i),
                end=END + timedelta(days=i),
                n=1500,
                n_labelled=1200,
                fingerprint=f"fp{i}",
                result=result,
                computed_at=END + timedelta(days=i),
            )
            for i, result in enumerate(results)
        ],
    )


def test_stored_windows_read_back_as_what_monitoring_computed(project: Project) -> None:
    window = real_window()
    assert window.realized is not None
    _store_windows(project, [json.loads(json.dumps(window.to_dict()))])
    page = monitoring_page(project)
    assert page["features"] == [f.name for f in window.drift.features]
    assert page["cells"]["distance"] == [window.drift.feature("distance").to_dict()]
    metric = project.spec.metric  # pr_auc, which the window measured and estimated
    assert window.estimate is not None
    assert page["realized"] == [window.realized.metrics[metric]]
    assert page["estimated"] == [window.estimate.metrics[metric]]
    overview = overview_page(project)["window"]
    assert overview["realized"] == window.realized.metrics[metric]
    assert overview["drifted"] is True
    assert overview["drift_share"] == window.drift.drift_share
    assert overview["drifted_features"] == ["distance"]
    rows = {row["name"]: row for row in store_projects(project)}
    assert rows["flights"]["realized"] == {k: m.value for k, m in window.realized.metrics.items()}


def test_a_window_of_another_shape_shows_its_counts_and_no_numbers(project: Project) -> None:
    real = json.loads(json.dumps(real_window().to_dict()))
    _store_windows(project, [real, {"drift": {"drift_share": 0.3, "drifted": True}}])
    page = monitoring_page(project)
    assert len(page["windows"]) == 2
    assert page["cells"]["distance"][1] is None  # the odd one has no drift to show
    assert page["cells"]["distance"][0] is not None
    overview = overview_page(project)["window"]
    assert (overview["n"], overview["labelled"]) == (1500, 1200)
    assert overview["drifted"] is None
    assert overview["drift_share"] is None
    assert overview["realized"] is None
    assert overview["drifted_features"] == []
    rows = {row["name"]: row for row in store_projects(project)}
    assert rows["flights"]["realized"] == {}
    assert rows["flights"]["drifted"] is None


def test_the_pages_render_a_real_and_an_odd_window(project: Project) -> None:
    from setpoint.ui.site import create_ui

    window = real_window()
    assert window.realized is not None
    real = json.loads(json.dumps(window.to_dict()))
    _store_windows(project, [real, {"drift": None}])

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=create_ui(project))
        async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
            return await client.get(path)

    monitoring = asyncio.run(get("/monitoring"))
    assert monitoring.status_code == 200, monitoring.text
    value = window.realized.metrics[project.spec.metric].value
    assert value is not None
    assert f"{value:.4f}" in monitoring.text  # the real window's row of the table
    overview = asyncio.run(get("/"))
    assert overview.status_code == 200, overview.text
    live = overview.text.split('id="live-h"')[1].split("</section>")[0]
    assert "1,500 predictions, 1,200 labelled" in live  # the odd window is the latest
    assert "stable" not in live  # its drift is unknown, not "stable"


class _Tables(HTMLParser):
    """The header and body cells of each table of the 'Alias moves' section."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.tables: list[dict[str, list[str]]] = []
        self.cell: str | None = None
        self.part = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.inside = ("aria-labelledby", "history-h") in attrs
        elif self.inside and tag == "table":
            self.tables.append({"th": [], "td": []})
        elif self.inside and tag in ("thead", "tbody"):
            self.part = tag
        elif self.inside and self.tables and tag in ("th", "td"):
            self.cell = ""
            if tag == "th":
                assert (self.part, dict(attrs).get("scope")) == ("thead", "col")

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.inside = False
        elif self.cell is not None and tag in ("th", "td"):
            self.tables[-1][tag].append(self.cell.strip())
            self.cell = None


def test_the_model_page_shows_the_kind_of_each_alias_move(project: Project) -> None:
    from setpoint.registry.aliases import AliasKind, set_alias
    from setpoint.registry.models import register_model
    from setpoint.ui.site import create_ui

    register_model(
        project.store,
        project="flights",
        kind="test/v1",
        files={"m": b"1"},
        lineage={},
        metrics={},
        params={},
    )
    moves = [
        ("champion", 1, AliasKind.PROMOTE, "first"),
        ("shadow", 1, AliasKind.SHADOW, "rollback: reads like one, is not"),
        ("shadow", None, AliasKind.CLEAR, "done"),
    ]
    for alias, version, kind, reason in moves:
        with project.store.db.write() as conn:
            set_alias(
                conn,
                project="flights",
                alias=alias,
                version=version,
                kind=kind,
                reason=reason,
                actor="test",
            )

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=create_ui(project))
        async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
            return await client.get(path)

    answer = asyncio.run(get("/models/1"))
    assert answer.status_code == 200, answer.text
    parser = _Tables()
    parser.feed(answer.text)
    [table] = parser.tables
    assert table["th"] == ["at (UTC)", "alias", "from", "to", "kind", "by", "reason"]
    rows = [table["td"][i : i + 7][1:] for i in range(0, len(table["td"]), 7)]
    assert rows == [
        ["champion", "-", "1", "promote", "test", "first"],
        ["shadow", "-", "1", "shadow", "test", "rollback: reads like one, is not"],
        ["shadow", "1", "-", "clear", "test", "done"],
    ]
