"""Tests for robustness.py"""
import io
import json
from contextlib import redirect_stdout

import nbformat
import numpy as np
import pytest
import torch

from batchsize import robustness
from batchsize.robustness import Variant


def test_variant_names_round_trip():
    names = [v.name for v in robustness.default_matrix()]
    assert names == ["native-s0", "native-s1", "native-s2", "avx2-s0", "avx2-s1", "avx2-s2", "default-s0",
                     "default-s1", "default-s2", "native-s0-t1", "native-s0-load"]
    for v in robustness.default_matrix() + [Variant("avx2", 7, 2, True)]:
        assert robustness.parse_variant(v.name) == v
    assert Variant("avx2", 7, 2, True).name == "avx2-s7-t2-load"


@pytest.mark.parametrize("name", ["native", "native-s", "native-sx", "native-s0-load-t1", "Native-s0"])
def test_bad_variant_names(name):
    with pytest.raises(ValueError, match="variant name"):
        robustness.parse_variant(name)


def test_bad_variants():
    with pytest.raises(ValueError, match="unknown cpu"):
        robustness.parse_variant("sse4-s0")
    with pytest.raises(ValueError, match="threads"):
        robustness.parse_variant("native-s0-t0")
    with pytest.raises(ValueError, match="seed"):
        Variant(seed=-1)
    with pytest.raises(TypeError, match="seed"):
        Variant(seed="0")
    with pytest.raises(TypeError, match="threads"):
        Variant(threads=1.0)
    with pytest.raises(TypeError, match="load"):
        Variant(load=1)


def test_select_variants():
    assert robustness.select_variants() == robustness.default_matrix()
    assert [v.name for v in robustness.select_variants(cpus=["native", "avx2"], seeds=[1])] == ["native-s1",
                                                                                                "avx2-s1"]
    assert [v.name for v in robustness.select_variants(cpus=["default"], seeds=[0], threads=[1], load=True)] == [
        "default-s0-t1-load"]
    assert robustness.select_variants(["avx2-s1", "native-s0-t2"]) == [Variant("avx2", 1), Variant(threads=2)]


