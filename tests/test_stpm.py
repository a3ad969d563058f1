"""STPM contract: shapes, a frozen teacher, gradients only to the student, the official loss scale."""

from __future__ import annotations

import pytest
import torch

from kdmed.config import OptimizerConfig, StpmConfig
from kdmed.models.stpm import STPM, stpm_loss
from kdmed.train import make_optimizer

BACKBONES = ["resnet18", "efficientnet_lite0", "wide_resnet50_2", "vgg16"]


def tiny_stpm(backbone: str) -> STPM:
    torch.manual_seed(0)
    return STPM(StpmConfig(backbone=backbone, weights="random"))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_map_shape_equals_input_and_teacher_frozen_after_a_step(backbone):
    model = tiny_stpm(backbone)
    x = torch.rand(2, 3, 64, 96)
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    model.train()
    optimizer = make_optimizer(
        model.trainable_parameters(), OptimizerConfig(name="sgd", lr=0.4, momentum=0.9)
    )
    loss = model.loss(x)
    loss.backward()
    # gradients reach the student only
    assert all(p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.parameters())
    optimizer.step()
    assert not model.teacher.training, "the teacher must stay in eval mode while the model trains"
    for name, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), f"teacher tensor {name} changed"
    model.eval()
    prediction = model.predict(x)
    assert prediction.maps.shape == (2, 64, 96)
    assert prediction.scores.shape == (2,)
    assert torch.allclose(prediction.scores, prediction.maps.flatten(1).amax(1))


def test_loss_is_zero_when_student_equals_teacher():
    model = tiny_stpm("resnet18")
    model.student.load_state_dict(model.teacher.state_dict())
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    assert model.loss(x).item() == pytest.approx(0.0, abs=1e-6)
    assert model.predict(x).maps.abs().max().item() == pytest.approx(0.0, abs=1e-6)


def test_official_loss_scale_and_anomalib_variant():
    torch.manual_seed(1)
    teacher = {"a": torch.randn(4, 8, 5, 5), "b": torch.randn(4, 16, 3, 3)}
    student = {"a": torch.randn(4, 8, 5, 5), "b": torch.randn(4, 16, 3, 3)}
    expected = 0.0
    for name in teacher:
        t = torch.nn.functional.normalize(teacher[name], dim=1)
        s = torch.nn.functional.normalize(student[name], dim=1)
        expected += ((t - s) ** 2).sum(1).mean().item()  # mean over batch and positions
    official = stpm_loss(teacher, student, "official").item()
    assert official == pytest.approx(expected, rel=1e-5)
    assert stpm_loss(teacher, student, "anomalib").item() == pytest.approx(official * 0.5 * 4, rel=1e-5)


def test_paper_configuration_taps_resnet18_layer1_to_3():
    model = STPM(StpmConfig(weights="random"))  # the defaults are the paper's: resnet18, strides 4/8/16
    assert model.teacher.layers == ("layer1", "layer2", "layer3")
    assert model.teacher.channels == (64, 128, 256)
    assert "layer4" not in dict(model.teacher.stages.named_children())
