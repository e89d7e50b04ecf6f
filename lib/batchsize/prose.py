"""The numbers a chapter's prose quotes, kept by name so that one source reads right everywhere.

A chapter computes a value and quotes it, `quote("sd_ratio", ratio)`; its markdown shows it with a MyST inline
expression, {eval}`f"{quote.sd_ratio:.1f}"`. The built book evaluates the expression in the chapter's kernel
(myst-nb's inline execution) and JupyterLab or Notebook 7 with `jupyterlab-myst` evaluates it live, so the
number in the text is the number of the run the reader is looking at. Introduced in chapter 1.
"""
import math
import numbers
import os
from types import SimpleNamespace

# Set by the book's build (_ext/book_build_env.py) for the kernels it starts: only there are values also glued
# for the cross-page roles of chapter 5, which needs myst-nb; a reader's kernel never imports it.
BUILD_ENV = "BATCHSIZE_BOOK_BUILD"


def in_book_build():
    """Whether this kernel runs inside the book's build (which sets BUILD_ENV for the kernels it starts)."""
    return bool(os.environ.get(BUILD_ENV))


class Quoted(SimpleNamespace):
    """Values by name (`quote.name`) that a chapter's prose shows; call it to quote one: `quote(name, value)`."""

    def __call__(self, name, value):
        """Keep `value` as `self.<name>` (and glue it in a book build). Refuses NaN, infinity, None.

        Returns nothing, so that a cell ending in a quote shows no output.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a quoted value needs a Python identifier as its name, got {name!r}")
        if value is None or isinstance(value, bool):
            raise TypeError(f"{name}: quote a number or a string, not {value!r}")
        if isinstance(value, numbers.Real):
            if not math.isfinite(value):
                raise ValueError(f"{name} = {value}: a quoted number must be finite (say 'diverged' in words)")
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        elif not isinstance(value, str):
            raise TypeError(f"{name}: quote a number or a string, not {type(value).__name__}")
        setattr(self, name, value)
        if in_book_build():
            from myst_nb import glue  # only inside the book's build, where myst-nb runs the kernel

            glue(name, value, display=False)
