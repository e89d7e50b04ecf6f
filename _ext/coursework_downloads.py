"""Publish the student notebooks of the coursework labs with the site, built fresh at every HTML build.

At the start of a build the labs in coursework/ are built with `python -m batchsize.coursework build` (without
re-running their tests, which the test suite does) into a temporary folder; at the end only the student notebooks
are copied to <html>/coursework/, which the page "For instructors" links to. Solutions, hidden tests, autograder
zips and rubrics never reach the site.
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def publish(build_dir, outdir):
    """Copy the student notebooks of a coursework build into outdir/coursework/; returns the copied paths."""
    target = Path(outdir) / "coursework"
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for notebook in sorted((Path(build_dir) / "student").glob("*.ipynb")):
        copied.append(Path(shutil.copyfile(notebook, target / notebook.name)))
    return copied


def _build(app):
    if app.builder.format != "html":
        return
    source = Path(app.srcdir) / "coursework"
    if not source.is_dir():  # a book without labs (a cut-down copy, a test build) publishes none
        return
    app._coursework_tmp = tempfile.TemporaryDirectory(prefix="coursework-site-")
    proc = subprocess.run([sys.executable, "-m", "batchsize.coursework", "build", app._coursework_tmp.name,
                           "--source", str(source), "--no-run-tests"], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"building the coursework labs failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _publish(app, exception):
    tmp = getattr(app, "_coursework_tmp", None)
    if tmp is None:
        return
    if exception is None:
        publish(tmp.name, app.outdir)
    tmp.cleanup()


def setup(app):
    app.connect("builder-inited", _build)
    app.connect("build-finished", _publish)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
