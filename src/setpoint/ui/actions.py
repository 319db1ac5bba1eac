"""The dashboard's actions: promote, roll back, start a retrain. Each needs an API key.

Every action is two steps: a ``GET`` shows what will happen and asks for the key
and a confirmation; the ``POST`` of that form does it. The form is plain
``application/x-www-form-urlencoded`` (no cookie, no session: the key in the
body is the authority, so a forged cross-site form has nothing to ride on). The
key is checked against the store's hashed keys and never written anywhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from setpoint.errors import ApiError, SetpointError, http_status
from setpoint.project import Project
from setpoint.registry import aliases as alias_ops
from setpoint.registry.api_keys import verify_key
from setpoint.store.tables import utcnow

__all__ = ["ACTIONS", "ActionError", "confirm_page", "parse_form", "perform"]

ACTIONS = ("promote", "rollback", "retrain")
MAX_FORM_BYTES = 16_384


class ActionError(ApiError):
    """An action the dashboard refuses itself, with its status and the sentence its page shows.

    An ``ApiError``, so that ``http_status`` reads its status as for any other
    error; the kind is never shown, as the page is HTML.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, "action_refused", message)


def parse_form(body: bytes, content_type: str) -> dict[str, str]:
    """The fields of an urlencoded form (the last value of each), or ``ActionError``."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise ActionError(
            415,
            "Expected a form (application/x-www-form-urlencoded), "
            f"got {content_type or 'nothing'!r}.",
        )
    if len(body) > MAX_FORM_BYTES:
        raise ActionError(413, f"The form is {len(body)} bytes; at most {MAX_FORM_BYTES} are read.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ActionError(400, "The form is not UTF-8 text.") from None
    fields = parse_qs(text, keep_blank_values=True, max_num_fields=20)
    return {name: values[-1] for name, values in fields.items()}


def _version(project: Project, raw: str | None) -> int:
    # ASCII digits only: "²" is a digit to str.isdigit but not to int.
    if raw is None or not (raw.strip().isascii() and raw.strip().isdigit()) or len(raw) > 40:
        raise ActionError(400, f"'version' must be a version number; got {raw!r:.60}.")
    number = int(raw)
    if number not in {v.version for v in project.versions()}:
        raise ActionError(404, f"{project.name} has no version {number}.")
    return number


def confirm_page(project: Project, action: str, query: dict[str, str]) -> dict[str, Any]:
    """What the confirmation form says will happen."""
    champion = alias_ops.get_alias(project.store.db, project=project.name, alias="champion")
    if action == "promote":
        version = _version(project, query.get("version"))
        what = (
            f"Put {project.name}@{version} through the promotion gate against the champion "
            f"@{champion}; it becomes champion if the gate passes (or if you force it)."
        )
        return {"action": action, "version": version, "what": what, "champion": champion}
    if action == "rollback":
        what = f"Give the champion alias back to the version that held it before @{champion}."
        return {"action": action, "version": None, "what": what, "champion": champion}
    if project.spec.autopilot is None:
        raise ActionError(
            400, "The spec has no 'autopilot' section, so there is no retrain to start."
        )
    what = (
        "Queue a retrain job now; the autopilot process (setpoint autopilot, or serve "
        "--autopilot) trains, gates, shadows and promotes it as for any trigger."
    )
    return {"action": action, "version": None, "what": what, "champion": champion}


def perform(project: Project, action: str, form: dict[str, str]) -> str:
    """Check the key and the confirmation, do ``action``, and say what happened."""
    if form.get("confirm") != "yes":
        raise ActionError(400, "Tick the confirmation box to do this.")
    who = verify_key(project.store.db, form.get("key") or None)
    if who is None:
        raise ActionError(403, "The API key is not valid or was revoked; nothing was done.")
    reason = (form.get("reason") or "").strip()[:500] or f"from the dashboard (key {who})"
    try:
        if action == "promote":
            version = _version(project, form.get("version"))
            decision = project.promote(version, reason=reason, force=form.get("force") == "yes")
            now = alias_ops.get_alias(project.store.db, project=project.name, alias="champion")
            verdict = "the gate passed" if decision.passed else "forced past a failed gate"
            reasons = "; ".join(decision.reasons)
            if now == version:
                return f"{project.name}@{version} is now the champion ({verdict}: {reasons})."
            return f"{project.name}@{version} was not promoted: {reasons}."
        if action == "rollback":
            back = project.rollback(reason=reason)
            return f"The champion is back to {project.name}@{back}."
        asked = utcnow()
        # Imported here: every server worker imports the dashboard, and only this
        # action needs the autopilot's loop (and the monitoring it pulls in).
        from setpoint.autopilot.loop import queue_retrain

        job, _ = queue_retrain(
            project,
            key=f"retrain:dashboard:{asked:%Y%m%dT%H%M%S%f}",
            as_of=asked,
            reasons=[f"requested on the dashboard: {reason}"],
            now=asked,
        )
        return f"Retrain job {job.id} is queued; the autopilot takes it on its next pass."
    except SetpointError as exc:  # the page shows the sentence alone, under the API's status
        raise ActionError(http_status(exc), str(exc)) from None
