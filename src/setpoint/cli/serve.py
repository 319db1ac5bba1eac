"""``setpoint serve``: the project's champion behind HTTP."""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from setpoint._console import console
from setpoint.cli._options import ProjectDir, open_project
from setpoint.errors import ConfigError, InvalidParameterError, MissingExtraError

__all__ = ["ROOT_ENV", "app_factory", "register", "serve", "ui", "ui_factory"]

# How the parent passes the project to workers that uvicorn starts in fresh processes.
ROOT_ENV = "SETPOINT_SERVE_ROOT"


def app_factory() -> object:
    """The ASGI app for each worker (``uvicorn --factory``)."""
    from setpoint.serve.connections import configure, raise_open_files_limit
    from setpoint.serve.logs import throttle_logs
    from setpoint.serve.server import create_app

    raise_open_files_limit()
    throttle_logs()
    app = create_app(os.environ[ROOT_ENV])
    configure(app.state.server.serving)
    return app


def ui_factory() -> object:
    """The dashboard alone (``setpoint ui``), for uvicorn ``--factory``."""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Mount, Route

    from setpoint.project import Project
    from setpoint.serve.connections import configure, raise_open_files_limit
    from setpoint.serve.logs import throttle_logs
    from setpoint.ui.site import create_ui

    raise_open_files_limit()
    throttle_logs()
    project = Project.open(os.environ[ROOT_ENV])
    configure(project.spec.serving)

    async def home(request: object) -> RedirectResponse:
        return RedirectResponse("/ui/")

    return Starlette(routes=[Route("/", home), Mount("/ui", app=create_ui(project))])


def _check_port(host: str, port: int) -> None:
    # uvicorn would log the clash and exit 1; a clear message is better.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = (
                "is in use"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be bound ({exc.strerror})"
            )
            raise ConfigError(
                f"--host/--port: {host}:{port} {reason}. Pick another with --port.",
                host=host,
                port=port,
            ) from None


def serve(
    directory: ProjectDir = Path(),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (one per core is typical).")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    autopilot: Annotated[
        bool, typer.Option(help="Also run the autopilot, in a process of its own.")
    ] = False,
) -> None:
    """Serve the champion over HTTP: predict, feedback, models, health and metrics.

    Every prediction is in the prediction log before its answer is sent. Workers
    follow the champion, shadow and canary aliases and swap models without
    dropping a request. See docs/serving.md.
    """
    if not 1 <= port <= 65535:
        raise InvalidParameterError(
            owner="serve", parameter="--port", expected="in 1..65535", got=port
        )
    if not 1 <= workers <= 64:
        raise InvalidParameterError(
            owner="serve", parameter="--workers", expected="in 1..64", got=workers
        )
    if log_level not in ("debug", "info", "warning", "error"):
        raise InvalidParameterError(
            owner="serve",
            parameter="--log-level",
            expected="debug, info, warning or error",
            got=log_level,
        )
    for module in ("uvicorn", "httptools"):
        # httptools comes with uvicorn[standard]; the connection guard is built on it.
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra="serve", module=module, feature="setpoint serve")
    import uvicorn

    from setpoint.serve.connections import PROTOCOL

    project = open_project(directory)  # spec and store errors surface here, before forking
    _check_port(host, port)
    if autopilot and project.spec.autopilot is None:
        raise ConfigError(
            "--autopilot: the spec has no 'autopilot' section; see docs/autopilot.md.",
            key="autopilot",
        )
    os.environ[ROOT_ENV] = str(project.root.resolve())
    # One OpenMP thread per worker: a single-row LightGBM call gains nothing from more,
    # and several workers' thread pools would fight over the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    console.print(
        f"Serving {project.name} on http://{host}:{port} with {workers} worker(s); Ctrl+C stops."
    )
    # Its own process: training holds a GIL and cores that requests must not wait for.
    pilot = (
        subprocess.Popen(
            [sys.executable, "-m", "setpoint", "autopilot", "--dir", str(project.root.resolve())]
        )
        if autopilot
        else None
    )
    try:
        uvicorn.run(
            "setpoint.cli.serve:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,  # the prediction log is the record of every request
            timeout_graceful_shutdown=10,
            http=PROTOCOL,  # header and body deadlines, a connection cap (serve/connections.py)
            ws="none",  # no websocket routes: an upgrade request is answered as plain HTTP
            timeout_keep_alive=project.spec.serving.keep_alive_timeout,
        )
    finally:
        if pilot is not None:
            pilot.terminate()
            pilot.wait(timeout=30)


def ui(
    directory: ProjectDir = Path(),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8001,
) -> None:
    """Serve the dashboard alone, against the project's store (no model is loaded).

    The same pages are at /ui of 'setpoint serve'. Every asset comes from an
    installed package: it works offline.
    """
    if not 1 <= port <= 65535:
        raise InvalidParameterError(
            owner="ui", parameter="--port", expected="in 1..65535", got=port
        )
    for module in ("uvicorn", "httptools", "jinja2"):
        # Named here, in the command, rather than as a traceback in a worker.
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra="ui", module=module, feature="setpoint ui")
    import uvicorn

    from setpoint.serve.connections import PROTOCOL

    project = open_project(directory)
    _check_port(host, port)
    os.environ[ROOT_ENV] = str(project.root.resolve())
    console.print(f"Dashboard of {project.name} on http://{host}:{port}/ui/ ; Ctrl+C stops.")
    uvicorn.run(
        "setpoint.cli.serve:ui_factory",
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=PROTOCOL,
        ws="none",
        timeout_keep_alive=project.spec.serving.keep_alive_timeout,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("ui")(ui)
