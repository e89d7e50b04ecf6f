"""An on-disk memo for deterministic training calls, so a chapter that repeats another's sweep loads it.

A call is keyed by a SHA-256 of its function, every argument, the library's own source, the numpy and torch
versions, the CPU's kernel set, the number of threads and the book's replicate (BATCHSIZE_SEED): any change that
could change a number misses the memo.
Arguments that cannot be keyed exactly (a lambda, a class defined in a notebook) make the call run unmemoised.
Files live in `data.cache_dir() / "runs"`; deleting that folder is always safe.
"""
import dataclasses
import functools
import hashlib
import os
import pickle
import platform
from pathlib import Path

import numpy as np
import torch

from . import seeding
from .data import cache_dir

_PACKAGE = __name__.rsplit(".", 1)[0]


class _Unkeyable(Exception):
    pass


@functools.cache
def _environment():
    """Digest of everything outside the arguments that can change a result: source, versions, CPU, threads."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    h.update(repr((np.__version__, torch.__version__, platform.machine(), platform.processor(), os.cpu_count(),
                   torch.backends.cpu.get_cpu_capability())).encode())
    return h.hexdigest()


def _feed(h, obj):
    """Add an exact, type-tagged description of `obj` to the hash `h`; raise _Unkeyable where none exists."""
    if obj is None or isinstance(obj, (bool, int, float, str, np.integer, np.floating)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (tuple, list)):
        h.update(f"{type(obj).__name__}[{len(obj)}](".encode())
        for item in obj:
            _feed(h, item)
        h.update(b")")
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}](".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
        h.update(b")")
    elif isinstance(obj, (np.ndarray, torch.Tensor)):
        try:
            t = torch.as_tensor(obj).detach()
        except (TypeError, RuntimeError) as e:  # an object array, say
            raise _Unkeyable(type(obj).__name__) from e
        h.update(f"tensor:{t.device}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        for f in dataclasses.fields(obj):
            _feed(h, f.name)
            _feed(h, getattr(obj, f.name))
        h.update(b")")
    elif isinstance(obj, functools.partial):
        h.update(b"partial(")
        _feed(h, [obj.func, list(obj.args), dict(obj.keywords)])
        h.update(b")")
    elif callable(obj) and getattr(obj, "__module__", "").split(".")[0] == _PACKAGE and "<" not in obj.__qualname__:
        h.update(f"code:{obj.__module__}.{obj.__qualname__};".encode())  # its source is in _environment()
    else:
        raise _Unkeyable(type(obj).__name__)


def _key(fn, *args, **kwargs):
    """Hex digest of the call fn(*args, **kwargs) on this machine; raises _Unkeyable where none is exact."""
    h = hashlib.sha256(_environment().encode())
    h.update(f"threads:{torch.get_num_threads()};replicate:{seeding.replicate()};".encode())
    _feed(h, [fn, list(args), kwargs])
    return h.hexdigest()[:32]


def call(fn, *args, **kwargs):
    """fn(*args, **kwargs), loaded from the memo when this exact call ran before on this machine."""
    try:
        key = _key(fn, *args, **kwargs)
    except _Unkeyable:
        return fn(*args, **kwargs)
    path = cache_dir() / "runs" / f"{fn.__name__}-{key}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:  # a damaged file (a full disk, say): run the call again and overwrite it
            pass
    out = fn(*args, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)  # atomic: a parallel reader never sees half a file
    return out
