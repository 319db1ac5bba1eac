"""What the dashboard's pages read from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import sys
from html.parser import HTMLParser
from pathlib import Path

import httpx
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
