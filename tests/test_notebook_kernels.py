"""Tests for conftest.py: under the test command, every cell of a notebook runs in one kernel.

Each test runs pytest in a subprocess on two small notebooks whose later cells use names set by earlier ones,
with this repository's conftest.py and pytest settings (two xdist workers).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

# A plugin that tears the notebook's file collector down after every cell, as a scheduler that splits a
# notebook into single cells does: nbval then starts a new kernel for each cell.
SPLIT_CELLS_PLUGIN = '''
import pytest
from _pytest.runner import runtestprotocol

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    runtestprotocol(item, nextitem=None)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
'''


def write_project(tmp_path):
    """Two notebooks of three cells each, the repository's conftest.py and pytest settings."""
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("first", "second"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("answer = 41"),
                    nbformat.v4.new_code_cell("answer += 1"),
                    nbformat.v4.new_code_cell("assert answer == 42, answer")]
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    (tmp_path / "split_cells.py").write_text(SPLIT_CELLS_PLUGIN)


def run_pytest(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "first.ipynb", "second.ipynb", "-p", "no:cacheprovider",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})


def test_every_cell_of_a_notebook_runs_in_one_kernel(tmp_path):
    write_project(tmp_path)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "6 passed" in result.stdout, result.stdout[-3000:]


def test_a_notebook_that_starts_a_second_kernel_fails(tmp_path):
    write_project(tmp_path)
    result = run_pytest(tmp_path, "-p", "split_cells")
    assert result.returncode != 0, result.stdout[-3000:]
    assert "started kernel number 2 at Cell 1" in result.stdout, result.stdout[-3000:]


def test_nbval_kernels_run_as_another_machine_and_the_test_process_does_not(tmp_path):
    write_project(tmp_path)
    probe = nbformat.v4.new_notebook()
    probe.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    probe.cells = [nbformat.v4.new_code_cell(
        "import os, torch\n"
        "assert torch.backends.cpu.get_cpu_capability() in ('AVX2', 'DEFAULT'), torch.backends.cpu.get_cpu_capability()\n"
        "assert os.environ['BATCHSIZE_SEED'] == '1' and os.environ['ONEDNN_MAX_CPU_ISA'] == 'AVX2'")]
    nbformat.write(probe, tmp_path / "first.ipynb")
    env = {k: v for k, v in os.environ.items() if k not in ("BATCHSIZE_SEED", "ATEN_CPU_CAPABILITY",
                                                          "BATCHSIZE_NBVAL_VARIANT")}
    result = subprocess.run([sys.executable, "-m", "pytest", "first.ipynb", "-p", "no:cacheprovider", "-n", "0"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**env, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "BATCHSIZE_SEED" not in os.environ or os.environ["BATCHSIZE_SEED"] != "1"  # not leaked to this process
    native = subprocess.run([sys.executable, "-m", "pytest", "first.ipynb", "-p", "no:cacheprovider", "-n", "0"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**env, "PYTHONPATH": str(tmp_path), "BATCHSIZE_NBVAL_VARIANT": "native"})
    assert native.returncode != 0, native.stdout[-3000:]  # the plain environment has no BATCHSIZE_SEED
