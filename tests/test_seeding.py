"""Tests for seeding.py"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from batchsize import _memo, seeding, train
from batchsize.data import load_mnist1d
from batchsize.models import MLP


def test_replicate_zero_leaves_every_seed_as_it_is(monkeypatch):
    monkeypatch.delenv("BATCHSIZE_SEED", raising=False)
    assert seeding.replicate() == 0 and seeding.seed(5) == 5
    assert seeding.manual_seed(3) == 3
    a = torch.rand(4)
    torch.manual_seed(3)
    np.testing.assert_array_equal(a, torch.rand(4))
    np.testing.assert_array_equal(seeding.default_rng(2).random(3), np.random.default_rng(2).random(3))
    np.testing.assert_array_equal(torch.rand(3, generator=seeding.generator(2)),
                                  torch.rand(3, generator=torch.Generator().manual_seed(2)))


def test_a_replicate_shifts_every_seed_by_its_stride(monkeypatch):
    monkeypatch.setenv("BATCHSIZE_SEED", "2")
    assert seeding.seed(5) == 5 + 2 * seeding.STRIDE
    np.testing.assert_array_equal(seeding.default_rng(1).random(3),
                                  np.random.default_rng(1 + 2 * seeding.STRIDE).random(3))


@pytest.mark.parametrize("text", ["-1", "one", "1.5"])
def test_a_bad_replicate_is_refused(monkeypatch, text):
    monkeypatch.setenv("BATCHSIZE_SEED", text)
    with pytest.raises(ValueError, match="BATCHSIZE_SEED must be a whole number"):
        seeding.replicate()


def test_a_bad_seed_is_refused():
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="a seed must be a whole number"):
            seeding.seed(bad)


def test_training_under_another_replicate_is_an_independent_run_and_is_keyed_apart(monkeypatch):
    X, y, X_test, y_test = load_mnist1d()
    data = (X[:256], y[:256], X_test[:64], y_test[:64])
    cfg = train.TrainConfig(batch_size=32, num_steps=8, eval_every=8, progress=False)
    monkeypatch.delenv("BATCHSIZE_SEED", raising=False)
    base = train.train_many(MLP, data, [0.1], [0, 1], cfg)
    key0 = _memo._key(train.train_many, MLP, data, [0.1], [0, 1], cfg)
    monkeypatch.setenv("BATCHSIZE_SEED", "1")
    other = train.train_many(MLP, data, [0.1], [0, 1], cfg)
    key1 = _memo._key(train.train_many, MLP, data, [0.1], [0, 1], cfg)
    assert key0 != key1
    assert not np.allclose(base.train_loss, other.train_loss)
    # replicate 1's seed 0 is seed STRIDE of replicate 0: the same run, bit for bit
    monkeypatch.delenv("BATCHSIZE_SEED")
    same = train.train_many(MLP, data, [0.1], [seeding.STRIDE, seeding.STRIDE + 1], cfg)
    np.testing.assert_array_equal(same.train_loss, other.train_loss)


RAW_SEEDING = re.compile(r"(?<![\w.])torch\.manual_seed\(|np\.random\.default_rng\(|np\.random\.seed\(|"
                         r"torch\.Generator\([^)]*\)\.manual_seed\(")


def test_every_seed_of_the_chapters_and_the_library_goes_through_seeding():
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in sorted((root / "chapters").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
            if cell["cell_type"] == "code" and RAW_SEEDING.search("".join(cell["source"])):
                offenders.append(f"{path.name} cell {cell.get('id')}")
    # data.py and language.py draw the data sets (MNIST-1D, the synthetic language), fixed across replicates
    for path in sorted((root / "lib" / "batchsize").glob("*.py")):
        if path.name not in ("seeding.py", "data.py", "language.py") and RAW_SEEDING.search(path.read_text(encoding="utf8")):
            offenders.append(path.name)
    assert not offenders, f"seed these with batchsize.seeding (BATCHSIZE_SEED must reach them): {offenders}"