def test_env_for_each_cpu():
    base = {"PATH": "/bin", "ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    native = Variant().env(base)
    assert native == {"PATH": "/bin", "BATCHSIZE_SEED": "0"}
    assert Variant("avx2", 3).env(base) == {"PATH": "/bin", "BATCHSIZE_SEED": "3", "ATEN_CPU_CAPABILITY": "avx2",
                                            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    default = Variant("default", threads=2).env(base)
    assert (default["ATEN_CPU_CAPABILITY"], default["MKL_ENABLE_INSTRUCTIONS"], default["ONEDNN_MAX_CPU_ISA"]) == (
        "default", "AVX2", "SSE41")
    assert default["OMP_NUM_THREADS"] == default["MKL_NUM_THREADS"] == "2"
    assert base["ATEN_CPU_CAPABILITY"] == "avx512"  # the base is not changed


def synthetic_notebook():
    code = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("assert x < 1 is prose"),
        code("x = 1.5\ny = [1, 2, 3]"),
        code("%matplotlib inline\nassert x < 2, x\nassert 0 < y[0] <= 1\nassert len(y) == 3", metadata={
            "claims": ["F3", "A4"]}),
        code("assert all(v > 0 for v in y)\nassert (lambda: x > 0)()"),
        code("files = !ls\nassert files"),
        code("for v in y:\n    print(v)"),
    ]
    return nb


def test_assertion_cells_and_operands():
    nb = synthetic_notebook()
    cells = robustness.assertion_cells(nb)
    assert [c["index"] for c in cells] == [2, 3, 4]
    first = cells[0]
    assert first["claims"] == ["F3", "A4"] and first["id"] == nb.cells[2].id
    assert [(c["expr"], c["operands"], c["ops"]) for c in first["compares"]] == [
        ("x < 2", ["x", "2"], ["<"]), ("0 < y[0] <= 1", ["0", "y[0]", "1"], ["<", "<="]),
        ("len(y) == 3", ["len(y)", "3"], ["=="])]
    assert cells[1]["compares"] == [] and cells[1]["claims"] == []  # comparisons of local names are skipped
    assert cells[2]["compares"] == []  # does not parse even without its magic line: found by its assert line


def test_margin_sign():
    assert robustness.margin("<", 1.0, 3.0) == 2.0 and robustness.margin("<=", 3, 1) == -2.0
    assert robustness.margin(">", 5.0, 1.5) == 3.5 and robustness.margin(">=", 1, 2) == -1.0
    assert robustness.margin("==", 1.0, 1.0) is None
    assert robustness.margin("<", {"min": 0, "max": 1, "n": 2}, 3.0) is None and robustness.margin(">", None, 1) is None


def test_values_code_converts_numbers_arrays_and_the_rest():
    sources = ["a", "b", "t", "t0", "xs", "s", "nan", "missing", "flag", "big"]
    namespace = {"a": 2, "b": np.float32(0.5), "t": torch.tensor([1.0, 3.0], requires_grad=True),
                 "t0": torch.tensor(4.0), "xs": [1, 5, float("nan")], "s": "1.5", "nan": float("nan"), "flag": True,
                 "big": np.arange(6).reshape(2, 3)}
    code = robustness.VALUES_CODE.replace("MARKER", repr(robustness.MARKER)).replace("SOURCES", repr(sources))
    with redirect_stdout(io.StringIO()) as out:
        exec(code, namespace)
    line = out.getvalue().strip()
    assert line.startswith(robustness.MARKER)
    assert json.loads(line[len(robustness.MARKER):]) == {
        "a": 2.0, "b": 0.5, "t": {"min": 1.0, "max": 3.0, "n": 2}, "t0": 4.0, "xs": {"min": 1.0, "max": 5.0, "n": 3},
        "s": None, "nan": None, "missing": None, "flag": None, "big": {"min": 0.0, "max": 5.0, "n": 6}}
    assert "_robustness_values" not in namespace


def cell(id, status, values=(1.0, 2.0), margin=1.0):
    return {"id": id, "index": 3, "claims": ["F3"], "status": status, "ename": "AssertionError" if status == "failed"
            else None, "evalue": "x | y" if status == "failed" else None,
            "compares": [{"expr": "a < b", "operands": ["a", "b"], "ops": ["<"], "values": list(values),
                          "margin": margin}]}


def report(variants, date="2026-01-01T00:00:00"):
    prov = {"date": date, "git_commit": "0123456789abcdef", "dirty": True, "host cpu model": "Test CPU [x] | y",
            "cores": 2, "python": "3.11", "torch": "2.0", "numpy": "2.0"}
    return {"provenance": prov, "variants": {name: {"cpu": "native", "seed": 0, "threads": None, "load": False,
                                                    "capability": "AVX2", "note": None, "error": None,
                                                    "notebooks": notebooks} for name, notebooks in variants.items()}}


def test_merge_reports_replaces_only_the_new_entries(tmp_path):
    old = report({"native-s0": {"a.ipynb": {"seconds": 1, "cells": [], "error": None},
                                "b.ipynb": {"seconds": 2, "cells": [], "error": None}}})
    new = report({"native-s0": {"b.ipynb": {"seconds": 3, "cells": [], "error": "x"}},
                  "avx2-s0": {"a.ipynb": {"seconds": 4, "cells": [], "error": None}}}, date="2026-02-02T00:00:00")
    merged = robustness.merge_reports(old, new)
    assert merged["provenance"]["date"] == "2026-02-02T00:00:00"
    assert list(merged["variants"]) == ["native-s0", "avx2-s0"]
    assert {k: v["seconds"] for k, v in merged["variants"]["native-s0"]["notebooks"].items()} == {"a.ipynb": 1,
                                                                                                "b.ipynb": 3}
    assert old["variants"]["native-s0"]["notebooks"]["b.ipynb"]["seconds"] == 2  # the inputs are not changed
    assert robustness.merge_reports(None, new) == robustness.merge_reports({}, new)
    path = tmp_path / "sub" / "latest.json"
    assert robustness.load_report(path) is None
    robustness.write_report(path, merged)
    assert robustness.load_report(path) == merged and [p.name for p in path.parent.iterdir()] == ["latest.json"]


def test_summary_and_render_markdown(tmp_path, capsys):
    r = report({"native-s0": {"chapters/02_x.ipynb": {"seconds": 1.25, "cells": [cell("c1", "passed")],
                                                     "error": None}},
                "avx2-s0": {"chapters/02_x.ipynb": {"seconds": 2.5, "cells": [
                    cell("c1", "failed", values=({"min": 0.5, "max": 4.0, "n": 3}, 2.0), margin=np.float64(-2.0))],
                                                    "error": None}}})
    (row,) = robustness.summary(r)
    assert (row["passed"], row["failed"], row["not run"], row["failed variants"]) == (1, 1, 0, ["avx2-s0"])
    assert row["compares"][0]["operands"][0] == {"expr": "a", "min": 0.5, "max": 4.0} and row["min margin"] == -2.0
    text = robustness.render_markdown(r)
    assert "1 assertion cells × 2 variants: 1 failures." in text
    assert "| 02_x.ipynb | c1 | F3 | passed in 1/2 variants | avx2-s0 | -2 |" in text
    assert "| avx2-s0 | AVX2 | 0 | auto | no | 2.5 | 1 |  |" in text
    assert "Test CPU \\[x\\] \\| y" in text and "np.float64" not in text and "#" not in text
    assert all(line.count("|") - line.count("\\|") in (7, 9) for line in text.splitlines() if line.startswith("|"))
    path = tmp_path / "latest.json"
    assert robustness.main(["--report", "--output", str(path)]) == 1
    robustness.write_report(path, json.loads(json.dumps(r, default=float)))
    assert robustness.main(["--report", "--output", str(path)]) == 0
    assert "passed in 1/2 variants" in capsys.readouterr().out


def test_toc_notebooks_in_order():
    names = [p.name for p in robustness.toc_notebooks()]
    assert names[0] == "01_gradient_variance.ipynb" and all(n.endswith(".ipynb") for n in names)
    assert names.index("02_batch_size_tradeoffs.ipynb") < names.index("02b_generalization.ipynb") < names.index(
        "03_learning_rate_scaling.ipynb")


def test_end_to_end_one_kernel(tmp_path, kernel_start_lock):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nx = 1.5\nseed = int(os.environ['BATCHSIZE_SEED'])"),
                nbformat.v4.new_code_cell("assert x < 2 and seed == 0", metadata={"claims": ["T1"]}),
                nbformat.v4.new_code_cell("assert x * 2 > 4, 'too small'")]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    entry = robustness.execute_notebook(path, timeout=60, env=Variant().env(), kernel_lock=kernel_start_lock)
    assert entry["error"] is None
    passed, failed = entry["cells"]
    assert (passed["status"], passed["claims"], passed["index"]) == ("passed", ["T1"], 1)
    assert [(c["expr"], c["values"], c["margin"]) for c in passed["compares"]] == [("x < 2", [1.5, 2.0], 0.5),
                                                                                  ("seed == 0", [0.0, 0.0], None)]
    assert (failed["status"], failed["ename"], failed["evalue"]) == ("failed", "AssertionError", "too small")
    assert failed["compares"][0]["values"] == [3.0, 4.0] and failed["compares"][0]["margin"] == -1.0
    assert nbformat.read(path, 4) == nb  # the notebook on disk is left as it was


def test_render_markdown_counts_cells_not_run_and_harness_errors():
    r = report({"native-s0-t1": {"a.ipynb": {"seconds": 9.0, "cells": [cell("c1", "not run", values=(None, None),
                                                                            margin=None)], "error": "timed out"}}})
    text = robustness.render_markdown(r)
    assert "1 assertion cells × 1 variants: 0 failures, 1 not run." in text
    assert "| native-s0-t1 | AVX2 | 0 | auto | no | 9.0 | 0 | timed out |" in text
    assert "| passed in 0/1 variants | native-s0-t1 (not run) | – |" in text
