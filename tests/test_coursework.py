"""Tests for coursework.py: every lab builds (its solutions pass every test), a blank student notebook runs top to
bottom and scores zero, each planted wrong answer fails its question, and no solution reaches the student edition.

Each lab is built once and graded twice (blank, and one copy with every wrong answer planted), the gradings two at
a time: otter-grader grades without Docker, one notebook execution per grading.
"""
import importlib.util
import json
import re
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import yaml

from batchsize import coursework

ROOT = Path(__file__).resolve().parents[1]
MASTERS = coursework.find_assignments(ROOT / "coursework")
NAMES = [m.stem for m in MASTERS]
TIMES = {}  # seconds of each stage, printed at the end of the module (pytest -s)


def _meta(name):
    return json.loads((ROOT / "coursework" / f"{name}.ipynb").read_text())["metadata"]["coursework"]


def _questions(edition):
    """Auto-graded questions of a lab: the test files in its autograder zip."""
    with zipfile.ZipFile(edition.autograder) as z:
        return sorted(Path(n).stem for n in z.namelist() if re.fullmatch(r"tests/\w+\.py", n))


def _plant(edition, out):
    """A copy of the solutions notebook with each question's wrong answer run just before its check cell."""
    nb = nbformat.read(edition.solutions, as_version=4)
    wrong = _meta(edition.name)["wrong_answers"]
    cells = []
    for cell in nb.cells:
        match = re.fullmatch(r'grader\.check\("(\w+)"\)', cell.source.strip())
        if cell.cell_type == "code" and match and match.group(1) in wrong:
            cells.append(nbformat.v4.new_code_cell(wrong[match.group(1)]))
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, out)
    return out


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    """Each lab built once, then graded blank and with every wrong answer planted; labs in parallel (3 workers:
    much of each job is waiting for a kernel). {name: (Edition, blank scores, planted scores)}, where scores are
    {question: (score, possible)}."""
    out, planted = tmp_path_factory.mktemp("coursework"), tmp_path_factory.mktemp("planted")

    def run(name):
        start = time.perf_counter()
        (e,) = coursework.build(out, ROOT / "coursework", names=[name], workers=1, overwrite=True).values()
        TIMES[f"{name}: otter assign (solutions checked)"] = time.perf_counter() - start
        start = time.perf_counter()
        blank = coursework.grade(e.student, e.autograder, debug=True)  # debug: a cell that raises fails
        TIMES[f"{name}: grade the blank student notebook"] = time.perf_counter() - start
        start = time.perf_counter()
        wrong = coursework.grade(_plant(e, planted / f"{name}.ipynb"), e.autograder)
        TIMES[f"{name}: grade the planted copy"] = time.perf_counter() - start
        return name, (e, blank, wrong)

    start = time.perf_counter()
    with ThreadPoolExecutor(3) as pool:  # threads only wait on child processes
        results = dict(pool.map(run, NAMES))
    TIMES["all labs"] = time.perf_counter() - start
    yield results
    print("\n" + "\n".join(f"{k}: {v:.1f} s" for k, v in TIMES.items()))
    for name, (_, blank, wrong) in results.items():
        show = lambda scores: ", ".join(f"{q} {s:g}/{p:g}" for q, (s, p) in sorted(scores.items()))
        print(f"{name}: blank {show(blank)}; planted {show(wrong)}")


@pytest.fixture(scope="module")
def built(labs):
    return {name: e for name, (e, _, _) in labs.items()}


@pytest.fixture(scope="module")
def graded(labs):
    return {name: (blank, wrong) for name, (_, blank, wrong) in labs.items()}


def test_every_lessons_chapter_has_a_lab():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    (lessons,) = [p for p in toc["parts"] if p["caption"] == "Lessons"]
    chapters = [Path(c["file"]).name for c in lessons["chapters"]]
    assert chapters and sorted(chapters) == sorted(NAMES), (chapters, NAMES)
    for name in NAMES:
        meta = _meta(name)
        assert meta["chapter"] == f"chapters/{name}" and 60 <= meta["minutes"] <= 120, meta


@pytest.mark.parametrize("name", NAMES)
def test_solutions_pass_and_every_edition_is_written(built, name):
    e = built[name]  # build() raises if otter assign found a failing test on the solutions
    for path in (e.student, e.solutions, e.autograder, e.rubric):
        assert path is not None and path.exists(), path
    questions = _questions(e)
    assert 4 <= len(questions) + 1 <= 6, questions  # plus one hand-graded question
    student = json.loads(e.student.read_text())
    assert set(student["metadata"]["otter"]["tests"]) == set(questions)  # a public test for every question
    assert coursework.METADATA_KEY not in student["metadata"]
    first = student["cells"][0]  # installs what is missing (Colab), then starts the checker
    source = "".join(first["source"])
    assert first["cell_type"] == "code" and "pip" in source and "otter-grader" in source, source
    for q in questions:
        assert any("".join(c["source"]).strip() == f'grader.check("{q}")' for c in student["cells"]), q
    with zipfile.ZipFile(e.autograder) as z:
        for q in questions:
            text = z.read(f"tests/{q}.py").decode()
            assert "hidden=True" in text and "hidden=False" in text, (q, "needs public and hidden tests")


