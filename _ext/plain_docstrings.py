"""Render the library's plain-text docstrings literally on the API page.

The docstrings of ``lib/batchsize`` are written for readers of the code, in plain text: norms are
written ``|G|^2``. In reStructuredText a ``|word|`` is a substitution reference, so autodoc would
report errors for them. This extension escapes the bars (outside inline literals) before autodoc
parses a docstring, so the page shows the text as written.
"""
import re

_LITERAL = re.compile(r"(``.*?``)")


def _escape_bars(line):
    parts = _LITERAL.split(line)
    return "".join(p if p.startswith("``") else re.sub(r"(?<!\\)\|", r"\\|", p) for p in parts)


def escape_docstring(app, what, name, obj, options, lines):
    lines[:] = [_escape_bars(line) for line in lines]


def setup(app):
    # Runs before napoleon (priority 500), which turns sections into field lists.
    app.connect("autodoc-process-docstring", escape_docstring, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
