"""Figure captions as markdown cells, so that JupyterLab and Notebook 7 show them too.

A chapter writes each caption in a markdown cell tagged `figure-caption`, right after the code cell that draws
the figure (whose metadata holds `mystnb.figure.name`), starting with `**Figure.** `. When the book is built the
cell is folded into that code cell's `mystnb.figure.caption`, so the site shows one numbered, captioned figure.
"""
import json

from sphinx.errors import ExtensionError

TAG = "figure-caption"
PREFIX = "**Figure.** "


def _source(cell):
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def fold_captions(nb, where="notebook"):
    """Move every caption cell into the figure cell before it; return how many were moved."""
    cells, moved = [], 0
    for cell in nb["cells"]:
        if TAG not in cell.get("metadata", {}).get("tags", []):
            cells.append(cell)
            continue
        text = _source(cell)
        figure = cells[-1] if cells else None
        if cell["cell_type"] != "markdown" or not text.startswith(PREFIX):
            raise ExtensionError(f"{where}: a {TAG} cell must be markdown starting with {PREFIX!r}: {text[:60]!r}")
        if figure is None or figure["cell_type"] != "code" or "name" not in \
                figure.get("metadata", {}).get("mystnb", {}).get("figure", {}):
            raise ExtensionError(f"{where}: the {TAG} cell {text[:60]!r} does not follow a figure's code cell "
                                 "(one whose metadata has mystnb.figure.name)")
        figure["metadata"]["mystnb"]["figure"]["caption"] = text[len(PREFIX):].strip()
        moved += 1
    nb["cells"] = cells
    return moved


def _on_source_read(app, docname, source):
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    nb = json.loads(source[0])
    if fold_captions(nb, where=docname):
        source[0] = json.dumps(nb)


def setup(app):
    app.connect("source-read", _on_source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
