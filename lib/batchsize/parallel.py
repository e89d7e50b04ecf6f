"""Gradient accumulation against the full batch, and its two traps: per-token losses and batch norm.

The accumulation itself, the book's one training step, is `batchsize.steps`; the data-parallel version of the same
sums, DistributedDataParallel under torchrun, is `batchsize.ddp`.
"""
import torch
import torch.nn.functional as F

from . import seeding
from ._checks import check_data, check_model, check_positive_int
from .steps import accumulate_gradients, flat_grad, micro_batches

NORMALIZATIONS = ("global", "per_micro_batch")


def accumulated_gradient(model, X, y, num_micro_batches, loss_fn=None):
    """The flat gradient of the mean loss over (X, y), computed in num_micro_batches slices. Introduced in chapter 4.

    Clears the model's gradients before and after.
    """
    check_model(model)
    model.zero_grad(set_to_none=True)
    accumulate_gradients(model, X, y, num_micro_batches, loss_fn)
    grad = flat_grad(model).detach().clone()
    model.zero_grad(set_to_none=True)
    return grad


# ---------------------------------------------------------------------------------------------------------------
# the per-token loss trap: examples of different lengths


def make_token_task(num_sequences=64, max_len=32, dim=8, num_classes=5, seed=0):
    """A toy per-token classification task with sequences of random length 1..max_len. Introduced in chapter 4.

    Returns X (num_sequences, max_len, dim), y (num_sequences, max_len) and a bool mask of real tokens; labels
    come from a fixed random linear map of the token features, padding positions are zero.
    """
    for value, name in ((num_sequences, "num_sequences"), (max_len, "max_len"), (dim, "dim"),
                        (num_classes, "num_classes")):
        check_positive_int(value, name)
    g = seeding.generator(int(seed))
    lengths = torch.randint(1, max_len + 1, (num_sequences,), generator=g)
    mask = torch.arange(max_len) < lengths[:, None]  # (num_sequences, max_len)
    X = torch.randn(num_sequences, max_len, dim, generator=g) * mask[..., None]
    W = torch.randn(dim, num_classes, generator=g)
    y = (X @ W).argmax(-1) * mask  # (num_sequences, max_len)
    return X, y, mask


def token_loss_sum(model, X, y, mask):
    """Sum of the per-token cross-entropy over the real (unmasked) tokens. Introduced in chapter 4."""
    logits = model(X)  # (batch_size, max_len, num_classes)
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return (losses * mask.flatten()).sum()


def accumulated_token_gradient(model, X, y, mask, num_micro_batches, normalize="global"):
    """Flat gradient of the per-token mean loss, accumulated over num_micro_batches slices of the sequences.

    Introduced in chapter 4 (gradient accumulation). normalize="global" divides every slice's token-loss sum
    by the number of real tokens in the whole batch (exact); "per_micro_batch" takes each slice's own token
    mean and averages the k means, the common bug: slices with few tokens then weigh as much as long ones.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    check_model(model)
    num_sequences = check_data(X, y, floating=True)
    if mask.shape != y.shape:
        raise ValueError(f"mask must have the shape of y {tuple(y.shape)}, got {tuple(mask.shape)}")
    slices = micro_batches(num_sequences, num_micro_batches)
    total_tokens = mask.sum()
    model.zero_grad(set_to_none=True)
    for rows in slices:
        loss_sum = token_loss_sum(model, X[rows], y[rows], mask[rows])
        if normalize == "global":
            loss = loss_sum / total_tokens
        else:
            loss = loss_sum / mask[rows].sum().clamp(min=1) / len(slices)
        loss.backward()
    grad = flat_grad(model).detach().clone()
    model.zero_grad(set_to_none=True)
    return grad


def relative_error(a, b):
    """||a - b|| / ||b||, for comparing two gradients. Introduced in chapter 4."""
    return float((a - b).norm() / b.norm())
