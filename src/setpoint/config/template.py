"""The starter ``setpoint.yaml`` that ``setpoint init`` writes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from setpoint.config.loader import SPEC_FILE, parse_spec
from setpoint.errors import ConfigError, SpecError

__all__ = ["render_template", "write_template"]

_TEMPLATE = """\
# setpoint project spec. Every key below is optional unless marked required.
project: {project}          # required: name of the project in the store
task: {task}                # required: binary, multiclass or regression
target: {target}            # required: the column to predict
{timestamp_line}
{entity_line}
{source_block}
features: {{}}               # overrides of inferred types and domains, e.g.
#  distance: {{type: numeric, min: 0, max: 6000}}
#  carrier: {{type: categorical, categories: [AA, DL, UA]}}
#  free_text_notes: {{exclude: true}}
segments: []                # columns for sliced evaluation and the gate's segment check
metric: ""                  # primary metric; empty picks pr_auc / log_loss / rmse by task
model:
  family: lightgbm          # lightgbm or linear
  seed: 42
  calibration: isotonic     # isotonic, sigmoid or none (binary tasks)
  threshold: {{objective: f1}}  # or {{objective: recall_at_precision, precision: 0.8}}
  split: {{valid_fraction: 0.15, test_fraction: 0.15}}   # or test_from: "2024-07-01"
  tuning: {{trials: 0}}       # > 0 runs an Optuna search (pip install 'setpoint[tune]')
gate:
  margin: 0.0               # the challenger's lead must clear this, at the lower CI bound
  confidence: 0.95
  bootstrap: 1000
  max_segment_drop: 0.05    # no segment may lose more than this on the metric
validation:
  max_bad_share: 0.05       # refuse a batch whole above this share of bad rows
  null_rate_jump: 0.10
  unseen_category: quarantine   # or accept
  out_of_range: quarantine      # or accept
"""


# The `setpoint init` option behind each top-level key the template fills in.
_FLAGS = {
    "project": "--project",
    "task": "--task",
    "target": "--target",
    "timestamp": "--timestamp",
    "entity": "--entity",
    "sources": "--source",
}
# Characters that end or split a plain scalar inside a flow mapping ({path: ...}).
_FLOW_SPECIAL = frozenset(",[]{}:#")


def _scalar(value: str, *, flow: bool = False) -> str:
    """``value`` written so that YAML reads back the very same string.

    Column names are data, not YAML: "yes", "1", "a: b" or "# notes" must not
    turn into a boolean, a number, a mapping or a comment.

    >>> _scalar("churned"), _scalar("yes"), _scalar("a: b"), _scalar("petal width (cm)")
    ('churned', '"yes"', '"a: b"', 'petal width (cm)')
    """
    plain = (
        value == value.strip() and "#" not in value and not (flow and _FLOW_SPECIAL & set(value))
    )
    if plain:
        try:
            plain = yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
    return value if plain else json.dumps(value, ensure_ascii=False)


def render_template(
    *,
    project: str,
    task: str,
    target: str,
    timestamp: str | None = None,
    entity: str | None = None,
    source: str | None = None,
) -> str:
    """The starter spec text, validated; a bad value is reported against its ``init`` option."""
    text = _TEMPLATE.format(
        project=_scalar(project),
        task=_scalar(task),
        target=_scalar(target),
        timestamp_line=f"timestamp: {_scalar(timestamp)}"
        if timestamp
        else "# timestamp: event_time",
        entity_line=f"entity: {_scalar(entity)}" if entity else "# entity: id",
        source_block=(
            f"sources:\n  events: {{path: {_scalar(source, flow=True)}}}  "
            "# a CSV/Parquet path, or sql + url"
            if source
            else "sources: {}                 # e.g. events: {path: data.csv}, or sql + url"
        ),
    )
    try:
        parse_spec(text, source=SPEC_FILE)
    except SpecError as exc:
        # The user typed options, not this file: name the option they typed.
        flag = _FLAGS.get(exc.key.split(".")[0])
        if flag is None:
            raise
        given = {
            "--project": project,
            "--task": task,
            "--target": target,
            "--timestamp": timestamp,
            "--entity": entity,
            "--source": source,
        }[flag]
        # Still a SpecError (the spec would be invalid), located at the option.
        raise SpecError(exc.detail, path="setpoint init", key=f"{flag} {given!r}") from None
    return text


def write_template(
    directory: Path,
    *,
    project: str,
    task: str,
    target: str,
    timestamp: str | None = None,
    entity: str | None = None,
    source: str | None = None,
    force: bool = False,
) -> Path:
    """Write a validated starter spec; refuse to overwrite one unless forced."""
    path = directory / SPEC_FILE
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it.", path=str(path))
    text = render_template(
        project=project,
        task=task,
        target=target,
        timestamp=timestamp,
        entity=entity,
        source=source,
    )
    temp = path.with_name(path.name + ".tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temp.write_text(text, encoding="utf-8")
        temp.replace(path)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}.", path=str(path)) from None
    return path
