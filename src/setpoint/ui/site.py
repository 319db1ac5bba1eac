"""The dashboard: server-rendered pages (Jinja2) with Plotly charts, all assets from packages.

``create_ui(project)`` is a Starlette app; ``setpoint serve`` mounts it at
``/ui`` and ``setpoint ui`` serves it alone. Pages read the store in a thread,
so a serving worker's event loop never waits on them. Every asset is served
from an installed package (this one, and ``plotly`` for ``plotly.min.js``):
nothing is fetched from a network, and the pages work offline.

A page or an action that cannot be done answers a message page under
``setpoint.errors.http_status`` of its error: the status the API answers for
the same error.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from setpoint.errors import MissingExtraError, NotFoundError, SetpointError, http_status
from setpoint.project import Project
from setpoint.ui import actions, charts, pages

try:
    import jinja2
    from markupsafe import Markup
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, HTMLResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as exc:
    # Raised on import, so that serve can answer /ui with the missing extra named.
    raise MissingExtraError(
        extra="ui", module=exc.name or "jinja2", feature="The dashboard"
    ) from None

__all__ = ["create_ui", "plotly_bundle"]

_HERE = Path(__file__).parent
_LARGEST_VERSION = 2**63 - 1


def plotly_bundle() -> Path:
    """``plotly.min.js`` as the installed ``plotly`` package ships it."""
    try:
        import plotly
    except ImportError:
        raise MissingExtraError(
            extra="ui", module="plotly", feature="The dashboard's charts"
        ) from None
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _figure(figure: dict[str, Any]) -> str:
    # Safe inside an HTML attribute once Jinja escapes it; dates become text.
    return json.dumps(figure, default=str, allow_nan=False)


def _script_json(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">``: left unescaped, so that the
    script reads it, with ``<``, ``>`` and ``&`` written as escapes so that no value
    can close the element."""
    text = json.dumps(value, default=str, allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return Markup(text)


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _number(value: Any, digits: int = 4) -> str:
    # NaN is how a stored null reads back into a float field: unknown, like None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes without reading the rest."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise actions.ActionError(413, f"The form is over {limit} bytes; nothing was done.")
    return body


def create_ui(project: Project, *, prefix: str = "/ui") -> Starlette:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(when=_when, number=_number, figure=_figure, script_json=_script_json)
    environment.globals.update(prefix=prefix, project=project.name)

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("active", "")
        return HTMLResponse(environment.get_template(name).render(**context), status_code=status)

    def refusal(exc: SetpointError, heading: str) -> HTMLResponse:
        return render("message.html", http_status(exc), heading=heading, message=str(exc))

    def page(
        template: str, load: Callable[[Request], dict[str, Any]], **extra: Any
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                data = await asyncio.to_thread(load, request)
            except SetpointError as exc:
                missing = isinstance(exc, NotFoundError)
                return refusal(exc, "Not found" if missing else "Cannot show this")
            return render(template, **data, **extra)

        return endpoint

    def overview(request: Request) -> dict[str, Any]:
        return {"page": pages.overview_page(project), "active": "overview"}

    def model(request: Request) -> dict[str, Any]:
        raw = request.path_params["version"]
        # ASCII digits only ("²" is a digit to str.isdigit, not to int), and no more than
        # a store's 64-bit integer holds: a larger number is no version either.
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > _LARGEST_VERSION:
            raise NotFoundError(kind="model version", name=raw[:40], hint="Versions are numbers.")
        data = pages.model_page(project, int(raw))
        return {"page": data, "active": "models"}

    def monitoring(request: Request) -> dict[str, Any]:
        data = pages.monitoring_page(project)
        return {
            "page": data,
            "heatmap": charts.drift_heatmap(data),
            "performance": charts.performance_chart(data),
            "details": data["cells"],
            "active": "monitoring",
        }

    def events(request: Request) -> dict[str, Any]:
        kind = request.query_params.get("kind") or None
        data = pages.events_page(project, kind=kind)
        return {"page": data, "timeline": charts.event_timeline(data), "active": "events"}

    def quality(request: Request) -> dict[str, Any]:
        data = pages.quality_page(project)
        return {"page": data, "bars": charts.quarantine_bars(data), "active": "quality"}

    def no_such(action: str) -> HTMLResponse | None:
        if action in actions.ACTIONS:
            return None
        known = ", ".join(actions.ACTIONS)
        return refusal(
            NotFoundError(kind="action", name=action, hint=f"The dashboard's actions are {known}."),
            "No such action",
        )

    async def action_form(request: Request) -> Response:
        action = request.path_params["action"]
        if (refused := no_such(action)) is not None:
            return refused
        try:
            data = await asyncio.to_thread(
                actions.confirm_page, project, action, dict(request.query_params)
            )
        except SetpointError as exc:
            return refusal(exc, "Cannot do that")
        return render("action.html", **data, active="")

    async def action_post(request: Request) -> Response:
        action = request.path_params["action"]
        if (refused := no_such(action)) is not None:
            return refused
        try:
            body = await _read_limited(request, actions.MAX_FORM_BYTES)
            form = actions.parse_form(body, request.headers.get("content-type", ""))
            said = await asyncio.to_thread(actions.perform, project, action, form)
        except SetpointError as exc:
            return refusal(exc, "Nothing was done")
        except ClientDisconnect:  # the form was cut off: nothing done, no one to tell
            return Response(status_code=499)
        return render("message.html", heading="Done", message=said)

    async def plotly_js(request: Request) -> Response:
        return FileResponse(plotly_bundle(), media_type="text/javascript")

    async def not_found(request: Request, exc: Exception) -> Response:
        missing = NotFoundError(kind="page", name=request.url.path, hint=f"See {prefix}/.")
        return refusal(missing, "Not found")

    return Starlette(
        routes=[
            Route("/", page("overview.html", overview)),
            Route("/models/{version}", page("model.html", model)),
            Route("/monitoring", page("monitoring.html", monitoring)),
            Route("/events", page("events.html", events)),
            Route("/quality", page("quality.html", quality)),
            Route("/actions/{action}", action_form, methods=["GET"]),
            Route("/actions/{action}", action_post, methods=["POST"]),
            Route("/static/plotly.min.js", plotly_js),
            Mount("/static", StaticFiles(directory=_HERE / "static")),
        ],
        exception_handlers={404: not_found},
    )
