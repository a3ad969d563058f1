"""The one batching loop (`kdmed.inference.batched`): every image once, in order, whatever the batch size;
no autograd unless asked; the module's own mode restored after `eval_mode`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kdmed.inference import batched, eval_mode, predict_images
from kdmed.models.registry import build_detector, default_config


def test_batched_sees_every_image_once_in_order_as_model_input():
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 2, 2).contiguous()
    seen = batched(lambda b: b[:, 0, 0, 0].clone(), images, 2, torch.device("cpu"))
    assert [len(b) for b in seen] == [2, 2, 1]
    assert torch.equal(torch.cat(seen), torch.arange(5) / 255.0)  # uint8 -> [0, 1], grey -> 3 channels
    assert batched(lambda b: b.shape[1], images, 5, torch.device("cpu")) == [3]


def test_batched_builds_no_graph_unless_asked():
    layer = nn.Linear(3, 1)
    images = torch.rand(4, 3, 1, 1)

    def fn(batch):
        return layer(batch.flatten(1))

    assert all(out.grad_fn is None for out in batched(fn, images, 2, torch.device("cpu")))
    assert all(out.grad_fn is not None for out in batched(fn, images, 2, torch.device("cpu"), grad=True))


def test_eval_mode_restores_the_callers_mode_even_after_an_error():
    module = nn.BatchNorm2d(3).train()
    try:
        with eval_mode(module):
            assert not module.training
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert module.training


def test_predict_images_does_not_depend_on_the_batch_size():
    torch.manual_seed(0)
    detector = build_detector("stpm", default_config("stpm", "resnet18", weights="random")).train()
    images = torch.randint(0, 256, (5, 1, 32, 32), dtype=torch.uint8)
    one, three = predict_images(detector, images, 1), predict_images(detector, images, 3)
    assert detector.training  # restored
    np.testing.assert_allclose(one.scores, three.scores, rtol=1e-5)
    np.testing.assert_allclose(one.maps, three.maps, rtol=1e-4, atol=1e-6)
    assert one.maps.shape == (5, 32, 32) and one.maps.dtype == np.float32
