"""Data as readers hold it, for the advisor of chapter 6: examples from tensors, a Dataset or a DataLoader.

`examples(data)` turns (X, y), (X, y, X_test, y_test), a `torch.utils.data.Dataset` of (input, target) pairs or a
`DataLoader` of (inputs, targets) batches into two `Examples`, a training and a held-out set, held in memory and
indexable by example. An input may be a tensor, a dict of tensors (the model is called as ``model(**inputs)``) or a
tuple of tensors (``model(*inputs)``); integer inputs (token ids) stay integers, floating ones take the model's dtype.
`mean_loss` is the loss of a batch: `loss_fn(output, target)` if given, else the mean cross-entropy over every
position (a classifier's (B, C) logits or a language model's (B, T, V)).
"""
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from . import seeding
from ._checks import check_model, check_positive_int, cross_entropy

MAX_EXAMPLES = 20_000  # a Dataset or DataLoader is read up to this many examples
MAX_HELD_OUT = 1000  # held-out examples at most: a given test part's first ones, else a fifth of the data at most


def tree_map(fn, tree, name="inputs"):
    """fn applied to every tensor of a tensor, dict or tuple/list of them (nested), keeping the structure."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, name) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, v, name) for v in tree)
    raise TypeError(f"{name} must be a tensor, a dict or a tuple of tensors, got {type(tree).__name__}")


def tree_leaves(tree, name="inputs"):
    """The tensors of a tensor, dict or tuple/list of them, in order."""
    leaves = []
    tree_map(leaves.append, tree, name)
    return leaves


def _num_examples(tree, name):
    """The common first dimension of every tensor in tree (at least 1)."""
    leaves = tree_leaves(tree, name)
    sizes = {len(t) if t.dim() else 0 for t in leaves}
    if not leaves or len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"every tensor of {name} must hold the same number of examples (>= 1) along its first "
                         f"dimension, got shapes {[tuple(t.shape) for t in leaves]}")
    return sizes.pop()


@dataclass
class Examples:
    """Examples in memory: inputs (tensor, dict or tuple of tensors) and targets, each (N, ...). Chapter 6."""

    inputs: object
    targets: object

    def __post_init__(self):
        n = _num_examples(self.inputs, "inputs")
        if _num_examples(self.targets, "targets") != n:
            raise ValueError(f"inputs and targets must hold the same number of examples, got {n} inputs and "
                             f"{_num_examples(self.targets, 'targets')} targets")

    def __len__(self):
        return _num_examples(self.inputs, "inputs")

    def take(self, idx):
        """The examples at idx (a slice or an index tensor) as (inputs, targets)."""
        return tree_map(lambda t: t[idx], self.inputs), tree_map(lambda t: t[idx], self.targets, "targets")

    def to(self, device, dtype):
        """A copy on device with floating tensors in dtype; integer ones (token ids, labels) keep theirs."""
        def move(t):
            return t.to(device=device, dtype=dtype if torch.is_floating_point(t) else t.dtype)
        return Examples(tree_map(move, self.inputs), tree_map(move, self.targets, "targets"))


def call_model(model, inputs):
    """``model(inputs)``, ``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple or list."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def mean_loss(output, targets, loss_fn=None):
    """The batch's mean loss, a scalar tensor: loss_fn(output, targets), else the mean cross-entropy. Chapter 6."""
    if loss_fn is not None:
        loss = loss_fn(output, targets)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn(output, target) must return the batch's mean loss as a scalar tensor, got "
                             f"{shape}")
        return loss
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the model returned a {type(output).__name__}, not a tensor of logits: give "
                        f"loss_fn(output, target) that returns the mean loss")
    _check_label_dtype(targets)
    if output.dim() < 2 or tuple(output.shape[:-1]) != tuple(targets.shape):
        raise ValueError(f"the default loss (cross-entropy) needs logits of shape (*target.shape, num_classes), "
                         f"got output {tuple(output.shape)} for targets {tuple(targets.shape)}; give loss_fn")
    return cross_entropy(output.reshape(-1, output.shape[-1]), targets.reshape(-1).long())


