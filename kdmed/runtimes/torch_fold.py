"""Eager-PyTorch inference, faster: BatchNorm folded into the convolution before it, channels_last.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it can be merged into the
convolution's weights and bias (Jacob et al., CVPR 2018, Sec. 3.2): the same outputs to float rounding,
one pass over the feature map fewer. Pairs are found by running the model once and matching each
BatchNorm's input tensor to the convolution that produced it, so every backbone (EfficientNet-Lite0,
ResNet, Wide-ResNet, the RD4AD decoder) is folded without naming its layers. Only for scoring: a folded
model has no BatchNorm left to train.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "for_inference"]


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor, call) -> list[tuple[str, str]]:
    names = {module: name for name, module in model.named_modules()}
    produced_by: dict[int, nn.Module] = {}
    pairs: list[tuple[str, str]] = []
    hooks = []

    def after_conv(module, _inputs, output):
        produced_by[id(output)] = module

    def before_bn(module, inputs):
        conv = produced_by.get(id(inputs[0]))
        if conv is not None and conv.out_channels == module.num_features:
            pairs.append((names[conv], names[module]))

    for module in model.modules():
        if isinstance(module, nn.Conv2d):  # SameConv2d (Lite0) too: its forward uses weight and bias
            hooks.append(module.register_forward_hook(after_conv))
        elif type(module) is nn.BatchNorm2d:
            hooks.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.no_grad():
            call(model, example)
    finally:
        for hook in hooks:
            hook.remove()
    return pairs


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def fold_batchnorm(model: nn.Module, example: torch.Tensor, call=None) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it, in place; returns how many
    were folded. `call(model, example)` runs the model (default: `model.predict(example)`)."""
    model.eval()
    call = call or (lambda m, x: m.predict(x))
    pairs = _conv_bn_pairs(model, example, call)
    uses: dict[str, int] = {}
    for conv_name, _ in pairs:
        uses[conv_name] = uses.get(conv_name, 0) + 1
    folded = 0
    for conv_name, bn_name in dict.fromkeys(pairs):
        if uses[conv_name] != 1:  # a convolution feeding two BatchNorms keeps both
            continue
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _set(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _set(model, bn_name, nn.Identity())
        folded += 1
    return folded


def for_inference(detector: nn.Module, image_size: int) -> nn.Module:
    """A folded, channels_last copy of `detector` for scoring (the original is left as it is)."""
    fast = copy.deepcopy(detector).eval()
    fold_batchnorm(fast, torch.rand(2, 3, image_size, image_size))
    return fast.to(memory_format=torch.channels_last)
