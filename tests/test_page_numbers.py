"""Tests for _ext/page_numbers.py: sub-pages numbered 2.1, 2.2 under their chapter, headings inside pages not."""
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
        "ch2c": {"": (2, 10)},
        "ch3": {"": (3,), "#a": (3, 1)},
    })
    changed = page_numbers.renumber_pages(None, env)
    assert env.toc_secnumbers == {"intro": {}, "ch1": {"": (1,)}, "ch2": {"": (2,)}, "ch2b": {"": (2, 1)},
                                  "ch2c": {"": (2, 2)}, "ch3": {"": (3,)}}
    assert set(changed) == {"ch1", "ch2", "ch2b", "ch2c", "ch3"}


def test_the_book_registers_the_extension():
    assert "page_numbers: _ext/" in (ROOT / "_config.yml").read_text()
