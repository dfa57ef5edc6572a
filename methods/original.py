"""The original model, unchanged: the reference point of "no unlearning at all"."""
from __future__ import annotations

import torch
from torch import nn

from bench.data import MethodData
from bench.registry import method


@method(uses=(), paper="reference: the model trained on all training data", version=1)
def original(model: nn.Module, data: MethodData, *, device: torch.device) -> nn.Module:
    """No change: returns the original model as it is (uses no data)."""
    return model
