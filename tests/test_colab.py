"""Tests for the install cell that opens every chapter notebook (the Colab / fresh-environment path).

Every notebook in chapters/ starts with the same code cell: when `batchsize` is missing it pip-installs
the library from the book's repository. These tests check that the cell is there, word for word, that
it names the repository of _config.yml, and that the command it runs really installs an importable
`batchsize`, using this checkout in place of GitHub.
"""
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from unittest import mock

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]

# The one canonical install cell. Every chapter notebook starts with exactly this source.
INSTALL_CELL = '''\
# Colab or a fresh environment: install the book's library (batchsize) when it is missing.
import importlib.util, subprocess, sys
if importlib.util.find_spec("batchsize") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "batchsize @ git+https://github.com/batch-size-book/batch-size-book"], check=True)'''
INSTALL_REQUIREMENT = f"batchsize @ git+{REPOSITORY_URL}"

NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_install_cell_names_the_configured_repository():
    assert INSTALL_REQUIREMENT in INSTALL_CELL, (
        f"the install cell does not install from _config.yml's repository.url ({REPOSITORY_URL})")


def test_there_are_chapter_notebooks():
    assert NOTEBOOKS, "no notebooks in chapters/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_the_install_cell(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "code", "the first cell is not a code cell"
    assert first.source == INSTALL_CELL, "the first cell is not the canonical install cell"
    assert "remove-cell" in first.metadata.get("tags", []), "the install cell is not tagged remove-cell"


def run_install_cell(missing):
    """Execute the install cell; return the argv lists it passed to subprocess.run."""
    real_find_spec = importlib.util.find_spec
    calls = []

    def find_spec(name, *args, **kwargs):
        return None if name == "batchsize" and missing else real_find_spec(name, *args, **kwargs)

    def run(argv, *args, **kwargs):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0)

    with mock.patch("importlib.util.find_spec", find_spec), mock.patch("subprocess.run", run):
        exec(compile(INSTALL_CELL, "<install cell>", "exec"), {})
    return calls


def test_install_cell_does_nothing_when_batchsize_is_installed():
    assert run_install_cell(missing=False) == []


def local_requirement(tmp_path):
    """This checkout as a pip requirement: the committed repository, or a copy of the work tree.

    pip clones a git+file:// URL, just as it clones GitHub in Colab. Without a commit, or when the
    library's files differ from HEAD, the library's files (pyproject.toml and lib/) are copied and
    installed from a local path instead (building in the checkout itself would leave build/ there).
    """
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)

    has_head = git("rev-parse", "--verify", "HEAD").returncode == 0
    clean = has_head and git("status", "--porcelain", "--", "pyproject.toml", "lib").stdout == ""
    if has_head and clean and shutil.which("git"):
        # With a host: pip's requirement parser rejects a git+file URL with an empty one.
        return f"batchsize @ git+file://localhost{ROOT.as_posix()}"
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source / "pyproject.toml")
    shutil.copytree(ROOT / "lib", source / "lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return str(source)


def site_packages():
    """The directories that hold torch, numpy and the rest of the installed dependencies."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    return list(dict.fromkeys(d for d in dirs if Path(d).is_dir()))


def import_batchsize(pythonpath):
    """Import batchsize in a fresh interpreter that sees only pythonpath (no .pth, no editable install)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), "PYTHONNOUSERSITE": "1"}
    code = "import batchsize, batchsize.grads; print(batchsize.__file__)"
    # -S: no site module, so the .pth file of `pip install -e .` is never read; -s: no user site.
    return subprocess.run([sys.executable, "-S", "-s", "-c", code], capture_output=True, text=True,
                          env=env, cwd=str(ROOT.parent), timeout=300)


def test_install_cell_installs_batchsize_when_missing(tmp_path):
    calls = run_install_cell(missing=True)
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", INSTALL_REQUIREMENT]]

    # Run the same pip command against this checkout, into an empty target directory.
    argv = calls[0]
    argv[argv.index(INSTALL_REQUIREMENT)] = local_requirement(tmp_path)
    target = tmp_path / "site"
    argv += ["--no-deps", "--no-build-isolation", "--disable-pip-version-check", "--target", str(target)]
    installed = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert installed.returncode == 0, installed.stdout + installed.stderr

    # Without the fresh copy batchsize cannot be imported; with it, it comes from that copy.
    without = import_batchsize(site_packages())
    assert without.returncode != 0, f"batchsize importable without the install: {without.stdout}"
    with_copy = import_batchsize([target, *site_packages()])
    assert with_copy.returncode == 0, with_copy.stderr
    assert Path(with_copy.stdout.strip()).resolve().is_relative_to(target.resolve())
