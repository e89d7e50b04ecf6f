"""Tests for _ext/page_numbers.py: sub-pages numbered 2.1, 2.2 under their chapter, headings inside pages not."""
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))

import page_numbers  # noqa: E402


def test_sub_pages_follow_their_chapter_and_headings_lose_numbers():
    env = SimpleNamespace(toc_secnumbers={
        "intro": {},
        "ch1": {"": (1,), "#a": (1, 1), "#b": (1, 2)},
        "ch2": {"": (2,), **{f"#s{i}": (2, i) for i in range(1, 9)}},
        "ch2b": {"": (2, 9), "#x": (2, 9, 1)},
        "ch2c": {"": (2, 8, 1)},  # a toctree inside chapter 2's last heading numbers its page one level deeper
        "ch3": {"": (3,), "#a": (3, 1)},
    })
    changed = page_numbers.renumber_pages(None, env)
    assert env.toc_secnumbers == {"intro": {}, "ch1": {"": (1,), "#a": (), "#b": ()},
                                  "ch2": {"": (2,), **{f"#s{i}": () for i in range(1, 9)}},
                                  "ch2b": {"": (2, 2), "#x": ()}, "ch2c": {"": (2, 1)}, "ch3": {"": (3,), "#a": ()}}
    assert set(changed) == {"ch1", "ch2", "ch2b", "ch2c", "ch3"}


def test_a_sphinx_build_shows_page_numbers_only(tmp_path):
    (tmp_path / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT / '_ext')!r})\n"
                                      "extensions = ['page_numbers']\n")
    (tmp_path / "index.rst").write_text("Book\n====\n\n.. toctree::\n   :numbered:\n\n   ch1\n   ch2\n")
    (tmp_path / "ch1.rst").write_text("One\n===\n\nA\n-\n\ntext\n")
    (tmp_path / "ch2.rst").write_text("Two\n===\n\nA\n-\n\ntext\n\nB\n-\n\ntext\n\n.. toctree::\n\n   ch2b\n")
    (tmp_path / "ch2b.rst").write_text("Sub\n===\n\nInner\n-----\n\ntext\n")
    subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "html", str(tmp_path), str(tmp_path / "out")],
                   check=True, capture_output=True)
    sub = (tmp_path / "out" / "ch2b.html").read_text()
    assert '<span class="section-number">2.1. </span>Sub' in sub
    assert "</span>Inner" not in sub  # a heading inside a page has no number
    two = (tmp_path / "out" / "ch2.html").read_text()
    assert '<span class="section-number">2. </span>Two' in two and "</span>A<" not in two
    shutil.rmtree(tmp_path / "out")


def test_the_book_registers_the_extension():
    assert "page_numbers: _ext/" in (ROOT / "_config.yml").read_text()