def _check_label_dtype(targets):
    if not isinstance(targets, torch.Tensor) or targets.dtype not in (torch.long, torch.int32):
        raise TypeError(f"the default loss (cross-entropy) needs integer class labels as targets (torch.long), got "
                        f"{targets.dtype if isinstance(targets, torch.Tensor) else type(targets).__name__}; give "
                        f"loss_fn(output, target) for other targets")


def check_labels(output, examples_sets):
    """Raise unless every target of the examples is an integer in 0..C-1 for the model's C outputs (default loss)."""
    num_classes = output.shape[-1]
    for name, ex in examples_sets.items():
        y = ex.targets
        _check_label_dtype(y)
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} labels must lie in 0..{num_classes - 1} (the model has {num_classes} "
                             f"outputs), got labels from {lo} to {hi}")


def model_device_dtype(model):
    """The device and floating dtype of the model's first parameter (cpu, float32 without floating ones)."""
    check_model(model)
    params = [p for p in model.parameters() if torch.is_floating_point(p)]
    if not params:
        return torch.device("cpu"), torch.get_default_dtype()
    return params[0].device, params[0].dtype


def has_batch_norm(model):
    """Whether the model normalises with batch statistics (a _BatchNorm module in training mode)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


def _read_loader(loader, max_examples):
    """Concatenated (inputs, targets) of a DataLoader's batches, up to max_examples examples."""
    inputs, targets, n = [], [], 0
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"each batch of the data must be a pair (inputs, targets), got "
                            f"{type(batch).__name__}" + (f" of {len(batch)}" if hasattr(batch, "__len__") else ""))
        inputs.append(batch[0])
        targets.append(batch[1])
        n += _num_examples(batch[0], "inputs")
        if n >= max_examples:
            break
    if not inputs:
        raise ValueError("the data loader gave no batches")

    def cat(parts, name):
        first = parts[0]
        if isinstance(first, torch.Tensor):
            return torch.cat(parts)[:max_examples]
        if isinstance(first, dict):
            return {k: cat([p[k] for p in parts], name) for k in first}
        if isinstance(first, (tuple, list)):
            return type(first)(cat([p[i] for p in parts], name) for i in range(len(first)))
        raise TypeError(f"{name} must be tensors, dicts or tuples of tensors, got {type(first).__name__}")
    return cat(inputs, "inputs"), cat(targets, "targets")


def _split(ex, seed):
    """A seeded random held-out set: a fifth of the examples, at most MAX_HELD_OUT, at least 1."""
    n = len(ex)
    if n < 3:
        raise ValueError(f"the data must hold at least 3 examples (2 to train on, 1 held out), got {n}")
    perm = torch.randperm(n, generator=seeding.generator(seed))
    n_test = max(1, min(n // 5, MAX_HELD_OUT))
    return Examples(*ex.take(perm[n_test:])), Examples(*ex.take(perm[:n_test]))


def examples(data, seed=0, max_examples=MAX_EXAMPLES):
    """(train, held_out) `Examples` from (X, y), (X, y, X_test, y_test), a Dataset or a DataLoader. Chapter 6.

    A Dataset or DataLoader is read into memory up to max_examples; without a test part, a seeded fifth of the
    examples (at most MAX_HELD_OUT) is held out; a given test part is held out up to its first MAX_HELD_OUT.
    """
    max_examples = check_positive_int(max_examples, "max_examples")
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=256, shuffle=False)
    if isinstance(data, DataLoader):
        return _split(Examples(*_read_loader(data, max_examples)), seed)
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return Examples(data[0], data[1]), Examples(*Examples(data[2], data[3]).take(slice(0, MAX_HELD_OUT)))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return _split(Examples(data[0], data[1]), seed)
    what = f"a {type(data).__name__} of {len(data)}" if isinstance(data, (tuple, list)) else type(data).__name__
    raise TypeError(f"data must be (X, y), (X, y, X_test, y_test), a torch.utils.data.Dataset of (input, target) "
                    f"pairs or a DataLoader of (inputs, targets) batches, got {what}")
