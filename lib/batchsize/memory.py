"""Memory against batch size: saved-activation bytes, parameter/gradient/optimizer-state bytes, the whole peak
of a training step, the largest batch for a memory budget, and an out-of-memory-safe batch-size finder.

The activation count is exact: every tensor that autograd saves for the backward pass is seen through
`torch.autograd.graph.saved_tensors_hooks`, each storage is counted once (a ReLU output saved by the ReLU and by
the next layer is one allocation), and storages of parameters and buffers (model state, not activations) are
skipped.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_data

OPTIMIZERS = ("sgd", "momentum", "adam")
_STATES_PER_PARAM = {"sgd": 0, "momentum": 1, "adam": 2}  # buffers of the parameter's size kept by the optimizer


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _state_storages(model):
    """The storage ids of the model's parameters and buffers."""
    return {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}


def activation_bytes(model, X, y, loss_fn=None):
    """Bytes saved for backward by one training step on (X, y), each storage once, parameters excluded.

    Introduced in chapter 4 (memory). The loss is the mean cross-entropy unless loss_fn(output, y) is given.
    Only the forward pass runs (that is when autograd saves tensors); the model's gradients are not touched.
    """
    _check_model(model)
    check_data(X, y, floating=False)
    skip = _state_storages(model)
    seen = {}  # storage id -> bytes

    def pack(t):
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in skip:
            seen[key] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        out = model(X)
        loss = F.cross_entropy(out, y) if loss_fn is None else loss_fn(out, y)
    del out, loss
    return int(sum(seen.values()))


def state_bytes(model, optimizer="sgd"):
    """Bytes of parameters + gradients + optimizer state, constant in the batch size. Introduced in chapter 4.

    optimizer: "sgd" (no state), "momentum" (one buffer per parameter) or "adam" (two buffers and a scalar step
    per parameter tensor, as torch.optim.Adam keeps them). Parameters that do not require grad count once.
    """
    _check_model(model)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    total = sum(p.numel() * p.element_size() for p in params)
    per_copy = sum(p.numel() * p.element_size() for p in trainable)
    total += per_copy * (1 + _STATES_PER_PARAM[optimizer])  # gradients + optimizer buffers
    if optimizer == "adam":  # Adam's step counter: a 0-d tensor of the default float dtype per parameter tensor
        step_size = 8 if torch.get_default_dtype() == torch.float64 else 4
        total += step_size * len(trainable)
    return int(total)
