"""Issue 6 mechanics: Captum attributions of MKD's score, their post-processing, per-study normalisation,
the `localize` stage end to end and the cost benchmark. Whether the maps point at a lesion after training
is tested in test_lesion.py; here random teachers are enough (shapes, safety, memory bounds)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from torch import nn

from kdmed.checkpoint import load_checkpoint
from kdmed.config import ATTRIBUTION_METHODS, AttributionConfig
from kdmed.data.slices import load_split
from kdmed.errors import ConfigError
from kdmed.inference import predict_images
from kdmed.localize.stage import lesion_mass_ratio, localize_stage, select_images
from kdmed.metrics.pixel import aupro, pixel_auroc
from kdmed.models.attribution import guided_backprop_copy, raw_attributions
from kdmed.models.mkd import MKD
from kdmed.models.registry import default_config
from kdmed.paths import checkpoint_path
from kdmed.rules import normal_peak, normalize_per_study

SMALL = AttributionConfig(smoothgrad_samples=3, ig_steps=3, internal_batch_size=4)


def mkd(backbone: str) -> MKD:
    torch.manual_seed(0)
    return MKD(default_config("mkd", backbone, weights="random")).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18", "vgg16"])
@pytest.mark.parametrize("method", ATTRIBUTION_METHODS)
def test_every_attribution_gives_one_finite_non_negative_map_per_image(method, backbone, images):
    """ResNet-18 reuses one in-place ReLU module per block, VGG-16 has in-place ReLUs and Lite0 ReLU6s:
    guided backpropagation must work on all three."""
    raw = raw_attributions(mkd(backbone), images, SMALL, method)
    assert raw.shape == (3, 64, 64)
    assert torch.isfinite(raw).all() and (raw >= 0).all() and (raw.flatten(1).amax(1) > 0).all()


def test_saliency_is_the_absolute_input_gradient_of_each_images_own_score(images):
    model = mkd("resnet18")
    x = images.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model.detection_scores(x).sum(), x)
    expected = gradient.abs().sum(1)
    torch.testing.assert_close(raw_attributions(model, images, SMALL, "saliency"), expected)
    alone = raw_attributions(model, images[1:2], SMALL, "saliency")
    torch.testing.assert_close(alone[0], expected[1], rtol=1e-4, atol=1e-7)  # no mixing within a batch


@pytest.mark.parametrize("method", ["integrated_gradients", "guided_backprop"])
def test_deterministic_attributions_do_not_mix_images_of_a_batch(method, images):
    model = mkd("efficientnet_lite0")
    together = raw_attributions(model, images, SMALL, method)
    alone = raw_attributions(model, images[2:3], SMALL, method)
    torch.testing.assert_close(alone[0], together[2], rtol=1e-4, atol=1e-6)


def test_guided_backprop_overrides_relu_gradients_on_a_copy_and_leaves_the_model_untouched(images):
    model = mkd("vgg16")
    before = {name: p.clone() for name, p in model.state_dict().items()}
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(m.inplace for m in model.teacher.modules() if isinstance(m, nn.ReLU))
    guided = raw_attributions(model, images, SMALL, "guided_backprop")
    plain = raw_attributions(model, images, SMALL, "saliency")
    assert not torch.allclose(guided, plain), "guided backpropagation changed no gradient"
    assert all(m.inplace for m in model.teacher.modules() if isinstance(m, nn.ReLU))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    copy = guided_backprop_copy(mkd("efficientnet_lite0"))
    assert not any(type(m) is nn.ReLU6 for m in copy.modules())
    assert not any(m.inplace for m in copy.modules() if isinstance(m, nn.ReLU))


@pytest.mark.parametrize("method", ["smoothgrad", "integrated_gradients"])
def test_internal_batches_bound_the_images_per_forward_pass(method, images, monkeypatch):
    model = mkd("resnet18")
    seen = []
    original = MKD.detection_scores

    def recording(self, x01):
        seen.append(x01.shape[0])
        return original(self, x01)

    monkeypatch.setattr(MKD, "detection_scores", recording)
    config = AttributionConfig(smoothgrad_samples=8, ig_steps=8, internal_batch_size=4)
    raw_attributions(model, images[:2], config, method)
    assert max(seen) <= 4 and sum(seen) >= 16, seen


def test_the_score_captum_attributes_has_one_value_per_image(images):
    model = mkd("resnet18")
    scores = model.detection_scores(images)
    assert scores.shape == (3,)
    Saliency(model.detection_scores).attribute(images.clone().requires_grad_(True))  # Captum accepts (N,)


def test_an_unknown_attribution_is_a_clear_error(images):
    with pytest.raises(ConfigError, match="not one of saliency"):
        raw_attributions(mkd("resnet18"), images, SMALL, "lime")
    with pytest.raises(ConfigError, match="mkd.attribution.method"):
        AttributionConfig(method="lime")


def test_normalisation_is_per_study_so_a_clean_slice_stays_dark():
    maps = np.zeros((4, 8, 8), np.float32)
    maps[0, 2, 2] = 10.0  # study a: lesion slice
    maps[1] += 0.5  # study a: clean slice, faint everywhere
    maps[2] += 0.25  # study b: faint only
    out = normalize_per_study(maps, np.array(["a", "a", "b", "c"]), 0.0)
    assert out[0].max() == 1.0 and out[1].max() == pytest.approx(0.05)
    assert out[2].max() == 1.0  # a study is scaled by its own peak
    assert not out[3].any()  # an all-zero study stays zero, no division by zero
    with pytest.raises(ValueError, match="one id per map"):
        normalize_per_study(maps, np.array(["a"]), 0.0)


def test_the_floor_keeps_a_normal_study_as_dark_as_normal_slices_are():
    normal_reference = np.stack([np.full((8, 8), v, np.float32) for v in (0.1, 0.2, 0.3, 0.4)])
    floor = normal_peak(normal_reference, quantile=1.0)
    assert floor == pytest.approx(0.4) and normal_peak(normal_reference[:0]) == 0.0
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0] += 0.2  # a normal study, as faint as the normals
    maps[1, 3, 3] = 4.0  # a lesion study, far brighter than normals
    out = normalize_per_study(maps, np.array(["normal", "lesion"]), floor)
    assert out[0].max() == pytest.approx(0.5)  # not stretched to 1
    assert out[1].max() == pytest.approx(1.0)  # a bright study still uses its own peak


def test_lesion_mass_ratio_is_one_for_a_uniform_map_and_inverse_area_for_a_perfect_one():
    masks = np.zeros((1, 10, 10), np.uint8)
    masks[0, :2, :5] = 1  # a tenth of the image
    assert lesion_mass_ratio(np.ones((1, 10, 10)), masks) == pytest.approx(1.0)
    assert lesion_mass_ratio(masks.astype(float), masks) == pytest.approx(10.0)


def test_image_selection_is_seeded_and_half_lesion_half_normal(tiny_brain):
    test = load_split(tiny_brain.preprocess.out_dir, "brain", "test")
    chosen = select_images(test, 10, seed=0)
    assert np.array_equal(chosen, select_images(test, 10, seed=0)) and len(chosen) == 10
    assert (test.labels[chosen] == 0).sum() == 5 and test.masks[chosen].reshape(10, -1).any(1).sum() == 5
    assert len(select_images(test, 0, seed=0)) == len(test)
    normals = test.normals()
    with pytest.raises(ConfigError, match="no anomaly with a lesion mask"):
        select_images(normals, 10, seed=0)


@pytest.fixture(scope="module")
def trained_tiny(tiny_brain, tmp_path_factory):
    """The three methods trained for two epochs on the tiny brain set, few SmoothGrad / IG samples."""
    from kdmed.train import train_stage

    root = tmp_path_factory.mktemp("localize")
    mkd_settings = dataclasses.replace(tiny_brain.methods.mkd, attribution=SMALL, batch_size=8)
    params = dataclasses.replace(
        tiny_brain,
        methods=dataclasses.replace(tiny_brain.methods, mkd=mkd_settings),
        train=dataclasses.replace(tiny_brain.train, out_dir=str(root / "models"), epochs=1),
        localize=dataclasses.replace(tiny_brain.localize, out_dir=str(root / "reports"), samples=0),
    )
    for method in ("stpm", "rd4ad", "mkd"):
        train_stage(params, "brain", method)
    return params


@pytest.mark.slow
def test_localize_stage_scores_every_map_on_the_same_images(trained_tiny):
    metrics = localize_stage(trained_tiny, "brain")
    again = localize_stage(trained_tiny, "brain")  # SmoothGrad's noise is seeded: the same numbers
    assert again["maps"]["mkd_smoothgrad"]["pixel_auroc"] == metrics["maps"]["mkd_smoothgrad"]["pixel_auroc"]
    out = trained_tiny.localize.out_dir
    written = json.loads((Path(out) / "brain" / "localize" / "metrics.json").read_text())
    expected = {f"mkd_{m}" for m in ATTRIBUTION_METHODS} | {"mkd_discrepancy", "stpm", "rd4ad"}
    assert set(written["maps"]) == expected == set(metrics["maps"])
    assert written["images"] == 12 and written["settings"]["smoothgrad_samples"] == 3
    assert written["reference_normals"] > 0  # the floor comes from validation normals
    fewer_settings = dataclasses.replace(trained_tiny.localize, samples=2, out_dir=f"{out}-fewer")
    settings = localize_stage(dataclasses.replace(trained_tiny, localize=fewer_settings), "brain")["settings"]
    assert (settings["smoothgrad_samples"], settings["ig_steps"]) == (2, 2)
    stored = load_checkpoint(checkpoint_path(trained_tiny, "brain", "mkd")).detector.config.attribution
    assert stored.smoothgrad_samples == 3  # the comparison's count is not written into the model
    for name, row in written["maps"].items():
        assert row["pixel_images"] == 12 and row["ms_per_slice"] > 0, name
    full = load_split(trained_tiny.preprocess.out_dir, "brain", "test")
    test = full.subset(select_images(full, trained_tiny.localize.max_images, trained_tiny.localize.seed))
    for method in ("stpm", "rd4ad"):  # their maps recomputed through the evaluate stage's path
        checkpoint = load_checkpoint(checkpoint_path(trained_tiny, "brain", method))
        raw = predict_images(checkpoint.detector, test.images, trained_tiny.localize.batch_size).maps
        shown = normalize_per_study(raw, test.patients, checkpoint.serving.calibration.map_floor)
        peak = normalize_per_study(raw, test.patients, 0.0)
        row = written["maps"][method]
        assert row["pixel_auroc_raw"] == pytest.approx(pixel_auroc(raw, test.masks), abs=1e-6), method
        assert row["pixel_auroc"] == pytest.approx(pixel_auroc(shown, test.masks), abs=1e-6), method
        assert row["aupro_0.3"] == pytest.approx(aupro(shown, test.masks, fpr_limit=0.3), abs=1e-6), method
        assert row["pixel_auroc_study_peak"] == pytest.approx(pixel_auroc(peak, test.masks), abs=1e-6)
    panel = Path(out) / "brain" / "localize" / "panel.png"
    from PIL import Image

    pixels = np.asarray(Image.open(panel).convert("L"))
    assert pixels.shape[1] > 600 and pixels.std() > 10  # 9 columns, not blank


@pytest.mark.slow
def test_benchmark_prints_one_json_line_per_method_with_cost(capsys):
    from kdmed.localize.benchmark import main

    main(
        [
            "--methods",
            "saliency",
            "guided_backprop",
            "--backbone",
            "resnet18",
            "--weights",
            "random",
            "--image-size",
            "64",
            "--slices",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["attribution"] for r in rows] == ["saliency", "guided_backprop"]
    for row in rows:
        assert row["ms_per_slice"] > 0 and row["peak_rss_mib"] > 0 and row["batch_size"] == 2
