"""Tests for the install cell that opens every chapter notebook (the Colab / fresh-environment path).

Every notebook in chapters/ starts with the same code cell: when `batchsize` is missing it pip-installs
the library from the book's repository. These tests check that the cell is there, word for word, that
it names the repository of _config.yml, that the command it runs really installs an importable
`batchsize`, using this checkout in place of GitHub, and that what it installs is all that the chapters
need: every chapter runs top to bottom in a fresh virtual environment holding only that and a kernel
(`test_chapter_runs_in_a_fresh_environment_from_a_copy`, one test per chapter, in the order of _toc.yml; select
them with `-k fresh_environment`). The kernels share this environment's library cache (generated MNIST-1D and the
memoised sweeps, `batchsize.data.cache_dir()`): what the test proves is that the installs, imports and files a
chapter needs are there, and a cache changes none of them, only the time (the book's build, which CI runs first,
starts from an empty one). With an empty cache of their own the chapters took 13.5 minutes on 2 busy cores.
"""
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from unittest import mock

import nbformat
import pytest
import yaml

from batchsize.data import cache_dir

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]

# The one canonical install cell. Every chapter notebook starts with exactly this source
# (as `ruff format` writes it: tests/test_notebook_format.py).
INSTALL_CELL = '''\
# Colab or a fresh environment: install the book's library (batchsize) if it is missing.
import importlib.util, subprocess, sys

if importlib.util.find_spec("batchsize") is None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "batchsize @ git+https://github.com/batch-size-book/batch-size-book",
        ],
        check=True,
    )'''
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


# ---------------------------------------------------------------------------------------------------------------
# Every chapter in a fresh environment holding only what the install cell installs, run from outside the repository

def toc_chapters():
    """The chapter notebooks in the order of _toc.yml (the order a reader meets them)."""
    def files(entries):
        for entry in entries:
            if "file" in entry:
                yield entry["file"]
            yield from files(entry.get("sections", []))
            yield from files(entry.get("chapters", []))

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [f"{Path(f).name}.ipynb" for f in files(toc.get("parts", [])) if f.startswith("chapters/")]


def test_the_toc_lists_every_chapter_notebook():
    assert sorted(toc_chapters()) == [p.name for p in NOTEBOOKS]


# What the front end brings besides the install cell: a kernel. The rest of what a chapter imports must come with
# batchsize (pyproject.toml's dependencies and theirs).
FRONT_END = ["ipykernel"]
# Library modules that the chapters never import, with dependencies of their own ("imported on their own").
OWN_DEPENDENCIES = {"coursework", "robustness", "_kernel_polls"}
# Imported only where they are there: myst_nb by prose.Quoted inside the book's build (prose.BUILD_ENV) alone.
ONLY_WHERE_PRESENT = {"myst_nb"}


def imported_modules(source):
    """The top-level names of every module that a cell or a module imports, functions' imports too."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:  # magics or shell escapes: read the cell as IPython does
        from IPython.core.inputtransformer2 import TransformerManager
        tree = ast.parse(TransformerManager().transform_cell(source))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module.split(".")[0])
    return names


def distributions_brought(requirements):
    """Canonical names of the distributions that installing `requirements` brings (the closure, in this env)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(req.name) or []:
            sub = Requirement(line)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                todo.append(sub)
    return seen


