"""The coursework kit: graded labs, one per chapter, built into a student and an instructor edition.

Each lab is a master notebook in otter-grader's authoring format, `coursework/<chapter>.ipynb`, named after the
chapter it builds on. `build` runs `otter assign` on every master notebook it finds (a lab added later needs no
code) and lays out its outputs:

    DIR/student/<lab>.ipynb                            the notebooks to hand out: no solutions, public tests only
    DIR/instructor/<lab>/<lab>.ipynb                   solutions with every test, public and hidden
    DIR/instructor/<lab>/<lab>-autograder.zip          the autograder (Gradescope, or `otter grade` locally)
    DIR/instructor/<lab>/rubric.md                     the rubric of the hand-graded answers

Command line: `python -m batchsize.coursework build DIR`. otter-grader is imported only inside the functions that
need it, so `import batchsize` works without it.
"""
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "coursework"  # the master notebooks, in a source checkout
METADATA_KEY = "coursework"  # notebook metadata of a master notebook that no edition carries


def find_assignments(folder=None):
    """Master notebooks of the labs in `folder` (default: the repository's coursework/), sorted by name.

    Introduced with the coursework kit (see the page "For instructors").
    """
    folder = Path(SOURCE if folder is None else folder).resolve()  # otter assign needs the real path
    if not folder.is_dir():
        raise ValueError(f"folder must be a directory of master notebooks, got {str(folder)!r}")
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


@dataclass
class Edition:
    """The files `build` wrote for one lab. Introduced with the coursework kit."""

    name: str  # the lab's name, its master notebook's stem
    student: Path  # the student notebook
    solutions: Path  # the instructor's notebook: solutions and every test
    autograder: Path  # the autograder zip
    rubric: Path | None  # rubric of the hand-graded answers, None if the lab has none
    seconds: float  # wall time of `otter assign`, checking the solutions included


# Kernels started at the same moment by two processes can be handed the same free TCP ports, so every kernel that
# otter starts here (to check the solutions, to grade) starts while holding one machine-wide file lock, the lock the
# test suite's conftest.py uses for nbval and the book build. Runs in a child process: otter changes directory.
KERNEL_START_LOCK = Path(tempfile.gettempdir()) / "batchsize-book-kernel-start.lock"
_CHILD = """
import json, sys
import nbclient
try:
    from filelock import FileLock
except ImportError:  # without filelock, kernels start unlocked
    class FileLock:
        def __init__(self, path):
            pass
        acquire = release = lambda self: None

lock, start_kernel, start_client = FileLock(sys.argv[1]), nbclient.NotebookClient.async_start_new_kernel, \\
    nbclient.NotebookClient.async_start_new_kernel_client

async def locked_start_kernel(self, **kwargs):
    lock.acquire()
    self.startup_timeout = max(self.startup_timeout, 300)  # a loaded machine starts kernels slowly
    try:
        return await start_kernel(self, **kwargs)
    except BaseException:
        lock.release()
        raise

async def locked_start_client(self):
    try:
        return await start_client(self)
    finally:
        lock.release()

nbclient.NotebookClient.async_start_new_kernel = locked_start_kernel
nbclient.NotebookClient.async_start_new_kernel_client = locked_start_client
from batchsize._kernel_polls import poll_in_slices
poll_in_slices()  # a lost ZMQ wake-up costs a second, not the cell's timeout
if sys.argv[2] == "assign":
    import otter.assign
    otter.assign.main(sys.argv[3], sys.argv[4], no_run_tests=sys.argv[5] == "0")
else:
    import otter.api
    r = otter.api.grade_submission(sys.argv[3], sys.argv[4], quiet=True, debug=sys.argv[5] == "1")
    print("\\nRESULTS" + json.dumps({k: [v.score, v.possible] for k, v in r.results.items()}))
"""


