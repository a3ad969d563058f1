"""One contract for STPM, RD4AD and MKD with every backbone: the map has the input's shape, the score is one
value per image, a training step moves only the student, the teacher stays frozen in eval mode, and a
checkpoint's architecture record rebuilds the same network."""

from __future__ import annotations

import pytest
import torch

from kdmed.models.registry import METHOD_NAMES, build_detector, default_config, rebuild_detector
from kdmed.train import make_optimizer

BACKBONES = ["resnet18", "efficientnet_lite0", "wide_resnet50_2", "vgg16"]
METHODS = list(METHOD_NAMES)


def random_config(method: str, backbone: str):
    """Random-init teachers (tests are offline); Lite0's MKD taps one layer per stride up to 32."""
    return default_config(method, backbone, weights="random")


def detector(method: str, backbone: str):
    torch.manual_seed(0)
    return build_detector(method, random_config(method, backbone))


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", METHODS)
def test_one_training_step_moves_only_the_student_and_maps_match_the_input(method, backbone):
    model = detector(method, backbone)
    x = torch.rand(2, 3, 64, 96)
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in model.student.state_dict().items()}
    model.train()
    assert not model.teacher.training, "the teacher must stay in eval mode while the model trains"
    optimizer = make_optimizer(model.trainable_parameters(), random_config(method, backbone).optimizer)
    loss = model.loss(x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters()), "a gradient reached the teacher"
    assert all(not p.requires_grad for p in model.teacher.parameters())
    trainable = list(model.trainable_parameters())
    assert trainable and {id(p) for p in trainable} == {id(p) for p in model.student.parameters()}
    with_gradient = [p for p in model.student.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_gradient) > 0.9 * len(trainable), "most student parameters should receive a gradient"
    optimizer.step()
    for name, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), f"teacher tensor {name} changed"
    moved = [k for k, v in model.student.state_dict().items() if not torch.equal(v, student_before[k])]
    assert moved, "the optimiser step left the student unchanged"

    for mode in (False, True):  # the same call and return type in eval and train mode
        model.train(mode)
        prediction = model.predict(x)
        assert prediction.maps.shape == (2, 64, 96)
        assert prediction.scores.shape == (2,)
        assert torch.isfinite(prediction.maps).all() and torch.isfinite(prediction.scores).all()
        teacher, student = model.features(x)
        assert list(teacher) == list(student) == list(model.teacher.layers)
        for name in teacher:
            assert teacher[name].shape == student[name].shape, name
    assert model.selection_scores(x).shape == (2,)


@pytest.mark.parametrize("method", METHODS)
def test_architecture_record_rebuilds_the_same_network(method):
    model = detector(method, "efficientnet_lite0")
    rebuilt = rebuild_detector(method, model.architecture)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 64, 64)
    model.eval(), rebuilt.eval()
    assert torch.allclose(model.predict(x).maps, rebuilt.predict(x).maps, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_cached_teacher_features_give_the_same_loss(method):
    model = detector(method, "resnet18")
    model.eval()  # fixed BatchNorm statistics, so both calls see the same network
    x = torch.rand(3, 3, 64, 64)
    direct = model.loss(x)
    cached = model.loss(x, model.teacher_features(x))
    assert torch.allclose(direct, cached, atol=1e-6)
