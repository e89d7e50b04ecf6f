"""Tests for claims.py, and of claims.yml against the chapters: one verdict per claim, links that resolve, and
verdicts that agree with the verdict tables of the chapters that test them."""
import json
import re
from pathlib import Path

import pytest

from batchsize import claims

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"


@pytest.fixture(scope="module")
def book_claims():
    return claims.load_claims()


def chapter_rows():
    """{notebook name: [(claim id, verdict), ...]} for every chapter with a verdict table."""
    rows = {path.name: claims.verdict_rows(path) for path in sorted(CHAPTERS.glob("*.ipynb"))}
    return {name: r for name, r in rows.items() if r}


def test_ids_are_exactly_the_34_claims(book_claims):
    ids = [c["id"] for c in book_claims]
    assert sorted(ids) == sorted(claims.CLAIM_IDS) and len(ids) == len(set(ids)) == 34
    assert claims.CLAIM_IDS[:5] == ("L1", "L2", "L3", "L4", "L5") and claims.CLAIM_IDS[-1] == "A11"


def test_every_verdict_is_one_of_four_and_untestable_says_how_to_settle(book_claims):
    for c in book_claims:
        assert c["verdict"] in claims.VERDICTS, c["id"]
        assert bool(c.get("settle")) == (c["verdict"] == "untestable here"), c["id"]


def test_links_resolve_to_a_verdict_section(book_claims):
    for c in book_claims:
        for name in c["tested_in"]:
            path = CHAPTERS / name
            assert path.is_file(), f"{c['id']}: {name} does not exist"
            headings = [line.lstrip("#").strip() for text in claims.notebook_markdown(path)
                        for line in text.splitlines() if line.startswith("## ")]
            assert "what-the-claims-say" in map(claims.heading_anchor, headings), (c["id"], name)


def test_key_numbers_are_glued_by_the_chapter_that_tests_the_claim(book_claims):
    for c in book_claims:
        refs = claims.glue_references(c["number"])
        assert refs, f"{c['id']}: the key number must be a glue role, not typed: {c['number']!r}"
        for name, key in refs:
            assert name in c["tested_in"], (c["id"], name)
            text = (CHAPTERS / name).read_text(encoding="utf8")
            assert f'glue(\\"{key}\\"' in text or re.search(r"\{glue(:\w+)?\}`" + re.escape(key) + r"[:`]", text), \
                f"{c['id']}: {name} glues no {key!r}"


def test_verdicts_agree_with_the_chapter_tables(book_claims):
    rows = chapter_rows()
    for c in book_claims:
        found = [v for name in c["tested_in"] for cid, v in rows.get(name, []) if cid == c["id"]]
        for name in c["tested_in"]:
            assert any(cid == c["id"] for cid, _ in rows.get(name, [])), f"{c['id']}: no row in {name}"
        assert c["verdict"] in claims.allowed_verdicts(found), (c["id"], found, c["verdict"])


def test_every_chapter_row_is_known_to_claims_yml(book_claims):
    tested_in = {c["id"]: c["tested_in"] for c in book_claims}
    for name, rows in chapter_rows().items():
        for cid, verdict in rows:
            if verdict is not None:
                assert name in tested_in[cid], f"{name} gives {cid} a verdict; add it to tested_in in claims.yml"


def test_every_verdict_rests_on_assertions_that_run(book_claims):
    for name in {n for c in book_claims for n in c["tested_in"]}:
        cells = json.loads((CHAPTERS / name).read_text(encoding="utf8"))["cells"]
        assert any(c["cell_type"] == "code" and re.search(r"^\s*assert ", "".join(c["source"]), re.M)
                   for c in cells), name


def test_normalise_verdict_accepts_the_four_verdicts_only():
    assert claims.normalise_verdict(" Holds  with conditions ") == "holds with conditions"
    assert claims.normalise_verdict("Not tested on this page") is None
    for word in ("mostly true", "half holds", "holds per step only"):
        with pytest.raises(ValueError, match="unknown verdict"):
            claims.normalise_verdict(word)
    with pytest.raises(TypeError):
        claims.normalise_verdict(None)


def test_allowed_verdicts():
    assert claims.allowed_verdicts(["holds", "holds", None]) == {"holds"}
    assert claims.allowed_verdicts(["holds", "does not hold"]) == {"holds", "does not hold", "holds with conditions"}
    assert claims.allowed_verdicts([None]) == set()


def test_verdict_rows_read_a_table(tmp_path):
    table = ("| claim | what it says | verdict | evidence |\n|---|---|---|---|\n"
             "| F3 (model) | x | **holds with conditions** in the NQM | y |\n"
             "| A3 | x | **does not hold**: z | |\n")
    nb = {"cells": [{"cell_type": "markdown", "source": [table]},
                    {"cell_type": "code", "source": ["| L1 | **holds**"]}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert claims.verdict_rows(path) == [("F3", "holds with conditions"), ("A3", "does not hold")]


def test_load_claims_rejects_missing_duplicate_and_bad_entries(tmp_path, book_claims):
    import yaml

    def write(entries):
        path = tmp_path / "claims.yml"
        path.write_text(yaml.safe_dump(entries))
        return path

    with pytest.raises(ValueError, match="missing: \\['A11'\\]"):
        claims.load_claims(write(book_claims[:-1]))
    with pytest.raises(ValueError, match="more than once"):
        claims.load_claims(write(book_claims + book_claims[:1]))
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.load_claims(write([{**book_claims[0], "verdict": "true"}] + book_claims[1:]))
    with pytest.raises(ValueError, match="'settle' is missing"):
        claims.load_claims(write([{**book_claims[0], "verdict": "untestable here"}] + book_claims[1:]))
    with pytest.raises(ValueError, match="no claims file"):
        claims.load_claims(tmp_path / "absent.yml")


def test_heading_anchor_and_glue_references():
    assert claims.heading_anchor("What the claims say") == "what-the-claims-say"
    assert claims.glue_references("x {glue:text}`01_a.ipynb::k_1:.2f` y") == [("01_a.ipynb", "k_1")]


def test_claims_table_has_one_row_per_claim(book_claims):
    table = claims.claims_table(book_claims, CHAPTERS).splitlines()
    assert len(table) == 2 + 34
    assert table[2].startswith("| L1 |") and table[-1].startswith("| A11 |")
