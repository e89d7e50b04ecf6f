"""One training step of a model, written once: its trainable parameters and their gradients as one vector, a batch
split into micro-batches, the gradient of the mean loss accumulated over them, and a step with any torch.optim
optimizer.

Chapter 4 times this step (`hardware`), measures its peak memory (`memory`), checks accumulation against the full
batch with it (`parallel`, `ddp`), and chapter 6's advice tries it (`advise`); `grads` flattens its gradients with
it. Those modules import this one, and it imports none of them. The batched updates of many runs at once (`train`)
are another loop: they update the stacked parameters of many models through torch.func, not an nn.Module.
"""
import contextlib

import torch

from ._checks import check_data, check_model, check_positive_int, cross_entropy


def trainable_parameters(model):
    """The parameters of model that require gradients, in model.parameters() order. Introduced in chapter 1."""
    check_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    return params


def flatten_grads(grads, params):
    """Gradients of params (None: zeros) as one vector, (num_params,). Introduced in chapter 1 (gradient variance)."""
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def flat_grad(model):
    """A model's .grad of every trainable parameter as one vector, zeros where it is None. Introduced in chapter 4."""
    params = trainable_parameters(model)
    return flatten_grads([p.grad for p in params], params)


def micro_batches(num_examples, num_micro_batches):
    """num_micro_batches contiguous slices of range(num_examples), sizes within one. Introduced in chapter 4."""
    k = check_positive_int(num_micro_batches, "num_micro_batches")
    if k > num_examples:
        raise ValueError(f"num_micro_batches must be at most the number of examples ({num_examples}), got {k}")
    bounds = [num_examples * i // k for i in range(k + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def autocast(device, dtype):
    """torch.autocast on device's type for dtype (e.g. torch.bfloat16), a no-op for None. Introduced in chapter 4."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _check_callable(value, name):
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be None or a callable, got {type(value).__name__}")


def _accumulate(model, X, y, num_micro_batches, loss_fn, before_micro_batch, autocast_dtype, read_loss):
    """The backward passes of accumulate_gradients; the mean loss only if read_loss, else 0.0 (no wait)."""
    num_examples = check_data(X, y, floating=False)
    _check_callable(loss_fn, "loss_fn")
    _check_callable(before_micro_batch, "before_micro_batch")
    slices = micro_batches(num_examples, num_micro_batches)
    total = 0.0
    for rows in slices:
        if before_micro_batch is not None:
            before_micro_batch()
        Xb, yb = (X, y) if len(slices) == 1 else (X[rows], y[rows])  # no views to make in a step that is timed
        with autocast(X.device, autocast_dtype):
            out = model(Xb)
            loss = cross_entropy(out, yb) if loss_fn is None else loss_fn(out, yb)
        share = (rows.stop - rows.start) / num_examples
        (loss * share).backward()  # also for share 1.0: chapter 4's peaks count this scalar
        if read_loss:
            total += float(loss.detach()) * share
    return total


def accumulate_gradients(model, X, y, num_micro_batches=1, loss_fn=None, before_micro_batch=None,
                         autocast_dtype=None):
    """Backward passes over num_micro_batches slices of (X, y), adding into .grad the gradient of the mean loss.

    Introduced in chapter 4 (gradient accumulation). Each slice's mean loss (cross-entropy unless loss_fn(output,
    y) is given) is weighted by its share of the examples, so slices of unequal size still give the full batch's
    mean. Existing .grad values are added to, as in PyTorch. before_micro_batch(), if given, runs before each
    slice (a memory tracker resets there); with autocast_dtype the forward passes run under torch.autocast.
    Returns the full batch's mean loss, a float (reading it waits for the device).
    """
    check_model(model)
    return _accumulate(model, X, y, num_micro_batches, loss_fn, before_micro_batch, autocast_dtype, read_loss=True)


def training_step(model, X, y, optimizer=None, loss_fn=None, num_micro_batches=1, before_micro_batch=None,
                  autocast_dtype=None):
    """One step: forward, mean loss, backward, optimizer step if given, gradients freed (also when it fails).

    Introduced in chapter 4 (memory). optimizer is any torch.optim optimizer over the model's parameters, or None
    for the forward and backward passes alone. With num_micro_batches > 1 the gradient is accumulated over that
    many slices of the batch (`accumulate_gradients`) before the one optimizer step. The step starts from the
    gradients in .grad, none after an earlier step, and frees them at its end, also after an error (a backward
    pass that ran out of memory half-way leaves some). Returns nothing: the step never waits for the device, so
    that it can be timed; `accumulate_gradients` returns the loss.
    """
    check_model(model)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be None or a torch.optim.Optimizer, got {type(optimizer).__name__}")
    try:
        _accumulate(model, X, y, num_micro_batches, loss_fn, before_micro_batch, autocast_dtype, read_loss=False)
        if optimizer is not None:
            optimizer.step()
    finally:
        model.zero_grad(set_to_none=True)
