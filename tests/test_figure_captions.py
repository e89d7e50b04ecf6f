"""Tests for _ext/figure_captions.py: captions written as markdown cells, folded into the figure in the book."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import figure_captions  # noqa: E402
from sphinx.errors import ExtensionError  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def figure_cell(name="fig-a"):
    return {"cell_type": "code", "metadata": {"mystnb": {"figure": {"name": name}}}, "source": "plot()"}


def caption_cell(text):
    return {"cell_type": "markdown", "metadata": {"tags": ["figure-caption"]}, "source": text}


def test_caption_cell_becomes_the_figure_caption():
    nb = {"cells": [figure_cell(), caption_cell("**Figure.** The loss, $B = 8$.\nSecond line.")]}
    assert figure_captions.fold_captions(nb) == 1
    assert [c["cell_type"] for c in nb["cells"]] == ["code"]
    assert nb["cells"][0]["metadata"]["mystnb"]["figure"]["caption"] == "The loss, $B = 8$.\nSecond line."


@pytest.mark.parametrize("cells", [
    [caption_cell("**Figure.** orphan")],
    [{"cell_type": "code", "metadata": {}, "source": "x"}, caption_cell("**Figure.** no figure name")],
    [figure_cell(), caption_cell("no prefix")],
])
def test_misplaced_or_malformed_caption_fails_the_build(cells):
    with pytest.raises(ExtensionError, match="figure-caption"):
        figure_captions.fold_captions({"cells": cells})


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_named_figure_has_its_caption_in_a_cell_readers_see(path):
    nb = json.loads(path.read_text(encoding="utf8"))
    cells = nb["cells"]
    for i, cell in enumerate(cells):
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if cell["cell_type"] != "code" or "name" not in figure:
            continue
        assert "caption" not in figure, f"{figure['name']}: the caption belongs in the markdown cell after it"
        after = cells[i + 1] if i + 1 < len(cells) else {}
        assert "figure-caption" in after.get("metadata", {}).get("tags", []), f"{figure['name']}: no caption cell"
    figure_captions.fold_captions(nb, where=path.name)  # raises on a misplaced caption
