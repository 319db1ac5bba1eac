"""The dashboard in a real headless Chromium (Debian's), against a real `setpoint ui` process.

The project has three weeks of real logged flights (the third 30 degrees warmer),
labels for two of them, windows stored by `monitor_project` and a batch with
quarantined rows; Playwright drives the browser through every page. Without
Chromium the tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from _support.serving import REPO, free_port
from setpoint.monitor.runner import monitor_project
from setpoint.project import Project
from setpoint.registry.api_keys import create_key

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian's chromium for the browser tests", pytrace=False)
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")

PAGES = {
    "/": "Overview",
    "/monitoring": "Monitoring",
    "/events": "Events",
    "/quality": "Data quality",
    "/models/1": "Model flights@1",
}
CHARTS = {"/": 0, "/monitoring": 2, "/events": 1, "/quality": 1, "/models/1": 0}


@pytest.fixture(scope="module")
def root(logged_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = shutil.copytree(logged_project, tmp_path_factory.mktemp("ui") / "flights")
    project = Project.open(root)
    monitor_project(project, window="1w", clock="served")
    # A batch with bad rows, so that the data-quality page has reasons and examples.
    project.ingest(_bad_batch(project), name="events")
    (root / "key.txt").write_text(create_key(project.store.db, name="dashboard"), encoding="utf-8")
    project.store.db.dispose()
    return root


def _bad_batch(project: Project) -> pd.DataFrame:
    from setpoint.registry.datasets import load_dataset

    frame, _ = load_dataset(project.store, project=project.name, name="events")
    batch = frame.tail(200).copy()
    batch["flight_id"] = batch["flight_id"] + "-again"
    batch.loc[batch.index[:5], "temp"] = 500.0  # outside the spec's range
    return batch


@pytest.fixture(scope="module")
def ui(root: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    log = (root / "ui.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "setpoint", "ui", "--dir", str(root), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/ui"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail((root / "ui.log").read_text())
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Visit:
    """A browser page, and every URL it asked for and every script error it met."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))


@pytest.fixture
def visit(browser: Any) -> Iterator[Visit]:
    opened = Visit(browser)
    yield opened
    opened.context.close()


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_with_its_charts_and_nothing_from_outside(
    visit: Visit, ui: str, path: str
) -> None:
    page = visit.page
    response = page.goto(ui + path)
    assert response.status == 200
    assert page.locator("h1").inner_text() == PAGES[path]
    expected = CHARTS[path]
    if expected:
        page.wait_for_selector(f"[data-drawn=true] >> nth={expected - 1}", timeout=15_000)
    assert page.locator("[data-drawn=true]").count() == expected
    assert page.locator(".js-plotly-plot .main-svg").count() >= expected
    assert visit.errors == []
    outside = [url for url in visit.requests if not url.startswith(ui.rsplit("/ui", 1)[0])]
    assert outside == []


def test_the_monitoring_page_shows_the_shifted_week_and_a_cell_on_click(
    visit: Visit, ui: str
) -> None:
    page = visit.page
    page.goto(ui + "/monitoring")
    page.wait_for_selector("#heatmap[data-drawn=true]")
    heatmap = page.locator("#heatmap")
    # The hover text of the temp row in the third (shifted) week says it drifted.
    figure = heatmap.evaluate("el => el.data[0]")
    row = figure["y"].index("temp")
    assert "drifted" in figure["text"][row][-1]
    assert "stable" in figure["text"][row][0]
    # A click on that cell shows its numbers.
    heatmap.evaluate(
        "(el, row) => el.emit('plotly_click', {points: [{y: 'temp', x: el.data[0].x[2], "
        "pointIndex: [row, 2]}]})",
        row,
    )
    panel = page.locator("#cell")
    assert panel.is_visible()
    assert "temp in the window from" in page.locator("#cell-title").inner_text()
    assert "drifted" in panel.inner_text()
    assert "yes" in panel.inner_text()
    # Its distribution beside the reference's: the warmer week's mass sits higher.
    page.wait_for_selector("#cell-chart[data-drawn=cell]")
    bars = page.locator("#cell-chart").evaluate("el => el.data")
    assert [trace["name"] for trace in bars] == ["reference", "this window"]
    reference, current = (np.array(trace["y"]) for trace in bars)
    assert reference.sum() == pytest.approx(1.0)
    assert current.sum() == pytest.approx(1.0)
    middle = np.arange(len(reference))
    assert (middle * current).sum() > (middle * reference).sum() + 1


def test_pages_link_to_each_other_by_keyboard(visit: Visit, ui: str) -> None:
    page = visit.page
    page.goto(ui + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Overview"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Monitoring"
    page.keyboard.press("Enter")
    page.wait_for_url(ui + "/monitoring")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Monitoring"


def test_every_page_has_the_landmarks_and_labels_a_reader_needs(visit: Visit, ui: str) -> None:
    page = visit.page
    for path in PAGES:
        page.goto(ui + path)
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.locator("main#main").count() == 1
        assert page.locator("nav[aria-label]").count() == 1
        assert page.locator("h1").count() == 1
        for figure in page.locator("figure").all():
            assert figure.locator("figcaption").inner_text().strip()
        for table in page.locator("table").all():
            assert table.locator("th").count() > 0
        for link in page.locator("a").all():
            assert link.inner_text().strip(), f"a link without text on {path}"


@pytest.mark.parametrize("path", [*PAGES, "/actions/rollback"])
def test_every_page_passes_the_axe_accessibility_check(visit: Visit, ui: str, path: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    page = visit.page
    page.goto(ui + path)
    expected = CHARTS.get(path, 0)
    if expected:
        page.wait_for_selector(f"[data-drawn=true] >> nth={expected - 1}", timeout=15_000)
    # axe-core, injected from the installed package: WCAG 2.1 A and AA rules.
    results = Axe().run(
        page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]}}
    )
    found = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]
    assert found == []


