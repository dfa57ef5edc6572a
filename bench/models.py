"""Architectures, registered by name, all wrapped in one :class:`Classifier` shape.

One idea over 300 lines: the architecture registry and its seven short entries (one function
each, as in timm), which belong together.

Every model the harness builds is ``Classifier(normalize, body, head)``:

* ``normalize`` — the first layer: ``(x - mean) / std`` per channel, so images enter every
  model as float tensors in [0, 1] and methods that perturb images work in that one space;
* ``body`` — the feature extractor g: image → flat feature vector (post-ReLU where the
  architecture has one before its classifier);
* ``head`` — the classifier h: features → logits.

:func:`feature_head` is the one documented way for a method to get g and h of any model; no
method slices ``children()`` per model family. Each architecture also declares which parameters
are *eligible* for Scissorhands' trimming (:func:`eligible_parameters`), recorded in its rows.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from bench.lookup import Registry


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; x in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``head(body(normalize(x)))``; see the module docstring."""

    def __init__(self, normalize: Normalize, body: nn.Module, head: nn.Module, arch: str) -> None:
        super().__init__()
        self.normalize = normalize
        self.body = body
        self.head = head
        self.arch = arch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def feature_head(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module]:
    """The feature extractor g (images in [0, 1] → features) and the head h of ``model``.

    ``h(g(x))`` equals ``model(x)``. Works for every architecture the harness builds.
    """
    if not isinstance(model, Classifier):
        raise TypeError(
            f"expected a bench.models.Classifier, got {type(model).__name__}; build models with "
            "bench.models.build_model so that the feature extractor and head are known"
        )
    return model.features, model.head


@dataclass(frozen=True)
class ArchSpec:
    """``build(in_channels, image_size, num_classes) -> (body, head)``; ``eligible`` is the
    Scissorhands rule: the module-name prefixes whose conv/linear parameters may be trimmed."""

    name: str
    build: Callable[[int, int, int], tuple[nn.Module, nn.Module]]
    description: str
    eligible: tuple[str, ...]
    eligible_rule: str


ARCHS: Registry[ArchSpec] = Registry("architecture")


def register_arch(name: str, description: str, eligible: tuple[str, ...], eligible_rule: str):
    def wrap(fn: Callable[[int, int, int], tuple[nn.Module, nn.Module]]):
        ARCHS.register(name, ArchSpec(name, fn, description, eligible, eligible_rule))
        return fn

    return wrap


def build_model(
    arch: str,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    seed: int,
) -> Classifier:
    """Build ``arch`` with initial weights fixed by ``seed`` (same seed → same weights)."""
    spec = ARCHS.get(arch)
    devices = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        body, head = spec.build(in_channels, image_size, num_classes)
    return Classifier(Normalize(mean, std), body, head, arch)


def eligible_parameters(model: Classifier) -> list[str]:
    """Names of the parameters Scissorhands may trim: weights and biases of conv and linear
    layers under the architecture's eligible prefixes (batch-norm never)."""
    spec = ARCHS.get(model.arch)
    names = []
    for mod_name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if not any(mod_name == p or mod_name.startswith(p + ".") for p in spec.eligible):
            continue
        names.extend(f"{mod_name}.{p}" for p, _ in module.named_parameters(recurse=False))
    return names


def state_hash(model: nn.Module) -> str:
    """sha256 (16 hex) of a model's parameters and buffers, by name: the row's model hash."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------


@register_arch(
    "digits_cnn",
    "two 3x3 conv layers (16, 32 channels), max-pool, 64-unit ReLU layer, linear head; for 8x8 inputs",
    eligible=("body", "head"),
    eligible_rule="all conv and linear layers",
)
def digits_cnn(in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    side = image_size // 2
    body = nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * side * side, 64), nn.ReLU(),
    )
    return body, nn.Linear(64, num_classes)


def _check_side(arch: str, image_size: int, minimum: int) -> None:
    if image_size < minimum:
        raise ValueError(f"{arch} needs images of at least {minimum}x{minimum} pixels, got {image_size}; "
                         f"pick a larger image_size or another architecture")


@register_arch(
    "lenet",
    "LeNet-style CNN for 28x28 grayscale: 5x5 conv 16, ReLU, max-pool 2, 5x5 conv 32, ReLU, "
    "max-pool 2, 128-unit ReLU layer, linear head (valid convolutions, ~0.1 M parameters)",
    eligible=("body", "head"),
    eligible_rule="all conv and linear layers",
)
def lenet(in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """LeNet-5's layout (two valid 5x5 convolutions, each followed by 2x2 max-pooling, then a
    fully connected layer) with 16/32 filters and 128 hidden units, sized to train on two CPU
    cores: on 28x28 inputs the maps are 24 → 12 → 8 → 4, so the flat vector has 32·4·4 = 512
    entries. Features are the 128 post-ReLU activations."""
    _check_side("lenet", image_size, 16)
    side = ((image_size - 4) // 2 - 4) // 2
    body = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, 16, 5), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(16, 32, 5), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc=nn.Linear(32 * side * side, 128), relu3=nn.ReLU(),
        )
    )
    return body, nn.Linear(128, num_classes)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """``ReLU(BN(conv(x)))`` with 'same' padding ``(kernel - 1) // 2`` and no conv bias (BN has one)."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
            bn=nn.BatchNorm2d(cout),
            relu=nn.ReLU(),
        )
    )


