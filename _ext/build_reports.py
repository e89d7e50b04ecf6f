"""Reports of a build: the traceback of a notebook that failed, and a summary of the build.

With ``nb_execution_raise_on_error: true`` myst-nb aborts the build at the first notebook whose cell
raises, before it writes its report. This extension writes that report anyway, to the place where
myst-nb puts it for a failure that does not abort (``_build/html/reports/<docname>.err.log``), so CI
can keep ``_build/html/reports`` as an artifact either way.

After a build that ran to its end it writes ``_build/html/.build-status.json`` with the number of
warnings, so that tests/test_site.py reuses a site only when it came from a clean build.
"""
import json
from pathlib import Path

from myst_nb.core.execute.base import ExecutionError


def _causes(exc):
    """The exception and the chain of exceptions that caused it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def write_report(app, exc):
    """On a failed build, save the traceback of the notebook that raised; else the warning count."""
    status = Path(app.outdir, ".build-status.json")
    status.unlink(missing_ok=True)
    if exc is None:
        warnings = getattr(app, "_warncount", None)  # Sphinx's own count, as in its closing line
        status.write_text(json.dumps({"builder": app.builder.name, "warnings": warnings}))
        return
    chain = list(_causes(exc))
    failed = next((e for e in chain if isinstance(e, ExecutionError)), None)
    if failed is None:
        return
    notebook = Path(str(failed)).resolve()
    try:
        docname = notebook.relative_to(Path(app.srcdir).resolve()).with_suffix("").as_posix()
    except ValueError:
        docname = notebook.stem
    cause = failed.__cause__
    report = Path(app.outdir, "reports", *(docname + ".err.log").split("/"))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(str(cause) if cause is not None else str(failed), encoding="utf8")
    print(f"Notebook exception traceback saved in: {report}")


def setup(app):
    app.connect("build-finished", write_report)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