def _otter(*args, cwd=None):
    """Run otter (assign or grade) in a child process; raise with its output if it fails."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(KERNEL_START_LOCK), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        raise RuntimeError(f"otter {args[0]} {Path(args[1]).name} failed (exit code {proc.returncode}):\n"
                           f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def _assign(master, out, run_tests):
    """`otter assign`, which checks the solutions against every test when run_tests; returns its wall time."""
    import time

    start = time.perf_counter()
    try:
        _otter("assign", master, out, int(bool(run_tests)), cwd=master.parent)
    except RuntimeError as error:
        raise RuntimeError(f"{error}\nThe solutions of {master.name} must pass every test.") from None
    return time.perf_counter() - start


def _strip_metadata(path):
    nb = json.loads(path.read_text())
    nb["metadata"].pop(METADATA_KEY, None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _build_one(master, out_dir, run_tests):
    name = master.stem
    with tempfile.TemporaryDirectory(prefix=f"assign-{name}-") as tmp:
        dist = Path(tmp) / "dist"
        seconds = _assign(master, dist, run_tests)
        student = out_dir / "student" / f"{name}.ipynb"
        inst = out_dir / "instructor" / name
        inst.mkdir(parents=True, exist_ok=True)
        student.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dist / "student" / f"{name}.ipynb", student)
        shutil.copyfile(dist / "autograder" / f"{name}.ipynb", inst / f"{name}.ipynb")
        (zip_path,) = (dist / "autograder").glob(f"{name}-autograder_*.zip")  # otter stamps the time in the name
        shutil.copyfile(zip_path, inst / f"{name}-autograder.zip")
    _strip_metadata(student)
    rubric_src = master.parent / "rubrics" / f"{name}.md"
    rubric = None
    if rubric_src.exists():
        rubric = inst / "rubric.md"
        shutil.copyfile(rubric_src, rubric)
    return Edition(name, student, inst / f"{name}.ipynb", inst / f"{name}-autograder.zip", rubric, seconds)


def build(out_dir, folder=None, run_tests=True, workers=2, names=None, overwrite=False):
    """Build the student and instructor editions of every lab into out_dir; returns {name: Edition}.

    Introduced with the coursework kit (see the page "For instructors"). With run_tests (the default),
    `otter assign` runs every test against the solutions and the build fails if one does not pass. Labs are
    built `workers` at a time, each in its own process; `names` picks some labs (default: all; a string is one
    lab). An out_dir that exists and is not empty is refused unless overwrite=True.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"out_dir {str(out)!r} exists and is not empty: give an empty or new folder, or "
                         f"overwrite=True (--overwrite) to build over it")
    if isinstance(names, str):
        names = [names]
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    masters = find_assignments(folder)
    if names is not None:
        unknown = set(names) - {m.stem for m in masters}
        if unknown:
            raise ValueError(f"no lab named {sorted(unknown)}; labs: {[m.stem for m in masters]}")
        masters = [m for m in masters if m.stem in set(names)]
    if not masters:
        raise ValueError(f"no master notebooks (*.ipynb) found in {folder or SOURCE}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:  # threads only wait on child processes
        editions = list(pool.map(lambda m: _build_one(m, out_dir, run_tests), masters))
    return {e.name: e for e in editions}


def grade(notebook, autograder, debug=False):
    """Grade a notebook with an autograder zip, without Docker: {question: (score, possible)}.

    Introduced with the coursework kit. Runs otter's `grade_submission` in a child process (otter changes
    directory while grading). With debug, a cell that raises makes the grading fail instead of being skipped.
    """
    out = _otter("grade", Path(notebook).resolve(), Path(autograder).resolve(), int(bool(debug)))
    (line,) = [line for line in out.splitlines() if line.startswith("RESULTS")]
    return {k: tuple(v) for k, v in json.loads(line[len("RESULTS"):]).items()}


def _in_colab():
    return "google.colab" in sys.modules


def _colab_notebook():
    """The running notebook's JSON in Colab, where it is not a file on the kernel's disk."""
    from google.colab import _message  # noqa: available in Colab only

    return _message.blocking_request("get_ipynb", request="", timeout_sec=60)["ipynb"]


def checker(notebook):
    """The answer checker of a lab, otter's Notebook, that also works in Colab. Introduced with the coursework kit.

    `grader.check("q1")` runs the public tests of question q1 and reports the result without raising. In Colab the
    notebook file is not on the kernel's disk, so its public tests are read from the running notebook and written
    to tests/ first.
    """
    import otter

    if not Path(notebook).exists() and _in_colab():
        tests = _colab_notebook()["metadata"]["otter"]["tests"]
        folder = Path("tests")
        folder.mkdir(exist_ok=True)
        for question, source in tests.items():
            (folder / f"{question}.py").write_text(source)
        return otter.Notebook(tests_dir=str(folder))
    return otter.Notebook(notebook)


def main(argv=None):
    """Command line: `python -m batchsize.coursework build DIR [--no-run-tests]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m batchsize.coursework", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the student and instructor editions of every lab")
    b.add_argument("dir", help="output folder")
    b.add_argument("--source", default=None, help="folder of master notebooks (default: coursework/)")
    b.add_argument("--no-run-tests", action="store_true", help="skip checking the solutions against the tests")
    b.add_argument("--overwrite", action="store_true", help="build into DIR even if it is not empty")
    args = parser.parse_args(argv)
    try:
        editions = build(args.dir, args.source, run_tests=not args.no_run_tests, overwrite=args.overwrite)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for e in editions.values():
        print(f"{e.name}: {e.student}  |  {e.solutions.parent}/  ({e.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
