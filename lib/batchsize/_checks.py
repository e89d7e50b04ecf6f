"""Argument checks shared by the lib: each raises a ValueError/TypeError that says what is allowed."""
import numbers

import numpy as np
import torch


def check_int(value, name, minimum=1):
    """Raise unless value is an integer >= minimum; return it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_positive_int(value, name):
    """Raise unless value is an integer >= 1."""
    return check_int(value, name, 1)


def check_positive_float(value, name):
    """Raise unless value is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number > 0, got {type(value).__name__} {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def as_positive_array(values, name, integer=False, any_shape=False):
    """A 1-D (or, with any_shape, any-shaped) array whose entries are all > 0 (and whole numbers if integer)."""
    arr = np.asarray(values) if any_shape else np.atleast_1d(np.asarray(values))
    if (arr.ndim != 1 and not any_shape) or arr.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence of numbers, got {values!r}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must all be finite and > 0, got {values!r}")
    if integer:
        if np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must be whole numbers, got {values!r}")
        return arr.astype(np.int64)
    return arr.astype(np.float64)


def check_model(model):
    """Raise unless model is a torch.nn.Module."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_data(X, y, floating=True):
    """Raise unless X (a float tensor if floating) and y are tensors with the same, non-zero number of rows."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor of shape (N, ...), got {type(X).__name__}")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of shape (N, ...), got {type(y).__name__}")
    if X.dim() == 0 or len(X) == 0:
        raise ValueError(f"X must hold at least one example along its first dimension, got shape {tuple(X.shape)}")
    if y.dim() == 0 or len(y) != len(X):
        raise ValueError(f"X and y must have the same number of examples (first dimension), "
                         f"got X {tuple(X.shape)} and y {tuple(y.shape)}")
    if floating and not torch.is_floating_point(X):
        raise TypeError(f"X must be a floating-point tensor, got dtype {X.dtype}")
    return len(X)


def check_batch_size(batch_size, num_examples, name="batch_size"):
    """Raise unless 1 <= batch_size <= num_examples."""
    check_positive_int(batch_size, name)
    if batch_size > num_examples:
        raise ValueError(f"{name} must be between 1 and the number of examples ({num_examples}), "
                         f"got {batch_size}")
    return int(batch_size)


def check_data4(data):
    """Raise unless data is a tuple or list (X_train, y_train, X_test, y_test); returns it as a tuple."""
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        what = f"a {type(data).__name__} of {len(data)}" if isinstance(data, (tuple, list)) else type(data).__name__
        raise TypeError(f"data must be a tuple (X_train, y_train, X_test, y_test) of tensors, e.g. "
                        f"data.load_mnist1d(), got {what}")
    return tuple(data)


def check_same_dtype(X, model, name="X"):
    """Raise unless floating-point X has the dtype of the model's floating parameters (integer X: token ids)."""
    if not isinstance(X, torch.Tensor) or not isinstance(model, torch.nn.Module):
        return  # the checks of the data and the model say what is wrong
    dtypes = {p.dtype for p in model.parameters() if torch.is_floating_point(p)}
    if torch.is_floating_point(X) and dtypes and X.dtype not in dtypes:
        raise TypeError(f"{name} has dtype {X.dtype} but the model's parameters are {', '.join(map(str, dtypes))}: "
                        f"convert one to the other (e.g. X.float(), or model.double() in make_model)")


def cross_entropy(logits, y, **kwargs):
    """F.cross_entropy, with labels outside 0..num_classes-1 a ValueError that says so (a CPU IndexError else)."""
    try:
        return torch.nn.functional.cross_entropy(logits, y, **kwargs)
    except IndexError as error:
        num_classes = logits.shape[-1] if logits.dim() == 2 else logits.shape[1]
        raise ValueError(f"class labels must lie in 0..{num_classes - 1} for the model's {num_classes} outputs, got "
                         f"labels from {int(y.min())} to {int(y.max())}") from error