def test_chapters_import_only_what_batchsize_and_a_kernel_bring():
    """A fast, static check of what the fresh-venv test below checks by running: every module that a chapter
    or the library imports (in its functions too) is Python's own, batchsize, or comes with a distribution that
    batchsize's dependencies or the front end's kernel bring."""
    import tomllib
    from importlib import metadata

    from packaging.utils import canonicalize_name

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    brought = distributions_brought([*dependencies, *FRONT_END])
    providers = metadata.packages_distributions()
    sources = {f"{p.name}, cell {c.get('id')}": c.source for p in NOTEBOOKS
               for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"}
    sources |= {f"lib/batchsize/{p.name}": p.read_text() for p in sorted((ROOT / "lib" / "batchsize").glob("*.py"))
                if p.stem not in OWN_DEPENDENCIES}
    problems = []
    for where, source in sources.items():
        for module in sorted(imported_modules(source) - set(sys.stdlib_module_names) - {"batchsize"}
                             - ONLY_WHERE_PRESENT):
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            if not dists & brought:
                problems.append(f"{where} imports {module} (from {sorted(dists) or 'no installed distribution'}), "
                                f"which neither batchsize's dependencies nor {FRONT_END} bring: add it to "
                                "pyproject.toml's dependencies")
    assert not problems, "\n".join(problems)
    assert {"torch", "numpy", "ipython"} <= brought  # the closure is read at all


def fresh_environment(venv, cache):
    """A reader's environment for the fresh venv: its bin/ first on PATH, none of this process's Python paths,
    none of the book build's, nbval's or the test workers' settings but their one thread, and the library cache
    `cache`."""
    drop = ("PYTHON", "VIRTUAL_ENV", "CONDA", "BATCHSIZE_", "JUPYTER", "IPYTHON", "MPL", "OMP_", "MKL_",
            "ATEN_", "ONEDNN_", "PYTEST", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    ours = Path(sys.prefix).resolve()  # this process's environment: its bin/ leaves PATH too
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p).resolve().is_relative_to(ours)]
    env.update(VIRTUAL_ENV=str(venv), PATH=os.pathsep.join([str(venv / "bin"), *path]), PYTHONNOUSERSITE="1",
               BATCHSIZE_CACHE=str(cache))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The other test worker runs a kernel on the other core: one thread, as every kernel of the test session
        # has (conftest.py). A second thread on a busy core stalls OpenMP's barriers, and the chapter with them.
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def lock_constraints(path):
    """requirements.txt, the lock, as a pip constraints file (pip takes no editable `-e .` as a constraint)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    path.write_text("\n".join(line for line in lines if not line.lstrip().startswith("-e")) + "\n")
    return path


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A new virtual environment holding ipykernel and what the install cell installs, nothing else.

    `python -m venv` gives an environment with pip only. Into it go: ipykernel, the one thing a notebook
    front end brings of its own (Colab has it; a kernel needs it), then the install cell's very command run
    by the venv's Python, with this checkout in place of GitHub (`local_requirement`). Both installs are
    constrained to the lock, requirements.txt (`-c`): a reader's Colab already has a torch, and the lock's
    torch==2.13.0 is the CPU wheel this machine holds, so nothing of CUDA is downloaded and the install stays
    offline but for the package registry. Yields (venv folder, its python, environment for its kernels).
    """
    tmp = tmp_path_factory.mktemp("fresh")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, capture_output=True)
    python = venv / "bin" / "python"
    env = fresh_environment(venv, cache_dir())  # this environment's cache (see the module docstring)
    constraints = ["-c", str(lock_constraints(tmp / "constraints.txt"))]

    def pip(argv):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=str(tmp), env=env)
        assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    pip([str(python), "-m", "pip", "install", "-q", "ipykernel", *constraints])
    [argv] = run_install_cell(missing=True)
    assert argv[0] == sys.executable
    argv = [str(python), *argv[1:]]
    argv[argv.index(INSTALL_REQUIREMENT)] = local_requirement(tmp)
    pip(argv + constraints)

    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                               env=env, timeout=300, check=True)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert "batchsize" in names and "torch" in names and "ipykernel" in names, sorted(names)
    assert not names & {"nbformat", "nbclient", "myst-nb", "jupyter-book", "nbval", "pytest"}, sorted(names)
    yield venv, python, env


def fresh_kernel_manager(python, kernels):
    """A kernel manager whose kernels run `python` (the fresh venv's), through a kernel spec in `kernels`."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec = kernels / "fresh-venv"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    return AsyncKernelManager(kernel_name="fresh-venv",
                              kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))


# Printed by a cell appended to each chapter: where the kernel's Python and the library it imported live.
PROBE = """import importlib.util, json, os, sys, batchsize
print("@@probe@@" + json.dumps({"executable": sys.executable, "prefix": sys.prefix, "cwd": os.getcwd(),
      "batchsize": batchsize.__file__, "path": sys.path,
      "absent": [m for m in ("myst_nb", "nbformat", "nbclient", "pytest") if importlib.util.find_spec(m) is None]}))"""


def cell_seconds(cell):
    """Seconds a cell executed, from the timestamps nbclient records in its metadata (0 for a markdown cell)."""
    from datetime import datetime

    times = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in times or "shell.execute_reply" not in times:
        return 0.0
    begin, end = (datetime.fromisoformat(times[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - begin).total_seconds()


@pytest.mark.parametrize("name", toc_chapters())
def test_chapter_runs_in_a_fresh_environment_from_a_copy(name, fresh_venv, tmp_path, kernel_start_lock):
    """The chapter, top to bottom (600 s a cell at most), in a kernel of the fresh venv with a reader's
    defaults, from a copy of the notebook alone in a folder outside the repository, as in Colab."""
    from nbclient import NotebookClient

    venv, python, env = fresh_venv
    folder = tmp_path / "reader"
    folder.mkdir()
    assert not folder.resolve().is_relative_to(ROOT)
    shutil.copy(ROOT / "chapters" / name, folder / name)
    nb = nbformat.read(folder / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(folder)}})
    client.km = fresh_kernel_manager(python, tmp_path / "kernels")
    start = time.perf_counter()
    with kernel_start_lock:  # kernels start one at a time on this machine (conftest.py)
        client.start_new_kernel(env=env)
        client.start_new_kernel_client()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError, with the traceback, if a cell raises
    seconds = time.perf_counter() - start
    slowest = max(nb.cells[:-1], key=cell_seconds)
    print(f"{name}: {seconds:.0f} s in the fresh venv; slowest cell {slowest.get('id')!r}, "
          f"{cell_seconds(slowest):.0f} s (the limit is 600 s)")

    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    probe = json.loads(text.split("@@probe@@", 1)[1])
    assert probe["executable"] == str(python) and Path(probe["prefix"]).resolve() == venv.resolve(), probe
    assert Path(probe["cwd"]).resolve() == folder.resolve(), probe
    assert Path(probe["batchsize"]).resolve().is_relative_to(venv.resolve()), probe  # installed, not this checkout
    elsewhere = [p for p in probe["path"] if p and any(Path(p).resolve().is_relative_to(d) for d in
                                                        (ROOT, Path(sys.prefix).resolve()))]
    assert not elsewhere, f"the kernel imports from this checkout or the test's environment: {elsewhere}"
    assert sorted(probe["absent"]) == ["myst_nb", "nbclient", "nbformat", "pytest"], probe
