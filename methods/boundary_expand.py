"""Boundary Expand (Chen et al., CVPR 2023): widen the head with a shadow class, train the forget
images into it, then drop the shadow class.

Chen, Gao, Liu, Peng, Zhou, "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Boundary", CVPR 2023. Reference implementations read: ``kairanzhao/RUM:
unlearn/boundary_ex.py`` (``expand_model``, ``boundary_expanding_iter``) and the authors' released
code as mirrored in public repositories (``boundary_expanding``: shadow neuron initialised by
``init_params`` — Xavier-normal weight, zero bias — SGD lr 1e-5, momentum 0.9, 10 epochs over D_f,
then the first K rows kept).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.data import MethodData, generator
from bench.models import feature_head
from bench.registry import method
from bench.train import train_epochs


def head_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent, attribute, layer) of the model's last classifier layer: the head itself when it is
    an ``nn.Linear``, or the last entry of a head that is an ``nn.Sequential`` ending in one."""
    _, head = feature_head(model)
    if isinstance(head, nn.Linear):
        return model, "head", head
    if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
        return head, str(len(head) - 1), head[-1]
    raise TypeError(f"boundary_expand widens a linear output layer; this model's head is {type(head).__name__} "
                    "without a final nn.Linear")


@torch.no_grad()
def widen(layer: nn.Linear, g: torch.Generator) -> nn.Linear:
    """The K-output ``layer`` as a K+1-output layer: rows 0 … K−1 copied, row K (the shadow class)
    drawn N(0, 2/(d + K + 1)) (Xavier normal over the widened [K+1, d] matrix), bias 0."""
    k, d = layer.out_features, layer.in_features
    wide = nn.Linear(d, k + 1, bias=layer.bias is not None, device=layer.weight.device, dtype=layer.weight.dtype)
    wide.weight[:k] = layer.weight
    wide.weight[k] = (torch.randn(d, generator=g) * math.sqrt(2.0 / (d + k + 1))).to(wide.weight)
    if layer.bias is not None:
        wide.bias[:k] = layer.bias
        wide.bias[k] = 0.0
    return wide


@torch.no_grad()
def drop_shadow(layer: nn.Linear) -> nn.Linear:
    """The first K = out_features − 1 outputs of ``layer`` as a K-output layer."""
    k = layer.out_features - 1
    narrow = nn.Linear(layer.in_features, k, bias=layer.bias is not None, device=layer.weight.device, dtype=layer.weight.dtype)
    narrow.weight.copy_(layer.weight[:k])
    if layer.bias is not None:
        narrow.bias.copy_(layer.bias[:k])
    return narrow


@method(
    uses=("forget",),
    paper="Chen et al. 2023, 'Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision Boundary', CVPR 2023 (Boundary Expanding)",
    version=1,
    bounds={"epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None), "momentum": (0.0, 1.0)},
    applies_to=("classes",),
)
def boundary_expand(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 10, lr: float = 1e-5, batch_size: int = 64, momentum: float = 0.9,
) -> nn.Module:
    """Boundary Expand: train D_f into an extra shadow class, then prune the shadow output.

    1. Widen the output layer h: R^d → R^K to h': R^d → R^{K+1}; rows 0 … K−1 are h's, row K (the
       shadow class s = K) is Xavier-normal, bias 0.
    2. min_θ Σ_{x∈D_f} CE(h'(g_θ(x)), s) over the whole network, SGD (lr 1e-5, momentum 0.9, no
       weight decay), 10 epochs, batch 64, train mode: the forget images move into the shadow
       region, pulling the feature extractor's decision boundary with them.
    3. Drop row K: the returned head has the original K outputs (the forget class keeps its row,
       but its images now sit where the shadow class was).

    Departures from the reference: the RUM version keeps the widened head (its evaluation ignores
    the extra output); the paper and its authors' code prune it, and so do we, so the model keeps
    the task's K classes. The shadow row is drawn from a seeded generator.
    """
    model.to(device)
    parent, attr, layer = head_linear(model)
    shadow = layer.out_features
    setattr(parent, attr, widen(layer, generator(data.seed, "boundary_expand")))
    targets = torch.full_like(data.forget.y, shadow)
    train_epochs(model, data.forget.with_labels(targets), epochs=epochs, batch_size=batch_size, lr=lr,
                 seed=data.seed, device=device, optimizer="sgd", momentum=momentum, purpose="boundary_expand")
    setattr(parent, attr, drop_shadow(getattr(parent, attr)))
    return model
