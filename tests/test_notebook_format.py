"""The chapters' code cells are formatted (ruff, 88 columns: chapters/ruff.toml), so that no line is clipped on the page."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def ruff():
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert found, "ruff is not installed: pip install -r requirements.txt"
    return found


def test_every_chapter_is_formatted_by_the_pinned_ruff():
    result = subprocess.run([ruff(), "format", "--check", "--diff", *map(str, CHAPTERS)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, "run `ruff format chapters`:\n" + result.stdout[-3000:] + result.stderr[-2000:]


def test_no_code_line_is_wider_than_the_page():
    wide = []
    for path in CHAPTERS:
        for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
            if cell["cell_type"] == "code":
                # ruff keeps a long string, comment or docstring whole: such lines are split by hand
                wide += [f"{path.name} {cell.get('id')}: {line}" for line in "".join(cell["source"]).splitlines()
                         if len(line) > 88]  # chapters/ruff.toml's line-length: the page's edge
    assert not wide, "\n".join(wide)
