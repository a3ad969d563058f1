"""params.yaml, loaded into frozen dataclasses: one section per stage plus shared settings.

Every hyper-parameter lives in params.yaml; the defaults are the papers' settings where a paper gives one.
`load_params` rejects unknown keys, wrong types and impossible values with a `ConfigError` that names the
dotted key (see `kdmed.config_schema`). The sections live in `kdmed.config_sections` (stages) and
`kdmed.config_methods` (methods); every name stays importable from here. The config layer imports no
other kdmed layer but `kdmed.augment`'s list of names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdmed.config_methods import (
    ATTRIBUTION_METHODS,
    AttributionConfig,
    MethodsConfig,
    MkdConfig,
    OptimizerConfig,
    Rd4adConfig,
    StpmConfig,
)
from kdmed.config_schema import build, require, to_plain
from kdmed.config_sections import (
    CommonConfig,
    DatasetConfig,
    DemoDataConfig,
    EvaluateConfig,
    LocalizeConfig,
    PipelineConfig,
    PreprocessConfig,
    SplitConfig,
    TrainConfig,
    TransferConfig,
)
from kdmed.errors import ConfigError

__all__ = [
    "ATTRIBUTION_METHODS",
    "AttributionConfig",
    "CommonConfig",
    "DatasetConfig",
    "DemoDataConfig",
    "EvaluateConfig",
    "LocalizeConfig",
    "MethodsConfig",
    "MkdConfig",
    "OptimizerConfig",
    "Params",
    "PipelineConfig",
    "PreprocessConfig",
    "Rd4adConfig",
    "SplitConfig",
    "StpmConfig",
    "TrainConfig",
    "TransferConfig",
    "deep_merge",
    "load_params",
]


@dataclass(frozen=True)
class Params:
    common: CommonConfig
    demo_data: DemoDataConfig
    datasets: dict[str, DatasetConfig]
    preprocess: PreprocessConfig
    methods: MethodsConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    pipeline: PipelineConfig
    # per dataset, per method: settings merged over `methods.<method>` for that dataset only
    method_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    transfers: dict[str, TransferConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.pipeline.datasets:
            require(name in self.datasets, "pipeline.datasets", name, f"one of {sorted(self.datasets)}")
        for name in self.pipeline.methods:
            require(name in self.method_names(), "pipeline.methods", name, f"one of {self.method_names()}")
        for name, dataset in self.datasets.items():
            if dataset.test_from:
                require(
                    dataset.test_from in self.datasets and dataset.test_from != name,
                    f"datasets.{name}.test_from",
                    dataset.test_from,
                    f"another dataset, one of {sorted(set(self.datasets) - {name})}",
                )
        for name, transfer in self.transfers.items():
            for key in ("model", "test"):
                require(
                    getattr(transfer, key) in self.datasets,
                    f"transfers.{name}.{key}",
                    getattr(transfer, key),
                    f"one of {sorted(self.datasets)}",
                )
            require(
                transfer.model != transfer.test,
                f"transfers.{name}.test",
                transfer.test,
                "another dataset than the model's (that is the plain evaluate stage)",
            )
            require(
                transfer.method in self.method_names(),
                f"transfers.{name}.method",
                transfer.method,
                f"one of {self.method_names()}",
            )
        reports = set(self.datasets) | {t.report for t in self.transfers.values()}
        for name in self.pipeline.ensembles:
            require(name in reports, "pipeline.ensembles", name, f"one of {sorted(reports)}")
        for name in self.localize.datasets:
            require(name in self.datasets, "localize.datasets", name, f"one of {sorted(self.datasets)}")
        for dataset, methods in self.method_overrides.items():
            require(dataset in self.datasets, "method_overrides", dataset, f"one of {sorted(self.datasets)}")
            for method in methods:
                require(
                    method in self.method_names(),
                    f"method_overrides.{dataset}",
                    method,
                    f"one of {self.method_names()}",
                )
                self.method(method, dataset)  # validates the merged settings now, naming the key

    @staticmethod
    def method_names() -> list[str]:
        return [f.name for f in dataclasses.fields(MethodsConfig)]

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            raise ConfigError(
                f"params: no dataset '{name}' under 'datasets'; defined: {sorted(self.datasets)}."
            )
        return self.datasets[name]

    def image_size(self, dataset: str) -> int:
        """The input size of `dataset`'s images: `datasets.<dataset>.image_size`, else common.image_size."""
        return self.dataset(dataset).image_size or self.common.image_size

    def train_steps(self, dataset: str) -> int:
        """Optimiser steps on `dataset`: `datasets.<dataset>.train_steps`, else train.steps (0 = epochs)."""
        return self.dataset(dataset).train_steps or self.train.steps

    def method(self, name: str, dataset: str | None = None) -> Any:
        """The settings of method `name`, with `datasets.<dataset>.method_overrides.<name>` applied."""
        if name not in self.method_names():
            raise ConfigError(f"params: unknown method '{name}'; available: {self.method_names()}.")
        base = getattr(self.methods, name)
        overrides = self.method_overrides.get(dataset, {}).get(name) if dataset is not None else None
        if not overrides:
            return base
        merged = deep_merge(to_plain(base), to_plain(overrides))
        return build(type(base), merged, f"method_overrides.{dataset}.{name}")


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def read_yaml_mapping(path: str | Path, what: str = "params file") -> dict:
    """A YAML file that holds a mapping (params.yaml, a profile); missing or malformed is a `ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist; run from the repository root or pass --params.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} '{path}' must hold a mapping of params.yaml sections, not {type(data).__name__}."
        )
    return data


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    return build(Params, read_yaml_mapping(path), "")
