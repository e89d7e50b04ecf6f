"""The robustness harness: the book's notebooks run in a matrix of variants, with every assertion cell's result.

A variant is a CPU instruction set (native, avx2, default), a seed (BATCHSIZE_SEED), a thread count (None: torch
chooses) and whether a busy process competes for the cores. Each notebook runs in a fresh kernel with errors
allowed; for every cell that holds an `assert` the report keeps its status, and for every comparison inside an
assert test the values of its operands and its margin (positive when the comparison held). The values are those at
the END of the notebook, evaluated in its kernel by one extra cell (a loop variable holds its last value);
comparisons inside lambdas and comprehensions are skipped, since their names are local there.
`python -m batchsize.robustness` merges its results into robustness/latest.json; `--report` prints it as Markdown.
"""
import argparse
import ast
import datetime
import itertools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO / "robustness" / "latest.json"
KERNEL_START_LOCK = Path(tempfile.gettempdir()) / "batchsize-book-kernel-start.lock"  # the one conftest.py uses
CPUS = ("native", "avx2", "default")
SEEDS = (0, 1, 2)
ISA_VARS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CPU_ENV = {"native": {}, "avx2": dict(zip(ISA_VARS, ("avx2", "AVX2", "AVX2"))),
           "default": dict(zip(ISA_VARS, ("default", "AVX2", "SSE41")))}
EXPECTED_CAPABILITY = {"avx2": "AVX2", "default": "DEFAULT"}
OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
       ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
LOCAL_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
MARKER = "batchsize-robustness-values: "
BUSY_CODE = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass"  # ends if the harness dies
_RUNNING = set()  # the `_run-one` processes running now
VALUES_CODE = '''\
def _robustness_values(sources):
    import json, numbers
    import numpy as np

    def convert(v):
        if isinstance(v, (bool, np.bool_, str, bytes)):
            return None
        v = v.detach().cpu() if hasattr(v, "detach") else v
        a = np.asarray(float(v) if isinstance(v, numbers.Real) else v)
        if a.dtype.kind not in "iuf":
            return None
        f = a[np.isfinite(a)].astype(float)
        if a.ndim == 0:
            return float(f[0]) if f.size else None
        return {"min": float(f.min()) if f.size else None, "max": float(f.max()) if f.size else None, "n": a.size}

    values = {}
    for source in sources:
        try:
            values[source] = convert(eval(source, globals()))
        except Exception:
            values[source] = None
    print(MARKER + json.dumps(values))


_robustness_values(SOURCES)
del _robustness_values
'''