def test_an_unknown_page_or_version_is_a_clear_404(visit: Visit, ui: str) -> None:
    page = visit.page
    for path, words in [("/models/99", "99"), ("/models/abc", "abc"), ("/nowhere", "/nowhere")]:
        response = page.goto(ui + path)
        assert response.status == 404
        assert words in page.locator("[role=alert]").inner_text()


def _act(page: Any, *, key: str, force: bool = False) -> str:
    page.fill("#key", key)
    page.fill("#reason", "checked by hand")
    if force:
        page.check("#force")
    page.check("#confirm")
    page.click("form.action button[type=submit]")
    page.wait_for_load_state()
    return str(page.locator("main").inner_text())


def test_a_promotion_and_a_rollback_through_the_dashboard(
    visit: Visit, ui: str, root: Path
) -> None:
    page = visit.page
    key = (root / "key.txt").read_text(encoding="utf-8")
    page.goto(ui + "/models/2")
    page.click("text=Promote this version")
    assert page.locator("h1").inner_text() == "Promote flights@2"
    # A wrong key does nothing.
    said = _act(page, key="not-a-key", force=True)
    assert "not valid" in said
    assert Project.open(root).aliases()["champion"] == 1

    page.goto(ui + "/actions/promote?version=2")
    said = _act(page, key=key, force=True)
    assert "flights@2 is now the champion" in said
    assert Project.open(root).aliases()["champion"] == 2
    page.goto(ui + "/")
    assert "flights@2" in page.locator("#champion-h + dl").inner_text()

    page.click("text=Roll back the champion")
    said = _act(page, key=key)
    assert "The champion is back to flights@1" in said
    assert Project.open(root).aliases()["champion"] == 1
    moves = [e.payload for e in Project.open(root).events(kind="alias_set", limit=5)]
    assert any("checked by hand" in str(m.get("reason")) for m in moves)
    # The key is never kept: not in the events, not in the server's log.
    assert key not in str(Project.open(root).events(limit=500))
    assert key not in (root / "ui.log").read_text()


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [
        (
            "/actions/promote",
            "version=1&key=x&confirm=yes",
            {"content-type": "text/plain"},
            415,
            "Expected a form",
        ),
        ("/actions/promote", "version=1&key=x", None, 400, "confirmation"),
        ("/actions/promote", "version=1&key=wrong&confirm=yes", None, 403, "not valid"),
        ("/actions/promote", "key=x&confirm=yes&" + "a" * 20_000, None, 413, "bytes"),
        ("/actions/explode", "confirm=yes", None, 404, "No action"),
    ],
)
def test_bad_action_requests_are_refused_with_a_page(
    ui: str, path: str, body: str, headers: dict[str, str] | None, status: int, words: str
) -> None:
    sent = headers or {"content-type": "application/x-www-form-urlencoded"}
    answer = httpx.post(ui + path, content=body, headers=sent, timeout=10)
    assert answer.status_code == status
    assert words in answer.text
    assert "Traceback" not in answer.text


def test_a_confirmation_for_a_missing_version_is_a_404(ui: str) -> None:
    for query, status in [("version=99", 404), ("version=abc", 400), ("", 400)]:
        answer = httpx.get(f"{ui}/actions/promote?{query}", timeout=10)
        assert answer.status_code == status


def test_the_model_page_has_a_model_card_and_the_gate_decision(visit: Visit, ui: str) -> None:
    page = visit.page
    page.goto(ui + "/models/1")
    card = page.locator("#card-h + dl").inner_text()
    assert "late (binary)" in card
    assert "Trained on" in card
    assert "Weakest segments" in card
    gate = page.locator("#gate-h ~ table").first.inner_text()
    assert "no champion yet" in gate


def test_a_retrain_started_on_the_dashboard_is_a_job_for_the_autopilot(ui: str, root: Path) -> None:
    from setpoint.registry import jobs

    key = (root / "key.txt").read_text(encoding="utf-8")
    form = {"content-type": "application/x-www-form-urlencoded"}
    page = httpx.get(ui + "/actions/retrain", timeout=10)
    assert page.status_code == 200
    assert "Queue a retrain job now" in page.text
    answer = httpx.post(
        ui + "/actions/retrain", content=f"key={key}&confirm=yes&reason=a+check", headers=form
    )
    assert answer.status_code == 200
    assert "is queued" in answer.text
    project = Project.open(root)
    queued = jobs.list_jobs(project.store.db, project=project.name)
    assert [(j.kind, j.status) for j in queued] == [("retrain", "queued")]
    assert "a check" in queued[0].payload["trips"][0]
