"""The chapters' markdown says what its author meant: no line of a paragraph opens a block by accident."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
# A line that starts a block quote, or a list with "+", when it opens with these after a paragraph line (CommonMark:
# both interrupt a paragraph). "-" and "*" lists are left out: the chapters use them on purpose after a line.
OPENS_A_BLOCK = re.compile(r"^ {0,3}(>|\+ )")


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}|:{3,})\s*(.*?)\s*$")
# Fences whose content is not markdown; every other directive (exercise, solution, note, ...) holds markdown.
VERBATIM = re.compile(r"^(\{(math|code-block|code-cell|code|eval-rst|glue:[a-z]+)\}.*|[^{].*|)$")


def accidental_blocks(source):
    """The lines of a markdown text that open a block quote (or + list) in the middle of a paragraph."""
    found, fences, previous = [], [], ""  # fences: the open ones, (marker, verbatim)
    for line in source.split("\n"):
        fence = FENCE.match(line)
        if fence and fences and not fence[2] and fence[1][0] == fences[-1][0][0] and len(fence[1]) >= len(
                fences[-1][0]):
            fences.pop()
            line = ""
        elif fence:
            fences.append((fence[1], bool(VERBATIM.match(fence[2]))))
            line = ""
        elif not any(verbatim for _, verbatim in fences) and OPENS_A_BLOCK.match(line) and previous.strip() \
                and not OPENS_A_BLOCK.match(previous):
            found.append(line)
        previous = line
    return found


def test_the_check_finds_a_wrapped_inequality():
    assert accidental_blocks("so $p(-1) = 2 - x\n> 0$, that is") == ["> 0$, that is"]
    assert accidental_blocks("A quote:\n\n> words\n> more") == []
    assert accidental_blocks("```python\nx\n> 0\n```") == []
    assert accidental_blocks("```{solution} ex\nso $a\n> 0$\n```") == ["> 0$"]  # a directive holds markdown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_paragraph_line_opens_a_block_quote(path):
    problems = [f"cell {c.id}: {line!r}" for c in nbformat.read(path, as_version=4).cells
                if c.cell_type == "markdown" for line in accidental_blocks(c.source)]
    assert not problems, "a line starting with '>' or '+ ' inside a paragraph starts a block; rewrap:\n" + "\n".join(
        problems)
