"""Named parameter sets ("profiles"): a partial params file merged over params.yaml by `dvc exp run -S`.

A profile such as `profiles/cpu-128px.yaml` holds only the keys it changes, nested as in params.yaml.
`kdmed profile FILE` checks every key against the base params file (a typo is an error naming it) and the
merged result against the schema, then prints one `-S key=value` pair per key, so that

    dvc exp run $(kdmed profile profiles/cpu-128px.yaml)

runs the pipeline under that profile as a DVC experiment (`dvc exp show` compares it with the others).
"""

from __future__ import annotations

import json
from pathlib import Path

from kdmed.config import Params, deep_merge, read_yaml_mapping
from kdmed.config_schema import build
from kdmed.errors import ConfigError


def flatten(overrides: dict, base: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value for every leaf of `overrides`; each key must already exist in `base`."""
    flat: dict[str, object] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if not isinstance(base, dict) or key not in base:
            raise ConfigError(
                f"profile key '{dotted}' is not in the base params file; use a key that params.yaml has "
                "(a profile only changes values, it never adds settings)."
            )
        if isinstance(value, dict) and value and isinstance(base[key], dict):
            flat.update(flatten(value, base[key], f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def profile_settings(profile: str | Path, base_params: str | Path = "params.yaml") -> dict[str, object]:
    """The profile's dotted keys and values, checked against `base_params` and the params schema."""
    base = read_yaml_mapping(Path(base_params), "params file")
    overrides = read_yaml_mapping(Path(profile), "profile")
    flat = flatten(overrides, base)
    build(Params, deep_merge(base, overrides), "")  # the merged parameters must be valid as a whole
    return flat


def set_arguments(settings: dict[str, object]) -> list[str]:
    """`-S key=value` arguments for `dvc exp run`; values in compact JSON (valid YAML, no spaces)."""
    arguments: list[str] = []
    for key, value in settings.items():
        arguments += ["-S", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    return arguments