@pytest.mark.parametrize("name", NAMES)
def test_blank_student_notebook_runs_and_scores_zero(graded, name):
    blank, _ = graded[name]
    assert blank and all(score == 0 for score, _ in blank.values()), blank


@pytest.mark.parametrize("name", NAMES)
def test_each_planted_wrong_answer_fails_its_question(built, graded, name):
    _, planted = graded[name]
    wrong = _meta(name)["wrong_answers"]
    assert sorted(wrong) == _questions(built[name]), "every auto-graded question needs a planted wrong answer"
    for q in wrong:
        score, possible = planted[q]
        assert score < possible, (q, planted[q])


def _solution_text(master):
    """Lines of the master notebook's solutions that the student edition must not contain (given code excluded)."""
    nb = json.loads(master.read_text())
    texts, given, inside = [], [], False
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "raw":
            inside = {"# BEGIN SOLUTION": True, "# END SOLUTION": False}.get(src.strip(), inside)
            continue
        if not inside:
            given.append(src)
            continue
        if cell["cell_type"] == "markdown":
            texts += [line.strip() for line in src.splitlines() if len(line.strip()) > 20]
            continue
        block = False
        for line in src.splitlines():
            s = line.strip()
            if s.startswith("# BEGIN SOLUTION"):
                block = True
            elif s.startswith("# END SOLUTION"):
                block = False
            elif block and len(s) > 8:
                texts.append(s)
            elif not block and "# SOLUTION" not in s:
                given.append(s)
            elif re.search(r"# SOLUTION( NO PROMPT)?$", s):
                code = re.sub(r"\s*# SOLUTION( NO PROMPT)?$", "", s)
                texts.append(code.split("=", 1)[1].strip() if re.match(r"[\w., ]+=[^=]", code) else code)
    given = "\n".join(given)
    return [t for t in texts if t not in given]


@pytest.mark.parametrize("name", NAMES)
def test_no_solution_or_hidden_test_reaches_the_student_edition(built, name):
    e = built[name]
    student = json.loads(e.student.read_text())
    corpus = "\n".join("".join(c["source"]) for c in student["cells"])
    corpus += "\n".join(student["metadata"]["otter"]["tests"].values())
    texts = _solution_text(ROOT / "coursework" / f"{name}.ipynb")
    assert texts
    leaked = [t for t in texts if t in corpus]
    assert not leaked, leaked
    with zipfile.ZipFile(e.autograder) as z:
        hidden = [m for q in _questions(e) for m in
                  re.findall(r"hidden=True.*?\)\ndef (\w+)", z.read(f"tests/{q}.py").decode(), re.S)]
    assert hidden and not [h for h in hidden if h in corpus], hidden
    assert "wrong_answers" not in e.student.read_text()


def test_checker_reads_the_public_tests_in_colab(built, tmp_path, monkeypatch):
    """In Colab the notebook is not a file: the checker takes its public tests from the running notebook."""
    e = next(iter(built.values()))
    student = json.loads(e.student.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(coursework, "_in_colab", lambda: True)
    monkeypatch.setattr(coursework, "_colab_notebook", lambda: student)
    grader = coursework.checker(e.student.name)
    q = sorted(student["metadata"]["otter"]["tests"])[0]
    result = grader.check(q, global_env={})  # nothing answered: reported, not raised
    assert not result.passed_all_public
    assert (tmp_path / "tests" / f"{q}.py").exists()


def test_find_assignments_rejects_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        coursework.find_assignments(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no master notebooks"):
        coursework.build(tmp_path / "out", folder=tmp_path)


def test_build_refuses_a_folder_that_is_not_empty(tmp_path):
    """Nothing is built over a reader's files unless asked (overwrite=True, --overwrite)."""
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not empty: give an empty or new folder, or overwrite=True"):
        coursework.build(tmp_path, ROOT / "coursework", names="01_gradient_variance")
    out = subprocess.run([sys.executable, "-m", "batchsize.coursework", "build", str(tmp_path), "--no-run-tests"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and out.stderr.startswith("error: out_dir") and "Traceback" not in out.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_build_takes_a_string_as_one_lab(tmp_path):
    with pytest.raises(ValueError, match=r"no lab named \['no_such_lab'\]"):  # not one name per character
        coursework.build(tmp_path / "out", ROOT / "coursework", names="no_such_lab")
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        coursework.build(tmp_path / "out", ROOT / "coursework", workers=0)


def test_import_batchsize_does_not_import_otter():
    code = "import sys, batchsize, batchsize.coursework; assert 'otter' not in sys.modules"
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="needs Sphinx")
def test_site_extension_publishes_student_notebooks_only(built, tmp_path):
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        import coursework_downloads
    finally:
        sys.path.pop(0)
    out = tmp_path / "html"
    published = coursework_downloads.publish(next(iter(built.values())).student.parents[1], out)
    assert sorted(p.name for p in published) == sorted(f"{n}.ipynb" for n in NAMES)
    assert all(p.parent == out / "coursework" for p in published)
    assert not list(out.rglob("*.zip")) and "wrong_answers" not in "".join(p.read_text() for p in published)
