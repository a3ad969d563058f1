"""Named parameter sets (profiles/*.yaml): checked against params.yaml, printed as `dvc exp run -S` pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdmed.cli import main
from kdmed.config import deep_merge, load_params
from kdmed.errors import ConfigError
from kdmed.profiles import profile_settings, set_arguments

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


def test_the_repository_ships_at_least_one_profile():
    assert [p.name for p in PROFILES], "profiles/ holds the named params sets the README names"


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_each_shipped_profile_is_valid_and_changes_something(profile, tmp_path):
    settings = profile_settings(profile, ROOT / "params.yaml")
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    changed = {key for key, value in settings.items() if _get(base, key) != value}
    assert changed, f"{profile.name} repeats params.yaml's values only"
    # the -S pairs, applied the way DVC applies them (YAML values), give the merged params
    merged = base
    for pair in set_arguments(settings)[1::2]:
        key, _, text = pair.partition("=")
        merged = deep_merge(merged, _nest(key, yaml.safe_load(text)))
    written = tmp_path / "params.yaml"
    written.write_text(yaml.safe_dump(merged))
    params = load_params(written)
    for key, value in settings.items():
        assert _get(merged, key) == value
    assert params.common.image_size == merged["common"]["image_size"]


def test_an_unknown_key_is_an_error_naming_it(tmp_path):
    profile = tmp_path / "typo.yaml"
    profile.write_text("train: {stepz: 10}\n")
    with pytest.raises(ConfigError, match="'train.stepz'"):
        profile_settings(profile, ROOT / "params.yaml")


def test_an_invalid_value_is_refused_by_the_schema(tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("common: {image_size: 100}\n")
    with pytest.raises(ConfigError, match="common.image_size"):
        profile_settings(profile, ROOT / "params.yaml")


def test_the_cli_prints_dvc_set_arguments(tmp_path, capsys):
    profile = tmp_path / "p.yaml"
    profile.write_text("common: {image_size: 96}\ndatasets: {brain: {slice_range: [10, 60]}}\n")
    assert main(["--params", str(ROOT / "params.yaml"), "profile", str(profile)]) == 0
    assert capsys.readouterr().out.split() == [
        "-S",
        "common.image_size=96",
        "-S",
        "datasets.brain.slice_range=[10,60]",
    ]


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _nest(dotted: str, value) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value
