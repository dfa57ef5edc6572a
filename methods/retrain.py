"""Retrain from scratch on the retain set: the exact oracle, timed as a method."""
from __future__ import annotations

import torch
from torch import nn

from bench.data import MethodData
from bench.registry import method
from bench.train import train_with_recipe


@method(uses=("retain",), paper="reference: exact unlearning by retraining (the oracle)", version=1)
def retrain(model: nn.Module, data: MethodData, *, device: torch.device) -> nn.Module:
    """Retrain from the seed's initial weights on D_r with the task's recipe (= the oracle).

    θ* = argmin_θ Σ_{(x,y)∈D_r} CE(f_θ(x), y), from the same initialization, data order and recipe as
    the cached oracle, so on CPU its outputs match the oracle's bit for bit.
    """
    fresh = data.init_model()
    train_with_recipe(fresh, data.retain, data.recipe, seed=data.seed, device=device, purpose="reference")
    return fresh