@dataclass(frozen=True)
class Variant:
    """One setting of the matrix: CPU instruction set, seed, thread count (None: torch chooses), competing load."""
    cpu: str = "native"
    seed: int = 0
    threads: int | None = None
    load: bool = False

    def __post_init__(self):
        if self.cpu not in CPUS:
            raise ValueError(f"unknown cpu {self.cpu!r}: expected one of {', '.join(CPUS)}")
        for field, value, low in (("seed", self.seed, 0), ("threads", 1 if self.threads is None else self.threads, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{field} must be an int, not {value!r}")
            if value < low:
                raise ValueError(f"{field} must be at least {low}, not {value}")
        if not isinstance(self.load, bool):
            raise TypeError(f"load must be a bool, not {self.load!r}")

    @property
    def name(self):
        """The stable name, e.g. native-s0, avx2-s1-t2, native-s0-load."""
        threads = f"-t{self.threads}" if self.threads else ""
        return f"{self.cpu}-s{self.seed}{threads}" + ("-load" if self.load else "")

    def env(self, base=None):
        """The environment of this variant: base (default os.environ) with its CPU, seed and thread settings."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in ISA_VARS + THREAD_VARS}
        env.update(CPU_ENV[self.cpu], BATCHSIZE_SEED=str(self.seed))
        if self.threads:
            env.update(dict.fromkeys(THREAD_VARS, str(self.threads)))
        return env


def parse_variant(name):
    """The Variant named e.g. "native-s0", "avx2-s1-t2" or "default-s0-load"."""
    match = re.fullmatch(r"([a-z0-9]+)-s(\d+)(?:-t(\d+))?(-load)?", str(name))
    if not match:
        raise ValueError(f"bad variant name {name!r}: expected CPU-sSEED[-tTHREADS][-load], e.g. native-s0-t1")
    cpu, seed, threads, load = match.groups()
    return Variant(cpu, int(seed), int(threads) if threads else None, bool(load))


def default_matrix():
    """Every CPU setting with seeds 0, 1, 2, then native-s0 on one thread and native-s0 under load."""
    return [Variant(c, s) for c in CPUS for s in SEEDS] + [Variant(threads=1), Variant(load=True)]


def select_variants(names=None, cpus=None, seeds=None, threads=None, load=False):
    """The named variants; else the product of the given settings (others default); else the default matrix."""
    if names:
        return [parse_variant(n) for n in names]
    if cpus or seeds or threads or load:
        settings = itertools.product(cpus or CPUS, seeds or SEEDS, threads or [None])
        return [Variant(cpu, seed, thread, load) for cpu, seed, thread in settings]
    return default_matrix()


def cpu_capability(env):
    """What torch reports as its CPU capability ("AVX512", "AVX2", "DEFAULT", ...) when started with env."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode or not done.stdout.strip():
        raise RuntimeError(f"could not ask torch for its CPU capability: {done.stderr[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def check_capability(variant, env):
    """(capability, note): note when the machine lacks the requested set; RuntimeError when a setting did not take."""
    got, want = cpu_capability(env), EXPECTED_CAPABILITY.get(variant.cpu)
    if want is None or got == want:
        return got, None
    native = cpu_capability(Variant(seed=variant.seed).env(env))
    if want == "AVX2" and got == native and native not in ("AVX2", "AVX512"):
        return got, f"the machine lacks AVX2 (torch's best here is {native})"
    raise RuntimeError(f"variant {variant.name}: the {variant.cpu} CPU settings did not take: torch reports {got}, "
                       f"not {want}, with " + " ".join(f"{k}={env.get(k)}" for k in ISA_VARS))


def _parse(source):
    """(source with IPython magic and shell lines made `pass`, its ast or None when it still does not parse)."""
    lines = [line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines()]
    text = "\n".join(lines)
    try:
        return text, ast.parse(text)
    except SyntaxError:
        return text, None


def _compare_nodes(node):
    """The Compare nodes inside node (itself included), not those inside lambdas and comprehensions."""
    local = {id(n) for scope in ast.walk(node) if isinstance(scope, LOCAL_SCOPES) for n in ast.walk(scope)}
    return [n for n in ast.walk(node) if isinstance(n, ast.Compare) and id(n) not in local]


def assertion_cells(nb):
    """[{id, index, claims, compares: [{expr, operands, ops}]}] for the code cells of nb that hold an assert."""
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        text, tree = _parse(cell.source)
        asserts = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)] if tree else []
        if not asserts and not (tree is None and re.search(r"^\s*assert\b", cell.source, re.M)):
            continue  # no assert (or, in a cell that does not parse, no line that starts with one)
        compares = [{"expr": ast.get_source_segment(text, c),
                     "operands": [ast.get_source_segment(text, o) for o in [c.left, *c.comparators]],
                     "ops": [OPS[type(op)] for op in c.ops]} for a in asserts for c in _compare_nodes(a.test)]
        claims = cell.metadata.get("claims", [])
        cells.append({"id": cell.get("id"), "index": index, "compares": compares,
                      "claims": [claims] if isinstance(claims, str) else list(claims)})
    return cells


def margin(op, left, right):
    """right - left for < and <=, left - right for > and >= (positive: it held); None unless two numbers."""
    if op not in ("<", "<=", ">", ">=") or not all(isinstance(v, (int, float)) for v in (left, right)):
        return None
    return float(right - left) if op in ("<", "<=") else float(left - right)


def _result(meta, cell, ran, values):
    """The report's entry of one assertion cell from its executed cell (or none), and the operand values."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"] if ran else []
    compares = []
    for c in meta["compares"]:
        vals = [values.get(s) for s in c["operands"]]
        compares.append({**c, "values": vals, "margin": margin(c["ops"][0], *vals) if len(vals) == 2 else None})
    return {"id": meta["id"], "index": meta["index"], "claims": meta["claims"],
            "status": "not run" if not ran else "failed" if errors else "passed",
            "ename": errors[0].get("ename") if errors else None,
            "evalue": str(errors[0].get("evalue", ""))[:500] if errors else None, "compares": compares}


def _kernel_values(client, nb, cells):
    """{operand source: JSON value} evaluated by one extra cell appended to nb (the executed copy) in its kernel."""
    import nbformat
    sources = sorted({s for c in cells for cmp in c["compares"] for s in cmp["operands"] if s})
    if not sources:
        return {}
    code = VALUES_CODE.replace("MARKER", repr(MARKER)).replace("SOURCES", repr(sources))
    nb.cells.append(nbformat.v4.new_code_cell(code))
    client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    lines = [line for line in text.splitlines() if line.startswith(MARKER)]
    return json.loads(lines[-1][len(MARKER):]) if lines else {}


def execute_notebook(path, timeout=1800, env=None, kernel_lock=None):
    """{cells, error}: the notebook run in this process, errors allowed, its kernel started under kernel_lock."""
    import nbformat
    from filelock import FileLock
    from nbclient import NotebookClient

    from ._kernel_polls import poll_in_slices

    poll_in_slices()  # a lost ZMQ wake-up costs a second, not the notebook's timeout
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    cells = assertion_cells(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=int(timeout), allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    done, values, error = set(), {}, None
    try:
        client.km = client.create_kernel_manager()
        with kernel_lock if kernel_lock is not None else FileLock(KERNEL_START_LOCK):
            client.start_new_kernel(**({} if env is None else {"env": dict(env)}))
            client.start_new_kernel_client()
        with client.setup_kernel():
            for index, cell in enumerate(list(nb.cells)):
                client.execute_cell(cell, index)
                done.add(index)
            values = _kernel_values(client, nb, cells)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    return {"cells": [_result(c, nb.cells[c["index"]], c["index"] in done, values) for c in cells], "error": error}


class _Terminated(Exception):
    """Raised in `_run-one` on SIGTERM, so the kernel is shut down and what ran is written."""


def _run_one(argv):
    """`_run-one NOTEBOOK OUT.json TIMEOUT`: execute the notebook in this environment and write its entry."""
    def terminate(signum, frame):
        raise _Terminated("terminated (the notebook ran past its timeout)")
    signal.signal(signal.SIGTERM, terminate)
    entry = execute_notebook(argv[0], float(argv[2]))
    Path(argv[1]).write_text(json.dumps(entry), encoding="utf8")
    return 0


def run_notebook(path, env, timeout=1800):
    """{seconds, cells, error}: the notebook executed by a fresh `_run-one` subprocess with env, cwd its folder."""
    import nbformat
    path, error = Path(path).resolve(), None
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "log", "w+", encoding="utf8") as log:
        out, start = Path(tmp) / "entry.json", time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "batchsize.robustness", "_run-one", str(path), str(out),
                                    str(timeout)], env=env, cwd=path.parent, stdout=log, stderr=log)
        _RUNNING.add(process)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout:g} s"
        finally:
            if process.poll() is None:  # timed out, or interrupted: let it shut its kernel down, then kill it
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            _RUNNING.discard(process)
        seconds = time.perf_counter() - start
        if out.exists():
            entry = json.loads(out.read_text(encoding="utf8"))
        else:
            log.seek(0)
            entry = {"cells": [_result(c, {}, False, {}) for c in assertion_cells(nbformat.read(path, 4))],
                     "error": f"_run-one ended with status {process.returncode}: {log.read()[-500:]}"}
    if error:
        entry["error"] = error + (f"; {entry['error']}" if entry["error"] else "")
    return {"seconds": round(seconds, 2), **entry}


def toc_notebooks(toc=REPO / "_toc.yml"):
    """The .ipynb files of the table of contents, in its order (later chapters load earlier ones' cached runs)."""
    from .claims import load_yaml

    def files(node):
        if isinstance(node, dict):
            return [f for k, v in node.items() for f in ([v] if k in ("root", "file") else files(v))]
        return [f for item in node for f in files(item)] if isinstance(node, list) else []
    paths = [Path(toc).parent / (f if f.endswith(".ipynb") else f + ".ipynb")
             for f in files(load_yaml(toc))]
    return [p for p in paths if p.is_file()]


def notebook_name(path):
    """The notebook's key in the report: its path from the repository root, else its absolute path."""
    path = Path(path).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def provenance():
    """Date, git commit (and whether the tree has uncommitted changes), CPU model, cores and versions."""
    def git(*args):
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    status = git("status", "--porcelain", "--", ".", ":!robustness")
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "git_commit": git("rev-parse", "HEAD"),
            "dirty": bool(status) if status is not None else None,
            "host cpu model": model.group(1).strip() if model else platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": metadata.version("torch"),
            "numpy": metadata.version("numpy")}


def load_report(path=DEFAULT_OUTPUT):
    """The report stored at path, or None when there is none."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf8")) if path.is_file() else None


def write_report(path, report):
    """Write the report to path atomically (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf8")
    os.replace(tmp, path)


def merge_reports(old, new):
    """old updated with new: new's provenance, and per variant its settings and its notebooks' entries replaced."""
    merged = {"provenance": (new or {}).get("provenance", (old or {}).get("provenance")), "variants": {
        k: {**v, "notebooks": dict(v.get("notebooks", {}))} for k, v in (old or {}).get("variants", {}).items()}}
    for name, variant in (new or {}).get("variants", {}).items():
        old_variant = merged["variants"].get(name, {})
        merged["variants"][name] = {**old_variant, **variant, "notebooks": {
            **old_variant.get("notebooks", {}), **variant.get("notebooks", {})}}
    return merged


_SAVE_LOCK = threading.Lock()


def run_variant(variant, notebooks, output=DEFAULT_OUTPUT, jobs=1, timeout=1800):
    """Run the notebooks in one variant, merging each notebook's entry into output as it ends; return the entry."""
    info = {"cpu": variant.cpu, "seed": variant.seed, "threads": variant.threads, "load": variant.load,
            "capability": None, "note": None, "error": None, "date": datetime.datetime.now().isoformat("T", "seconds")}
    entries, prov = {}, provenance()

    def save():
        with _SAVE_LOCK:
            new = {"provenance": prov, "variants": {variant.name: {**info, "notebooks": dict(entries)}}}
            write_report(output, merge_reports(load_report(output), new))
    env = variant.env()
    load = subprocess.Popen([sys.executable, "-c", BUSY_CODE]) if variant.load else None
    try:
        try:
            info["capability"], info["note"] = check_capability(variant, env)
        except RuntimeError as exc:
            info["error"] = str(exc)
            print(f"{variant.name}: {exc}", file=sys.stderr)
            save()
            return {**info, "notebooks": entries}
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            futures = {pool.submit(run_notebook, nb, env, timeout): notebook_name(nb) for nb in notebooks}
            for future in as_completed(futures):
                entry = entries[futures[future]] = future.result()
                passed = sum(c["status"] == "passed" for c in entry["cells"])
                print(f"{variant.name} {futures[future]}: {passed}/{len(entry['cells'])} assertion cells passed, "
                      f"{entry['seconds']:.1f} s" + (f" ({entry['error']})" if entry["error"] else ""), file=sys.stderr)
                save()
        except BaseException:  # interrupted: stop the notebooks still running, so that their threads end
            for process in list(_RUNNING):
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    return {**info, "notebooks": entries}


def summary(report):
    """One row per assertion cell: counts of passed/failed/not run and those variants, operand ranges, margins."""
    rows = {}
    for name, variant in report.get("variants", {}).items():
        for nb, entry in variant.get("notebooks", {}).items():
            for cell in entry.get("cells", []):
                row = rows.setdefault((nb, cell["id"] or cell["index"]), {
                    "notebook": nb, "cell": cell["id"], "index": cell["index"], "claims": cell["claims"],
                    "passed": 0, "failed": 0, "not run": 0, "failed variants": [], "not run variants": [],
                    "compares": {}})
                row[cell["status"]] += 1
                if cell["status"] != "passed":
                    row[f"{cell['status']} variants"].append(name)
                for c in cell["compares"]:
                    s = row["compares"].setdefault(c["expr"], {"expr": c["expr"], "min margin": None, "operands": [
                        {"expr": o, "min": None, "max": None} for o in c["operands"]]})
                    for operand, value in zip(s["operands"], c["values"]):
                        lo, hi = (value.get("min"), value.get("max")) if isinstance(value, dict) else (value, value)
                        operand["min"] = _extreme(min, operand["min"], lo)
                        operand["max"] = _extreme(max, operand["max"], hi)
                    s["min margin"] = _extreme(min, s["min margin"], c["margin"])
    for row in rows.values():
        row["compares"] = list(row["compares"].values())
        row["min margin"] = _extreme(min, *(c["min margin"] for c in row["compares"]))
    return list(rows.values())


def _extreme(pick, *values):
    """pick (min or max) of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return pick(values) if values else None


def _fmt(x):
    """A number with three significant digits, an en dash for None."""
    return "–" if x is None else f"{x:.3g}"


def _esc(text):
    """Text safe in a MyST table cell: Markdown punctuation (|, brackets, braces, $, ...) backslash-escaped."""
    text = re.sub(r"([\\`*{}\[\]<>|$~#!])", r"\\\1", str(text))
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\_", text)  # an underscore inside a word is no emphasis


def render_markdown(report):
    """The report as Markdown: provenance, overall count, a table of variants and one of assertion cells."""
    p, rows, variants = report.get("provenance") or {}, summary(report), report.get("variants", {})
    commit = (p.get("git_commit") or "unknown")[:10] + (" with uncommitted changes" if p.get("dirty") else "")
    lines = [f"Recorded {_esc(p.get('date'))} at commit {_esc(commit)} on {_esc(p.get('host cpu model'))} "
             f"({p.get('cores')} cores); Python {_esc(p.get('python'))}, torch {_esc(p.get('torch'))}, "
             f"NumPy {_esc(p.get('numpy'))}.", ""]
    failed, not_run = sum(r["failed"] for r in rows), sum(r["not run"] for r in rows)
    lines += [f"{len(rows)} assertion cells × {len(variants)} variants: {failed} failures"
              + (f", {not_run} not run" if not_run else "") + ".", "",
              "| Variant | Capability | Seed | Threads | Load | Seconds | Failures | Notes |",
              "|---|---|---|---|---|---|---|---|"]
    for name, v in variants.items():
        nbs = v.get("notebooks", {}).values()
        notes = [v.get("note"), v.get("error")] + [e.get("error") for e in nbs]
        fails = sum(c["status"] == "failed" for e in nbs for c in e.get("cells", []))
        lines.append(f"| {_esc(name)} | {_esc(v.get('capability') or '–')} | {v.get('seed')} | "
                     f"{v.get('threads') or 'auto'} | {'yes' if v.get('load') else 'no'} | "
                     f"{sum(e.get('seconds', 0) for e in nbs):.1f} | {fails} | "
                     f"{_esc('; '.join(n for n in notes if n)[:200])} |")
    lines += ["", "| Notebook | Cell | Claims | Passed | Failing variants | Smallest margin |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        total = r["passed"] + r["failed"] + r["not run"]
        lines.append(f"| {_esc(Path(r['notebook']).name)} | {_esc(r['cell'] or 'cell ' + str(r['index']))} | "
                     f"{_esc(', '.join(r['claims']))} | passed in {r['passed']}/{total} variants | "
                     f"{_esc(', '.join(r['failed variants'] + [f'{n} (not run)' for n in r['not run variants']]))} | "
                     f"{_fmt(r['min margin'])} |")
    return "\n".join(lines) + "\n"


def _parser():
    parser = argparse.ArgumentParser(prog="python -m batchsize.robustness", description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", choices=["default"], default="default",
                        help="the matrix run when no --variants/--cpus/--seeds/--threads/--load narrows it")
    parser.add_argument("--cpus", nargs="+", choices=CPUS, help="CPU settings (default: all three)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0 1 2)")
    parser.add_argument("--threads", nargs="+", type=lambda s: None if s in ("auto", "none") else int(s),
                        help="thread counts, or auto (default: auto)")
    parser.add_argument("--load", action="store_true", help="run with a competing busy process")
    parser.add_argument("--variants", nargs="+", metavar="NAME", help="explicit variants, e.g. native-s0 avx2-s1-t1")
    parser.add_argument("--notebooks", nargs="+", metavar="PATH", help="notebooks (default: those of _toc.yml)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at once within a variant (default: 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per notebook (default: 1800)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="the report JSON, merged into")
    parser.add_argument("--report", action="store_true", help="print the report as Markdown and run nothing")
    return parser


def main(argv=None):
    """Entry point of `python -m batchsize.robustness`: 0 when every assertion cell passed in every variant run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["_run-one"]:
        return _run_one(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.report:
        report = load_report(args.output)
        print(render_markdown(report) if report else f"No harness run is recorded in {args.output}.")
        return 0 if report else 1
    try:
        variants = select_variants(args.variants, args.cpus, args.seeds, args.threads, args.load)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    notebooks = [Path(p) for p in args.notebooks] if args.notebooks else toc_notebooks()
    if missing := [str(p) for p in notebooks if not p.is_file()]:
        parser.error(f"no such notebook: {', '.join(missing)}")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # stop through the finally blocks
    ok = True
    for variant in variants:
        entry = run_variant(variant, notebooks, args.output, args.jobs, args.timeout)
        ok = ok and not entry["error"] and all(not e["error"] and all(c["status"] == "passed" for c in e["cells"])
                                               for e in entry["notebooks"].values())
    print(render_markdown(load_report(args.output)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
