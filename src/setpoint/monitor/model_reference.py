"""The monitoring reference a model version was registered with (``reference.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from setpoint.errors import ConfigError
from setpoint.project import REFERENCE_FILE
from setpoint.registry.models import get_version, load_artifacts
from setpoint.stats.cbpe import CalibrationCheck
from setpoint.stats.reference import Reference

if TYPE_CHECKING:
    from setpoint.project import Project

__all__ = ["ModelReference", "load_reference"]


@dataclass(frozen=True)
class ModelReference:
    """What a model version is monitored against: its reference and decision threshold."""

    version: int
    reference: Reference
    calibration: CalibrationCheck | None
    threshold: float | None


def load_reference(project: Project, version: int) -> ModelReference:
    """The monitoring reference stored with ``version`` (sha256-checked).

    Raises ``ConfigError`` naming the version when it was registered before
    models carried a reference.
    """
    found = get_version(project.store, project=project.name, version=version)
    if REFERENCE_FILE not in found.artifacts:
        raise ConfigError(
            f"Model {project.name}@{version} has no monitoring reference ({REFERENCE_FILE}): "
            "it was registered before models carried one. Retrain ('setpoint train') and "
            "promote the new version to monitor against it.",
            version=version,
        )
    document = json.loads(load_artifacts(project.store, found)[REFERENCE_FILE])
    calibration = document.get("calibration")
    check = None
    if calibration is not None:
        bins = tuple(tuple(b) for b in calibration.get("bins", ()))
        check = CalibrationCheck(**{**calibration, "bins": bins})
    threshold = document.get("threshold")
    return ModelReference(
        version=version,
        reference=Reference.from_dict(document["reference"]),
        calibration=check,
        threshold=None if threshold is None else float(threshold),
    )
