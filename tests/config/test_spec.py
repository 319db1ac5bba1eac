from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from setpoint.config.loader import dump_spec, load_spec, parse_spec
from setpoint.config.policy import AutopilotPolicy
from setpoint.config.spec import ProjectSpec
from setpoint.config.template import render_template, write_template
from setpoint.errors import ConfigError, SpecError

MINIMAL = "project: demo\ntask: binary\ntarget: y\n"


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.metric == "pr_auc"
    assert spec.model.family == "lightgbm"
    assert parse_spec(MINIMAL.replace("binary", "regression")).metric == "rmse"


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (MINIMAL + "model:\n  family: xgboost\n", 5, "model.family", "lightgbm"),
        (MINIMAL + "gate:\n  margin: 0\n  confidnce: 0.9\n", 6, "gate.confidnce", "unknown key"),
        (MINIMAL + "validation:\n  max_bad_share: 1.5\n", 5, "validation.max_bad_share", "1"),
        (MINIMAL + "metric: rmse\n", 4, "metric", "does not fit task"),
        (
            MINIMAL
            + "timestamp: t\nsources: {}\njoins:\n  - {source: w, by: [k], feature_time: f}\n",
            7,
            "joins[0].source",
            "not a key of 'sources'",
        ),
        (MINIMAL + "sources:\n  events: {sql: select 1}\n", 5, "sources.events", "url"),
        ("project: demo\ntask: binary\n", 1, "target", "required"),
        ("project: bad name!\ntask: binary\ntarget: y\n", 1, "project", "pattern"),
        (MINIMAL + "features:\n  x: {min: 5, max: 1}\n", 5, "features.x", "greater than max"),
    ],
)
def test_bad_spec_names_file_line_and_key(text: str, line: int, key: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="proj/setpoint.yaml")
    error = info.value
    assert (error.path, error.line, error.key) == ("proj/setpoint.yaml", line, key)
    assert str(error).startswith(f"proj/setpoint.yaml:{line}: {key}: ")
    assert words in str(error)


@pytest.mark.parametrize(
    ("text", "words"),
    [("project: [\n", "invalid YAML"), ("- a\n- b\n", "mapping"), ("", "mapping")],
)
def test_malformed_yaml(text: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_spec(text)


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="setpoint init"):
        load_spec(tmp_path)
    (tmp_path / "setpoint.yaml").write_bytes(b"project: d\xe9mo\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(tmp_path)


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """``model.params`` whose last list is ``width ** (levels - 1)`` strings once expanded."""
    lines = ["model:", "  params:", '    a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return MINIMAL + "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return MINIMAL + "model:\n  params:\n    x: " + "{a: " * depth + "1" + "}" * depth + "\n"


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        # 10**8 strings from 9 lines; 4 levels of 10 (1,111 values) stay well under the limit.
        (billion_laughs(), 11, "at most 100,000"),
        (billion_laughs(levels=4, width=101), 7, "at most 100 times"),
        (MINIMAL + "model:\n  params: &p\n    self: *p\n", 5, "expands without end"),
        (nested(100), 6, "nest at most 32"),
    ],
)
def test_specs_that_expand_or_nest_without_bound_are_refused(
    text: str, line: int, words: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="proj/setpoint.yaml")
    assert (info.value.path, info.value.line) == ("proj/setpoint.yaml", line)
    assert str(info.value).startswith(f"proj/setpoint.yaml:{line}: ")
    assert words in str(info.value)


@pytest.mark.hostile
@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system", "!!python/name:os.system", "!custom"]
)
def test_a_yaml_tag_that_would_run_code_is_refused_and_runs_nothing(
    tmp_path: Path, tag: str
) -> None:
    ran = tmp_path / "ran"
    line = MINIMAL.count("\n") + 2
    text = MINIMAL + f'model:\n  params: {tag} ["touch {ran}"]\n'
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="proj/setpoint.yaml")
    assert (info.value.path, info.value.line) == ("proj/setpoint.yaml", line)
    assert tag.lstrip("!").split(":")[0] in str(info.value)
    assert not ran.exists()


def test_a_spec_within_the_limits_keeps_its_aliases_and_nesting() -> None:
    spec = parse_spec(billion_laughs(levels=4) + "segments: &s [a, b]\n")
    assert len(spec.model.params["a3"]) == 10
    assert spec.segments == ["a", "b"]
    assert parse_spec(nested(20)).model.params["x"]["a"]["a"]


@pytest.mark.hostile
def test_a_huge_spec_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "setpoint.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write(MINIMAL)
        # 64 MiB of comments; the loader reads at most its limit plus a byte of them.
        line = "# " + "x" * 1021 + "\n"
        for _ in range(64 * 1024):
            handle.write(line)
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert info.value.path == str(path)
    assert info.value.line == 4 + (1 << 20) // 1024 - 1
    assert "at most 1,048,576 bytes" in str(info.value)


def test_dump_round_trips() -> None:
    spec = parse_spec(MINIMAL + "segments: [a, b]\ngate: {margin: 0.01}\n")
    assert parse_spec(dump_spec(spec)) == spec


def test_template_is_valid_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write_template(tmp_path, project="p", task="binary", target="y", timestamp="t")
    assert load_spec(path).timestamp == "t"
    with pytest.raises(ConfigError, match="already exists"):
        write_template(tmp_path, project="p", task="binary", target="y")
    with pytest.raises(SpecError, match="task"):
        render_template(project="p", task="ranking", target="y")


def _keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation)
    return keys


def test_every_spec_key_is_documented() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
    from setpoint.config import spec as model

    for cls in (
        ProjectSpec,
        model.SourceSpec,
        model.FeatureSpec,
        model.ServingSpec,
        model.MonitoringSpec,
        AutopilotPolicy,
    ):
        for key in _keys(cls):
            assert f"`{key}" in page or f".{key}`" in page or f"{key}." in page, key
