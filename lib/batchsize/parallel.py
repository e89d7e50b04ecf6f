"""Gradient accumulation: accumulated gradients and their two traps, per-token losses and batch norm.

The data-parallel version of the same sums, DistributedDataParallel under torchrun, is `batchsize.ddp`.
"""
import torch
import torch.nn.functional as F

from . import seeding
from ._checks import check_data, check_positive_int

NORMALIZATIONS = ("global", "per_micro_batch")


def flat_grad(model):
    """All parameter gradients of a model as one vector (zeros where a gradient is None). Introduced in chapter 4."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in model.parameters() if p.requires_grad])


def _micro_batches(num_examples, num_micro_batches):
    """num_micro_batches contiguous slices covering range(num_examples), sizes differing by at most one."""
    k = check_positive_int(num_micro_batches, "num_micro_batches")
    if k > num_examples:
        raise ValueError(f"num_micro_batches must be at most the number of examples ({num_examples}), got {k}")
    bounds = [num_examples * i // k for i in range(k + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def accumulate_gradients(model, X, y, num_micro_batches, loss_fn=None, before_micro_batch=None):
    """Backward passes over num_micro_batches slices of (X, y), adding into .grad the gradient of the mean loss.

    Introduced in chapter 4 (gradient accumulation). Each slice's mean loss is weighted by its share of the
    examples, so slices of unequal size still give the full batch's mean. Existing .grad values are added to,
    as in PyTorch. before_micro_batch(), if given, runs before each slice (a memory tracker resets there).
    Returns the full batch's mean loss.
    """
    num_examples = check_data(X, y, floating=False)
    total = 0.0
    for rows in _micro_batches(num_examples, num_micro_batches):
        if before_micro_batch is not None:
            before_micro_batch()
        out = model(X[rows])
        loss = F.cross_entropy(out, y[rows]) if loss_fn is None else loss_fn(out, y[rows])
        share = (rows.stop - rows.start) / num_examples
        (loss * share).backward()
        total += float(loss.detach()) * share
    return total


def accumulated_gradient(model, X, y, num_micro_batches, loss_fn=None):
    """The flat gradient of the mean loss over (X, y), computed in num_micro_batches slices. Introduced in chapter 4.

    Clears the model's gradients before and after.
    """
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
    num_sequences = check_data(X, y, floating=True)
    if mask.shape != y.shape:
        raise ValueError(f"mask must have the shape of y {tuple(y.shape)}, got {tuple(mask.shape)}")
    slices = _micro_batches(num_sequences, num_micro_batches)
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
