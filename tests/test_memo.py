"""The on-disk memo behind sweep_steps(cache=True): a hit returns what the call returns, any change misses."""
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from batchsize import _memo
from batchsize.models import CNN1D, MLP
from batchsize.scaling import fit_critical_batch, median_steps, sweep_steps
from batchsize.train import TrainConfig, train_many

B, S = [1, 4, 16, 64], [800.0, 230.0, 90.0, 60.0]


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSIZE_CACHE", str(tmp_path))
    return tmp_path / "runs"


def files(runs_dir):
    return sorted(runs_dir.glob("*.pkl")) if runs_dir.exists() else []


def test_a_second_identical_call_loads_the_file(runs_dir):
    first = _memo.call(fit_critical_batch, B, S)
    assert first == fit_critical_batch(B, S)
    [path] = files(runs_dir)
    path.write_bytes(pickle.dumps("loaded"))  # the second call must read the file instead of computing
    assert _memo.call(fit_critical_batch, B, S) == "loaded"


def test_a_damaged_file_is_computed_again_and_replaced(runs_dir):
    _memo.call(fit_critical_batch, B, S)
    [path] = files(runs_dir)
    path.write_bytes(b"\x80\x05 truncated")
    assert _memo.call(fit_critical_batch, B, S) == fit_critical_batch(B, S)
    assert pickle.loads(path.read_bytes()) == fit_critical_batch(B, S)


def key(*args, **kwargs):
    return _memo._key(train_many, *args, **kwargs)


@pytest.mark.parametrize("other", [
    dict(lrs=[0.1, 0.2000000001]),  # one float, in the last digits
    dict(lrs=np.array([0.1, 0.2])),  # the same values as another type
    dict(seeds=[0, 2]),
    dict(make_model=CNN1D),
    dict(data=(torch.zeros(4, 40), torch.tensor([0, 1, 2, 4]))),  # one label
    dict(data=(torch.zeros(4, 40, dtype=torch.float64), torch.tensor([0, 1, 2, 3]))),  # the dtype
    dict(cfg=replace(TrainConfig(), num_steps=1001)),  # one field of the dataclass
])
def test_any_change_in_an_argument_changes_the_key(other):
    base = dict(make_model=MLP, data=(torch.zeros(4, 40), torch.tensor([0, 1, 2, 3])), lrs=[0.1, 0.2], seeds=[0, 1],
                cfg=TrainConfig())
    assert key(**base) == key(**base)
    assert key(**{**base, **other}) != key(**base)


def test_the_thread_count_is_in_the_key():
    threads = torch.get_num_threads()
    before = key(MLP)
    try:
        torch.set_num_threads(threads + 1)
        assert key(MLP) != before
    finally:
        torch.set_num_threads(threads)
    assert key(MLP) == before


@pytest.mark.parametrize("arg", [lambda: MLP(), np.array([object()]), object()])
def test_arguments_without_an_exact_key_run_unmemoised(runs_dir, arg):
    with pytest.raises(_memo._Unkeyable):
        key(arg)
    assert _memo.call(median_steps, np.array([[1.0, 2.0, np.inf]])).tolist() == [2.0]  # a library function: kept
    assert _memo.call(np.median, [1.0, 2.0, 0.0]) == 1.0  # not the library's: run, nothing written
    assert len(files(runs_dir)) == 1


def test_cached_sweep_equals_the_sweep_and_a_repeat_trains_nothing(runs_dir):
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(256, 40, generator=g), torch.randint(0, 10, (256,), generator=g)
    kw = dict(batch_sizes=[16, 64], lrs=[0.05, 0.1, 0.2, 0.4], targets=[2.2], seeds=[0, 1],
              cfg=TrainConfig(eval_every=5), max_steps=300)
    plain = sweep_steps(MLP, (X, y, X, y), **kw)
    cached = sweep_steps(MLP, (X, y, X, y), cache=True, **kw)
    written = {p: p.stat().st_mtime_ns for p in files(runs_dir)}
    again = sweep_steps(MLP, (X, y, X, y), cache=True, **kw)
    assert written and {p: p.stat().st_mtime_ns for p in files(runs_dir)} == written
    for s in (cached, again):
        np.testing.assert_array_equal(s.steps, plain.steps)
        np.testing.assert_array_equal(s.best_lr, plain.best_lr)
        for p, q in zip(s.params, plain.params):
            assert all(torch.equal(p[n], q[n]) for n in q)
