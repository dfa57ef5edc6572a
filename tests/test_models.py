"""Architectures: shapes, gradients, the g/h split, seeding, and Scissorhands' eligible parameters.

Every registered architecture must have a row in ``CASES``; the expectations in this file (feature
sizes, parameter counts, eligible modules) are written out by hand from the architectures'
definitions, not read back from :mod:`bench.models`.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.models import ARCHS, Classifier, build_model, eligible_parameters, feature_head, state_hash

# arch -> (in_channels, image_size, feature size): small inputs where the architecture allows.
CASES: dict[str, tuple[int, int, int]] = {
    "digits_cnn": (1, 8, 64),
    "lenet": (1, 28, 128),
    "allcnn": (3, 16, 192),
    "resnet9": (3, 16, 512),
    "resnet18_cifar": (3, 16, 512),
    "mobilenetv2": (3, 16, 1280),
    "resnet18_face": (3, 128, 512),
}

# arch -> predicate on a conv/linear module's name: which ones Scissorhands may trim.
ELIGIBLE: dict[str, object] = {
    "digits_cnn": lambda name: True,
    "lenet": lambda name: True,
    "allcnn": lambda name: name.startswith(("body.stage3.", "head")),
    "resnet9": lambda name: name.startswith(("body.layer3.", "head")),
    "resnet18_cifar": lambda name: name.startswith(("body.layer3.", "body.layer4.", "head")),
    "mobilenetv2": lambda name: name.startswith(("head",))
    or (name.startswith("body.features.") and int(name.split(".")[2]) >= 14),
    "resnet18_face": lambda name: name.startswith(("body.layer4.", "head")),
}

NUM_CLASSES = 5


def make(arch: str, seed: int = 0, in_channels: int | None = None, image_size: int | None = None) -> Classifier:
    channels, size, _ = CASES[arch]
    channels = in_channels or channels
    return build_model(
        arch,
        in_channels=channels,
        image_size=image_size or size,
        num_classes=NUM_CLASSES,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        seed=seed,
    )


def batch(arch: str, n: int = 2, in_channels: int | None = None, image_size: int | None = None) -> torch.Tensor:
    channels, size, _ = CASES[arch]
    gen = torch.Generator().manual_seed(123)
    return torch.rand(n, in_channels or channels, image_size or size, image_size or size, generator=gen)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_registered_architecture_is_tested():
    assert set(CASES) == set(ARCHS.names()) == set(ELIGIBLE)


@pytest.mark.parametrize("arch", list(CASES))
def test_forward_backward_gives_finite_gradients(arch):
    model = make(arch)
    model.train()
    x = batch(arch)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, NUM_CLASSES - 1]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{arch}: no gradient for {name}"
        assert torch.isfinite(param.grad).all(), f"{arch}: non-finite gradient for {name}"
    assert any(param.grad.abs().sum() > 0 for param in model.parameters())


@pytest.mark.parametrize("arch", list(CASES))
def test_feature_head_composes_to_the_model(arch):
    model = make(arch).eval()
    g, h = feature_head(model)
    x = batch(arch, n=3)
    with torch.no_grad():
        features = g(x)
        logits = model(x)
        recomposed = h(features)
    assert features.shape == (3, CASES[arch][2])
    # the body ends after the last ReLU/ReLU6 and pooling: features are what the classifier consumes
    assert (features >= 0).all()
    torch.testing.assert_close(recomposed, logits, rtol=0, atol=0)
    last = [m for m in h.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == NUM_CLASSES


def test_feature_head_rejects_a_bare_module():
    with pytest.raises(TypeError, match="build_model"):
        feature_head(nn.Linear(3, 2))


@pytest.mark.parametrize("arch", list(CASES))
def test_seed_fixes_the_initial_weights(arch):
    first = state_hash(make(arch, seed=0))
    assert state_hash(make(arch, seed=0)) == first
    assert state_hash(make(arch, seed=1)) != first


@pytest.mark.parametrize("arch", list(CASES))
def test_eligible_parameters_follow_the_declared_rule(arch):
    model = make(arch)
    names = eligible_parameters(model)
    assert names, f"{arch}: no eligible parameters"
    assert len(names) == len(set(names))
    params = dict(model.named_parameters())
    expected = []
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and ELIGIBLE[arch](mod_name):
            expected.extend(f"{mod_name}.{p}" for p, _ in module.named_parameters(recurse=False))
    assert sorted(names) == sorted(expected)
    for name in names:
        assert name in params
        module = model.get_submodule(name.rsplit(".", 1)[0])
        assert isinstance(module, (nn.Conv2d, nn.Linear)), f"{arch}: {name} is not a conv/linear parameter"
    # every declared prefix selects something (a misspelt prefix would silently select nothing)
    for prefix in ARCHS.get(arch).eligible:
        assert any(n.startswith(prefix + ".") for n in names), f"{arch}: prefix {prefix!r} selects nothing"


@pytest.mark.parametrize("arch", ["allcnn", "resnet9", "resnet18_cifar", "mobilenetv2", "resnet18_face"])
def test_eligible_is_a_strict_subset_that_excludes_the_stem(arch):
    model = make(arch)
    names = eligible_parameters(model)
    conv_linear = [
        n for n, _ in model.named_parameters()
        if isinstance(model.get_submodule(n.rsplit(".", 1)[0]), (nn.Conv2d, nn.Linear))
    ]
    assert len(names) < len(conv_linear)
    assert any(n.startswith("head.") for n in names)
    assert not any(n.startswith(("body.conv1.", "body.prep.", "body.stage1.", "body.features.0.")) for n in names)


# Parameter counts for 10 classes, from the layer tables:
#   lenet: conv 1->16 5x5 (416) + conv 16->32 5x5 (12,832) + fc 512->128 (65,664) + 128->10 (1,290)
#   allcnn: 3x3 convs 3*96*9 + 96*96*9 + 96*192*9 + 4*192*192*9, 1x1 192*192; BN 2*(2*96 + 6*192);
#           linear 192*10+10
#   resnet9: the DAWNBench net, 6,573,120 with its bias-free head, +10 for our head's bias
#   resnet18_cifar: torchvision resnet18 (11,689,512) - 7x7 conv1 (9,408) + 3x3 conv1 (1,728)
#                   - fc 512->1000 (513,000) + fc 512->10 (5,130)
#   mobilenetv2: torchvision mobilenet_v2 (3,504,872) - classifier (1,281,000) + 1280*10+10
#   resnet18_face: resnet18 without fc (11,176,512) + 512*256+256 + 256*128+128 + 128*10+10
PARAMS_10_CLASSES = {
    "lenet": 416 + 12_832 + 65_664 + 1_290,
    "allcnn": 3 * 96 * 9 + 96 * 96 * 9 + 96 * 192 * 9 + 4 * 192 * 192 * 9 + 192 * 192
    + 2 * (2 * 96 + 6 * 192) + 192 * 10 + 10,
    "resnet9": 6_573_120 + 10,
    "resnet18_cifar": 11_689_512 - 9_408 + 1_728 - 513_000 + 5_130,
    "mobilenetv2": 3_504_872 - 1_281_000 + 1280 * 10 + 10,
    "resnet18_face": 11_689_512 - 513_000 + 512 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10,
}


@pytest.mark.parametrize("arch", list(PARAMS_10_CLASSES))
def test_parameter_counts_match_the_layer_tables(arch):
    channels, _, _ = CASES[arch]
    size = {"lenet": 28, "resnet18_face": 128}.get(arch, 32)
    model = build_model(arch, in_channels=channels, image_size=size, num_classes=10,
                        mean=(0.0,) * channels, std=(1.0,) * channels, seed=0)
    assert sum(p.numel() for p in model.parameters()) == PARAMS_10_CLASSES[arch]


def test_cifar_stems():
    resnet = make("resnet18_cifar")
    assert resnet.body.conv1.kernel_size == (3, 3) and resnet.body.conv1.stride == (1, 1)
    assert resnet.body.conv1.padding == (1, 1)
    assert isinstance(resnet.body.maxpool, nn.Identity)
    mobile = make("mobilenetv2")
    assert mobile.body.features[0][0].stride == (1, 1)
    assert not any(isinstance(m, nn.Dropout) for m in mobile.modules())
    face = make("resnet18_face")
    assert face.body.conv1.kernel_size == (7, 7) and face.body.conv1.stride == (2, 2)
    assert isinstance(face.body.maxpool, nn.MaxPool2d)
    widths = [(m.in_features, m.out_features) for m in face.head if isinstance(m, nn.Linear)]
    assert widths == [(512, 256), (256, 128), (128, NUM_CLASSES)]
    assert [m.p for m in face.head if isinstance(m, nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize(("arch", "in_channels", "image_size"), [
    ("allcnn", 1, 28), ("resnet9", 1, 28), ("resnet18_cifar", 1, 28), ("mobilenetv2", 1, 28),
    ("lenet", 3, 32), ("resnet18_face", 1, 64),
])
def test_other_channel_counts_and_sizes(arch, in_channels, image_size):
    model = make(arch, in_channels=in_channels, image_size=image_size).eval()
    with torch.no_grad():
        logits = model(batch(arch, in_channels=in_channels, image_size=image_size))
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()


def test_too_small_images_fail_loudly():
    with pytest.raises(ValueError, match="at least"):
        build_model("lenet", in_channels=1, image_size=8, num_classes=10, mean=(0.0,), std=(1.0,), seed=0)


def test_dropout_is_inactive_in_eval_mode():
    model = make("resnet18_face").eval()
    x = batch("resnet18_face")
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
