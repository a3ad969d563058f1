"""params.yaml validation: unknown keys, wrong types and impossible values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdmed.config import load_params
from kdmed.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_repository_params_load():
    params = load_params(REPO / "params.yaml")
    assert params.common.image_size % 32 == 0
    assert set(params.pipeline.datasets) <= set(params.datasets)
    assert params.methods.stpm.optimizer.name == "sgd"
    assert params.pipeline.methods == ("stpm", "rd4ad", "mkd")


def test_code_defaults_are_the_official_stpm_settings():
    from kdmed.config import StpmConfig

    config = StpmConfig()
    assert (config.backbone, config.batch_size, config.optimizer.lr) == ("resnet18", 32, pytest.approx(0.4))
    assert (config.optimizer.momentum, config.optimizer.weight_decay) == (0.9, pytest.approx(1e-4))


def test_code_defaults_are_the_official_rd4ad_and_mkd_settings():
    from kdmed.config import MkdConfig, Rd4adConfig

    rd = Rd4adConfig()
    assert (rd.backbone, rd.strides, rd.batch_size, rd.loss, rd.blur_sigma) == (
        "wide_resnet50_2",
        (4, 8, 16),
        16,
        "flattened",
        4.0,
    )
    assert (rd.optimizer.name, rd.optimizer.lr, rd.optimizer.betas) == (
        "adam",
        pytest.approx(0.005),
        (0.5, 0.999),
    )
    mkd = MkdConfig()
    assert (mkd.backbone, mkd.strides, mkd.scoring_layers, mkd.mse_weight, mkd.lambda_on) == (
        "vgg16",
        (4, 8, 16, 32),
        3,
        pytest.approx(0.01),
        "mse",
    )
    assert (mkd.optimizer.name, mkd.optimizer.lr, mkd.batch_size, mkd.input_normalization) == (
        "adam",
        pytest.approx(1e-3),
        64,
        "none",
    )


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d["methods"]["rd4ad"].update(strides=[4, 6]), "rd4ad.strides"),
        (lambda d: d["methods"]["mkd"].update(scoring_layers=7), "mkd.scoring_layers"),
        (lambda d: d["methods"]["mkd"].update(lambda_on="both"), "methods.mkd.lambda_on"),
        (lambda d: d["train"].update(checkpoint="best"), "train.checkpoint"),
    ],
)
def test_impossible_method_settings_are_named(tmp_path, mutate, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(write_params(tmp_path, mutate))


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d["train"].update(epochz=3), "train.epochz"),
        (lambda d: d["datasets"]["brain"].update(colour="red"), "datasets.brain.colour"),
        (
            lambda d: d["methods"]["stpm"]["optimizer"].update(mommentum=0.9),
            "methods.stpm.optimizer.mommentum",
        ),
    ],
)
def test_unknown_key_is_named(tmp_path, mutate, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(write_params(tmp_path, mutate))


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d["train"].update(epochs="ten"), "train.epochs"),
        (lambda d: d["common"].update(amp="yes"), "common.amp"),
        (lambda d: d["methods"]["stpm"].update(batch_size=3.5), "methods.stpm.batch_size"),
        (lambda d: d["datasets"]["oct"].update(adapter="dropbox"), "datasets.oct.adapter"),
        (lambda d: d["datasets"]["brain"].update(slice_range=[10]), "datasets.brain.slice_range"),
    ],
)
def test_wrong_type_is_named(tmp_path, mutate, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(write_params(tmp_path, mutate))


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d["common"].update(image_size=100), "common.image_size"),
        (lambda d: d["train"].update(epochs=0), "train.epochs"),
        (lambda d: d["methods"]["stpm"]["optimizer"].update(lr=-1.0), "optimizer.lr"),
        (lambda d: d["datasets"]["wbc"]["split"].update(train=0.9), "split"),
        (lambda d: d["pipeline"].update(datasets=["brain", "lungs"]), "pipeline.datasets"),
        (lambda d: d["pipeline"].update(methods=["patchcore"]), "pipeline.methods"),
    ],
)
def test_impossible_value_is_named(tmp_path, mutate, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_params(write_params(tmp_path, mutate))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("common: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_params_are_frozen():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(AttributeError):
        params.train.epochs = 5  # type: ignore[misc]


def test_method_overrides_apply_to_one_dataset_only(tmp_path):
    def mutate(d):
        d["method_overrides"]["brain"] = {"rd4ad": {"backbone": "resnet18", "optimizer": {"lr": 0.001}}}

    params = load_params(write_params(tmp_path, mutate))
    brain, oct_ = params.method("rd4ad", "brain"), params.method("rd4ad", "oct")
    assert (brain.backbone, brain.optimizer.lr) == ("resnet18", pytest.approx(0.001))
    assert brain.optimizer.betas == oct_.optimizer.betas  # the rest of the nested section is kept
    assert (oct_.backbone, oct_.optimizer.lr) == ("efficientnet_lite0", pytest.approx(0.005))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"brain": {"rd4ad": {"backbon": "resnet18"}}}, r"method_overrides\.brain\.rd4ad\.backbon"),
        ({"brain": {"rd5ad": {}}}, r"method_overrides\.brain"),
        ({"lungs": {}}, "method_overrides"),
    ],
)
def test_bad_method_overrides_are_named(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_params(write_params(tmp_path, lambda d: d.update(method_overrides=overrides)))


def test_the_real_profile_loads_and_a_test_split_source_must_exist(tmp_path):
    real = load_params(REPO / "real" / "params.yaml")
    assert real.dataset("brats").calibration_rule == "sensitivity"
    assert real.dataset("ixi_t1").test_from == "brats2018_t1" and real.preprocess.normalization == "robust"
    data = yaml.safe_load((REPO / "real" / "params.yaml").read_text())
    data["datasets"]["ixi_t1"]["test_from"] = "no_such_dataset"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"datasets.ixi_t1.test_from.*no_such_dataset"):
        load_params(path)


def test_the_demo_section_is_checked_against_the_generators_spec(tmp_path):
    """The config layer keeps `demo_data` as plain settings (it imports no data module); turning them into
    the generator's spec names a bad key or value with its full dotted path, and keeps the values."""
    from kdmed.data.demo_params import demo_spec

    params = load_params(REPO / "params.yaml")
    spec = demo_spec(params.demo_data)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["demo_data"]
    assert spec.seed == raw["seed"] and spec.wbc.size == raw["wbc"]["size"]
    assert list(spec.brain.shape) == raw["brain"]["shape"]
    unknown = load_params(write_params(tmp_path, lambda d: d["demo_data"]["oct"].update(colour=1)))
    with pytest.raises(ConfigError, match=r"demo_data\.oct\.colour"):
        demo_spec(unknown.demo_data)
    wrong = load_params(write_params(tmp_path, lambda d: d["demo_data"]["brain"].update(normal_cases="x")))
    with pytest.raises(ConfigError, match=r"demo_data\.brain\.normal_cases"):
        demo_spec(wrong.demo_data)


def test_a_dataset_can_set_its_own_image_size_and_training_length(tmp_path):
    def mutate(d):
        d["common"]["image_size"], d["train"]["steps"] = 64, 300
        d["datasets"]["wbc"]["image_size"], d["datasets"]["wbc"]["train_steps"] = 128, 500

    params = load_params(write_params(tmp_path, mutate))
    assert (params.image_size("wbc"), params.train_steps("wbc")) == (128, 500)
    assert (params.image_size("brain"), params.train_steps("brain")) == (64, 300)


@pytest.mark.parametrize(("key", "value"), [("image_size", 100), ("image_size", 16), ("train_steps", -1)])
def test_impossible_dataset_size_or_length_is_named(tmp_path, key, value):
    def mutate(d):
        d["datasets"]["wbc"][key] = value

    with pytest.raises(ConfigError, match=key):
        load_params(write_params(tmp_path, mutate))