@register_arch(
    "allcnn",
    "All-CNN-C (Springenberg et al. 2015) with batch norm, as in the unlearning literature "
    "(Golatkar et al.; Tarun et al.'s UNSIR): 3x3 convs 96-96-192(s2)-192-192-192(s2)-192, "
    "1x1 conv 192, global average pool, linear head",
    eligible=("body.stage3", "head"),
    eligible_rule="the last conv block (3x3 conv 192 and 1x1 conv 192 after the second "
    "downsampling) and the head",
)
def allcnn(in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """All-CNN-C in the form the unlearning codes use (Golatkar et al.'s Fisher forgetting code,
    reused by UNSIR "Fast Yet Effective Machine Unlearning"): every conv is conv → BN → ReLU, the
    stride-2 convs replace max-pooling, no dropout, and the classifier is a 192 → classes linear
    layer after global average pooling. Two differences from Springenberg et al.'s All-CNN-C, both
    taken from that code: the first stride-2 conv already widens to 192 filters (the paper keeps
    96), and the paper's final 1x1 conv to ``classes`` channels + average pool becomes average
    pool + linear layer. One difference from that code: its ``AvgPool2d(8)`` is written as
    ``AdaptiveAvgPool2d(1)`` — identical on 32x32 inputs, and also valid on 28x28 ones.
    Named stages: ``stage1`` (full resolution, ends with the stride-2 conv), ``stage2`` (half
    resolution, ends with the stride-2 conv), ``stage3`` (3x3 conv and 1x1 conv, 192 filters)."""
    _check_side("allcnn", image_size, 4)
    c1, c2 = 96, 192
    body = nn.Sequential(
        OrderedDict(
            stage1=nn.Sequential(
                _conv_bn_relu(in_channels, c1, 3), _conv_bn_relu(c1, c1, 3), _conv_bn_relu(c1, c2, 3, stride=2)
            ),
            stage2=nn.Sequential(
                _conv_bn_relu(c2, c2, 3), _conv_bn_relu(c2, c2, 3), _conv_bn_relu(c2, c2, 3, stride=2)
            ),
            stage3=nn.Sequential(_conv_bn_relu(c2, c2, 3), _conv_bn_relu(c2, c2, 1)),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    return body, nn.Linear(c2, num_classes)


class Residual(nn.Module):
    """``x + f(x)`` (no activation after the sum, as in the DAWNBench ResNet-9)."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


@register_arch(
    "resnet9",
    "DAWNBench ResNet-9 (Page, Myrtle.ai): prep conv 64; layer1 conv 128 + max-pool + residual "
    "(2 convs 128); layer2 conv 256 + max-pool; layer3 conv 512 + max-pool + residual (2 convs "
    "512); global max-pool; linear head",
    eligible=("body.layer3", "head"),
    eligible_rule="layer3 (conv 512 and its residual block) and the head",
)
def resnet9(in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """DAWNBench ResNet-9: every conv is 3x3 conv (no bias) → BN → ReLU; on 32x32 inputs the maps
    are 32 → 16 → 8 → 4, then a global max-pool gives 512 features. Difference from the original:
    its head is ``0.125 · W x`` (a bias-free linear layer scaled by 1/8, tuned to its SGD
    recipe); ours is a plain ``nn.Linear`` with bias, so every recipe trains it as usual."""
    _check_side("resnet9", image_size, 8)
    body = nn.Sequential(
        OrderedDict(
            prep=_conv_bn_relu(in_channels, 64, 3),
            layer1=nn.Sequential(
                _conv_bn_relu(64, 128, 3), nn.MaxPool2d(2),
                Residual(nn.Sequential(_conv_bn_relu(128, 128, 3), _conv_bn_relu(128, 128, 3))),
            ),
            layer2=nn.Sequential(_conv_bn_relu(128, 256, 3), nn.MaxPool2d(2)),
            layer3=nn.Sequential(
                _conv_bn_relu(256, 512, 3), nn.MaxPool2d(2),
                Residual(nn.Sequential(_conv_bn_relu(512, 512, 3), _conv_bn_relu(512, 512, 3))),
            ),
            pool=nn.AdaptiveMaxPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    return body, nn.Linear(512, num_classes)


def _kaiming_conv(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Conv2d:
    """A bias-free conv initialised as torchvision initialises ResNet and MobileNetV2 convs:
    ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``."""
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _resnet18_body(in_channels: int, cifar_stem: bool) -> nn.Module:
    """torchvision's ``resnet18`` (no pretraining) with ``fc`` removed: image → 512 pooled
    features. ``cifar_stem``: conv1 is 3x3 stride 1 padding 1 and there is no max-pool (the
    usual 32x32 adaptation); otherwise the ImageNet stem (7x7 stride 2, max-pool) is kept and
    conv1 is only rebuilt when ``in_channels != 3``."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if cifar_stem:
        net.conv1 = _kaiming_conv(in_channels, 64, 3, stride=1, padding=1)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = _kaiming_conv(in_channels, 64, 7, stride=2, padding=3)
    net.fc = nn.Identity()
    return net


@register_arch(
    "resnet18_cifar",
    "torchvision ResNet-18 (no pretraining) with the CIFAR stem (conv1 3x3 stride 1, no "
    "max-pool), 512 average-pooled features, linear head",
    eligible=("body.layer3", "body.layer4", "head"),
    eligible_rule="layer3, layer4 and the head (the Scissorhands reference's choice)",
)
def resnet18_cifar(in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """torchvision ``resnet18`` with conv1 replaced by a 3x3 stride-1 conv taking ``in_channels``
    (initialised as torchvision does) and ``maxpool = Identity``; on 32x32 inputs layer4 works at
    4x4. The body ends at the average-pooled 512-d vector (``fc = Identity``); the head is a
    fresh ``Linear(512, num_classes)``."""
    _check_side("resnet18_cifar", image_size, 8)
    return _resnet18_body(in_channels, cifar_stem=True), nn.Linear(512, num_classes)


@register_arch(
    "mobilenetv2",
    "torchvision MobileNetV2 (no pretraining) for 32x32: first conv stride 1 instead of 2, "
    "1280 average-pooled features, linear head (no dropout)",
    eligible=("body.features.14", "body.features.15", "body.features.16", "body.features.17",
              "body.features.18", "head"),
    eligible_rule="the last four inverted-residual blocks (160 and 320 channels), the final 1x1 "
    "conv to 1280 channels and the head",
)
def mobilenetv2(in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """torchvision ``mobilenet_v2`` adapted to small images: the stem conv (``features.0.0``) is a
    3x3 conv with stride 1 instead of 2 taking ``in_channels`` (initialised as torchvision does),
    so a 32x32 image reaches the last block at 2x2 (overall stride 16 instead of 32); all other
    blocks are torchvision's. The body is ``features`` → global average pool → flatten (1280
    features, post-ReLU6); the head is one ``Linear(1280, num_classes)``. torchvision's
    ``Dropout(0.2)`` before the classifier is dropped, as in the common CIFAR MobileNetV2."""
    from torchvision.models import mobilenet_v2

    _check_side("mobilenetv2", image_size, 16)
    net = mobilenet_v2(weights=None)
    net.features[0][0] = _kaiming_conv(in_channels, 32, 3, stride=1, padding=1)
    body = nn.Sequential(
        OrderedDict(features=net.features, pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten())
    )
    return body, nn.Linear(net.last_channel, num_classes)


@register_arch(
    "resnet18_face",
    "torchvision ResNet-18 (no pretraining, ImageNet stem) for 128x128 faces, with DLFD's MLP "
    "head 512-256-128-classes (ReLU, dropout 0.5)",
    eligible=("body.layer4", "head"),
    eligible_rule="layer4 and the MLP head",
)
def resnet18_face(in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """The DLFD reference model (Choi & Na, ``model.py``): torchvision ``resnet18`` without
    pretraining, its ``fc`` replaced by Identity, so the body gives the 512-d average-pooled
    features; the head is ``Linear(512, 256) → ReLU → Dropout(0.5) → Linear(256, 128) → ReLU →
    Dropout(0.5) → Linear(128, num_classes)``. conv1 is rebuilt only when ``in_channels != 3``."""
    _check_side("resnet18_face", image_size, 32)
    head = nn.Sequential(
        nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )
    return _resnet18_body(in_channels, cifar_stem=False), head
