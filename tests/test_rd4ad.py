"""RD4AD: the paper's sizes with Wide-ResNet-50-2, the official flattened-cosine loss, the summed and
blurred map, and the same design sized from any teacher's declared channels and strides."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from kdmed.config import Rd4adConfig
from kdmed.errors import ConfigError, KdmedError
from kdmed.models.rd4ad import RD4AD, rd_loss, rd_map


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def paper_model() -> RD4AD:
    torch.manual_seed(0)
    return RD4AD(Rd4adConfig(weights="random"))  # defaults: the official Wide-ResNet-50-2 design


def test_paper_configuration_has_the_published_sizes(paper_model):
    assert paper_model.teacher.layers == ("layer1", "layer2", "layer3")
    assert paper_model.teacher.channels == (256, 512, 1024)
    bottleneck, decoder = paper_model.student.bottleneck, paper_model.student.decoder
    assert count(bottleneck.embedding) == pytest.approx(48.3e6, rel=0.005)
    assert count(bottleneck.fusion) == pytest.approx(10.6e6, rel=0.005)
    assert count(decoder) == pytest.approx(24.9e6, rel=0.005)
    assert [len(stage) for stage in decoder.stages] == [3, 4, 6]
    assert len(bottleneck.embedding) == 3
    first = bottleneck.embedding[0]
    assert first.conv2.in_channels == 1024 and first.conv3.out_channels == 2048  # width_per_group 128
    assert first.downsample[0].in_channels == 3072 and first.downsample[0].stride == (2, 2)
    assert isinstance(decoder.stages[0][0].conv2, torch.nn.ConvTranspose2d)
    assert decoder.stages[0][0].conv2.kernel_size == (2, 2)
    # bias-free fusion convolutions with Kaiming fan-out init (std sqrt(2 / fan_out))
    conv = bottleneck.fusion[0][0]
    assert conv.bias is None
    assert conv.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.05)


def test_paper_configuration_embeds_to_twice_the_channels_at_half_the_resolution(paper_model):
    paper_model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        teacher = paper_model.teacher_features(x)
        embedding = paper_model.student.bottleneck([teacher[n] for n in paper_model.teacher.layers])
        _, student = paper_model.features(x)
    assert embedding.shape == (1, 2048, 2, 2)  # 2048 x 8 x 8 for a 256 input
    for name in teacher:
        assert student[name].shape == teacher[name].shape


def test_resnet18_gets_the_official_basic_block_design():
    model = RD4AD(Rd4adConfig(backbone="resnet18", weights="random"))
    assert model.architecture["block"] == "basic"
    assert [len(stage) for stage in model.student.decoder.stages] == [2, 2, 2]
    assert len(model.student.bottleneck.embedding) == 2
    assert model.student.bottleneck.out_channels == 512


def test_offline_teacher_sizes_the_student_from_its_declared_channels():
    model = RD4AD(Rd4adConfig(backbone="efficientnet_lite0", weights="random"))
    channels = model.teacher.channels  # stage2, stage3, stage5 of EfficientNet-Lite0
    assert channels == (24, 40, 112)
    assert model.student.bottleneck.out_channels == 224
    outs = [stage[-1].bn2.num_features for stage in model.student.decoder.stages]
    assert outs == [112, 40, 24]


def test_flattened_cosine_loss_against_a_hand_computation():
    torch.manual_seed(0)
    teacher = {"a": torch.randn(3, 4, 5, 5), "b": torch.randn(3, 8, 2, 2)}
    student = {"a": torch.randn(3, 4, 5, 5), "b": torch.randn(3, 8, 2, 2)}
    expected = 0.0
    for name in teacher:
        t, s = teacher[name].reshape(3, -1).numpy(), student[name].reshape(3, -1).numpy()
        cos = (t * s).sum(1) / np.linalg.norm(t, axis=1) / np.linalg.norm(s, axis=1)
        expected += float(np.mean(1 - cos))
    assert rd_loss(teacher, student).item() == pytest.approx(expected, rel=1e-5)
    per_position = rd_loss(teacher, student, "per_position").item()
    manual = sum((1 - F.cosine_similarity(teacher[n], student[n], dim=1)).mean().item() for n in teacher)
    assert per_position == pytest.approx(manual, rel=1e-5)
    assert per_position != pytest.approx(expected, rel=1e-3)  # the two forms really differ


def test_map_is_the_blurred_sum_of_upsampled_cosine_distances():
    torch.manual_seed(1)
    teacher = {"a": torch.randn(2, 4, 8, 8), "b": torch.randn(2, 6, 4, 4)}
    student = {"a": torch.randn(2, 4, 8, 8), "b": torch.randn(2, 6, 4, 4)}
    maps = rd_map(teacher, student, (32, 32), "sum", 4.0).numpy()
    total = 0
    for name in teacher:
        d = 1 - F.cosine_similarity(teacher[name], student[name], dim=1)[:, None]
        total = total + F.interpolate(d, size=(32, 32), mode="bilinear", align_corners=True)[:, 0]
    expected = np.stack([ndi.gaussian_filter(m, sigma=4) for m in total.numpy()])
    assert np.allclose(maps, expected, atol=1e-5)
    assert np.allclose(rd_map(teacher, teacher, (32, 32), "sum", 4.0).numpy(), 0, atol=1e-5)


def test_input_sizes_that_the_decoder_cannot_mirror_are_a_clear_error():
    model = RD4AD(Rd4adConfig(backbone="resnet18", weights="random"))
    with pytest.raises(ValueError, match="multiples of 32") as info:
        model.predict(torch.rand(1, 3, 48, 64))
    assert isinstance(info.value, KdmedError)  # the CLI and the app report it as one line, not a traceback


def test_mismatched_decoder_blocks_are_a_config_error():
    with pytest.raises(ConfigError, match="decoder_blocks"):
        RD4AD(Rd4adConfig(backbone="resnet18", weights="random", decoder_blocks=(2, 2)))
