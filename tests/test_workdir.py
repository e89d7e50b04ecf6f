"""Chapters run from any working directory: the chapters and the library find their files through the package.

A reader who downloads a chapter, or opens it in Colab, runs it from a folder that is not chapters/ of this
repository. These tests run chapter 5 and the part of chapter 4 that reads the recorded results from a copy
outside the repository, in a kernel that imports the library of this checkout (the test process's own), and
check that they show what they show inside the repository: chapter 5's table names the chapters and its exercise
finds the claims tested in several chapters; chapter 4 lists the results of the package's results/ folder, says
so when that folder is empty, and raises when it is missing.
"""
import ast
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from batchsize import claims, hardware

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
MARKER = "@@where@@"
WHERE_CODE = f"import json, os, batchsize\nprint({MARKER!r} + json.dumps([os.getcwd(), batchsize.__file__]))"


def outside(tmp_path, *names):
    """A folder outside the repository holding copies of the chapter notebooks `names`."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert not folder.resolve().is_relative_to(ROOT), "the temporary folder lies inside the repository"
    for name in names:
        shutil.copy(CHAPTERS / name, folder / name)
    return folder


class Kernel:
    """One kernel running cells of a notebook, started in folder under the machine-wide kernel start lock."""

    def __init__(self, nb, folder, lock, env=None):
        self.nb = nb
        self.client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
        self.client.km = self.client.create_kernel_manager()
        with lock:
            self.client.start_new_kernel(**({} if env is None else {"env": env}))
            self.client.start_new_kernel_client()

    def run(self, cell):
        """Execute one cell (a NotebookNode of self.nb); raises CellExecutionError if it raises."""
        cell.outputs = []
        self.client.execute_cell(cell, self.nb.cells.index(cell))
        return cell

    def where(self):
        """(working directory, batchsize.__file__) of the kernel."""
        cell = nbformat.v4.new_code_cell(WHERE_CODE)
        self.nb.cells.append(cell)
        line = [x for x in text(self.run(cell)).splitlines() if x.startswith(MARKER)][-1]
        return tuple(json.loads(line[len(MARKER):]))


def text(cell):
    """Everything a cell printed or displayed as text or markdown."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(out.data.get("text/markdown", out.data.get("text/plain", "")))
    return "".join(parts)


def by_id(nb, cell_id):
    cells = [c for c in nb.cells if c.get("id") == cell_id]
    assert len(cells) == 1, f"no single cell {cell_id!r}"
    return cells[0]


@pytest.fixture
def reader_env():
    """The test process's environment (this checkout's library) without the book build's or nbval's variables."""
    drop = {"BATCHSIZE_BOOK_BUILD", "BATCHSIZE_SEED", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
            "ONEDNN_MAX_CPU_ISA"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_chapter_5_runs_from_a_copy_outside_the_repository(tmp_path, kernel_start_lock, reader_env):
    folder = outside(tmp_path, "05_claims.ipynb")
    nb = nbformat.read(folder / "05_claims.ipynb", as_version=4)
    kernel = Kernel(nb, folder, kernel_start_lock, reader_env)
    with kernel.client.setup_kernel():
        for cell in list(nb.cells):
            if cell.cell_type == "code":
                kernel.run(cell)  # every cell, top to bottom; a cell that raises fails the test here
        cwd, library = kernel.where()
    assert Path(cwd).resolve() == folder.resolve()
    assert Path(library).resolve().parent == Path(claims.__file__).resolve().parent  # this checkout's library

    table = text(by_id(nb, "c5-06"))
    assert table == claims.claims_table(claims.load_claims(), CHAPTERS, in_book=False)
    for name in ("01_gradient_variance.ipynb", "02_batch_size_tradeoffs.ipynb", "04_hardware.ipynb"):
        assert f"[{claims.notebook_title(CHAPTERS / name)}]({name}#" in table, name

    # The exercise's solution finds the claims tested in more than one chapter, as it does in chapters/.
    where = {}
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        for claim_id, _ in claims.verdict_rows(path):
            where.setdefault(claim_id, set()).add(path.stem)
    expected = {k: sorted(v) for k, v in where.items() if len(v) > 1}
    assert len(expected) > 3, expected
    assert ast.literal_eval(text(by_id(nb, "c5-12")).strip()) == expected


RESULTS_CELL = "9d9ff5d7"  # chapter 4's cell that reads the recorded results
IMPORTS_CELL = "65801648"  # chapter 4's imports (hardware, quote, Markdown, display)


def fake_result(device_name, quick=False):
    provenance = {"device": "cuda", "device_name": device_name, "memory_bytes": 80 * 2**30, "torch": "2.13.0",
                  "cuda": "12.8", "dtype": "float32", "date": "2026-01-02"}
    return json.dumps({"provenance": provenance, "quick": quick})


def test_chapter_4_reads_the_package_results_from_a_copy_outside_the_repository(tmp_path, kernel_start_lock,
                                                                                  reader_env):
    # A copy of the library, so that its results/ folder can hold a result, be empty and be missing.
    lib = tmp_path / "lib"
    shutil.copytree(Path(hardware.__file__).parent, lib / "batchsize",
                    ignore=shutil.ignore_patterns("__pycache__"))
    results = lib / "batchsize" / "results"
    for path in results.glob("*.json"):
        path.unlink()
    (results / "nvidia-test-gpu.json").write_text(fake_result("NVIDIA Test GPU"))
    (results / "cpu-quick.json").write_text(fake_result("a quick run", quick=True))
    env = {**reader_env, "PYTHONPATH": os.pathsep.join([str(lib), reader_env.get("PYTHONPATH", "")])}

    folder = outside(tmp_path, "04_hardware.ipynb")
    chapter = nbformat.read(folder / "04_hardware.ipynb", as_version=4)
    nb = nbformat.v4.new_notebook(metadata=chapter.metadata)
    nb.cells = [by_id(chapter, IMPORTS_CELL), by_id(chapter, RESULTS_CELL),
                nbformat.v4.new_code_cell("print(quote.num_recorded)")]
    imports, cell, count = nb.cells
    kernel = Kernel(nb, folder, kernel_start_lock, env)
    with kernel.client.setup_kernel():
        cwd, library = kernel.where()
        assert Path(cwd).resolve() == folder.resolve()
        assert Path(library).resolve().parent == (lib / "batchsize").resolve()  # the copy of the library
        kernel.run(imports)

        shown = text(kernel.run(cell))  # one recorded result (the quick one is left out)
        assert "NVIDIA Test GPU" in shown and "nvidia-test-gpu.json" in shown and "quick" not in shown, shown
        assert text(kernel.run(count)).strip() == "1"

        for path in results.glob("*.json"):  # an empty folder: no recorded results, said so
            path.unlink()
        shown = text(kernel.run(cell))
        assert "No GPU results are recorded yet" in shown, shown
        assert text(kernel.run(count)).strip() == "0"

        shutil.rmtree(results)  # a missing folder: an error that says where it looked, not an empty list
        with pytest.raises(CellExecutionError, match="FileNotFoundError") as info:
            kernel.run(cell)
        assert str(results) in str(info.value) and "benchmarks/hardware.py" in str(info.value)
