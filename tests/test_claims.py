"""Tests for claims.py, and of claims.yml against the chapters: one verdict per claim, links that resolve,
verdicts that agree with the verdict tables of the chapters that test them, and verdicts that rest on assertion
cells that name them (their "claims" metadata) and ran without error in the executed book."""
import json
import re
from pathlib import Path

import pytest

from batchsize import claims

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
# The executed notebooks of the last book build (README step 1): myst-nb writes each one there. The build aborts at
# the first notebook that raises; only a build that ran to its end writes BUILD_STATUS (_ext/build_reports.py).
EXECUTED = ROOT / "_build" / "jupyter_execute" / "chapters"
BUILD_STATUS = ROOT / "_build" / "html" / ".build-status.json"


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
            assert f'quote(\\"{key}\\"' in text or re.search(r"quote\." + re.escape(key) + r"\b", text), \
                f"{c['id']}: {name} quotes no {key!r}"


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


def test_every_assertion_cell_names_the_claims_it_checks():
    problems = []
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
            where = f"{path.name}, cell {cell.get('id')!r}"
            named = cell.get("metadata", {}).get("claims")
            if not claims.is_assertion_cell(cell):
                if named is not None:
                    problems.append(f"{where}: 'claims' metadata on a cell without an assert statement")
            elif named is None:
                problems.append(f"{where}: assertion cell without 'claims' metadata: the list of claim ids it checks "
                                "(cell metadata \"claims\"), [] if none")
            elif not isinstance(named, list) or not all(isinstance(cid, str) for cid in named):
                problems.append(f"{where}: 'claims' metadata must be a list of claim ids, got {named!r}")
            elif set(named) - set(claims.CLAIM_IDS):
                problems.append(f"{where}: unknown claim ids {sorted(set(named) - set(claims.CLAIM_IDS))}")
    assert not problems, "\n".join(problems)


def verdict_checks(book_claims):
    """{claim id: [(notebook, cell id), ...]}: the assertion cells naming a testable claim in its tested_in chapters."""
    checks = claims.assertion_checks(CHAPTERS)
    return {c["id"]: [(name, cid) for name, cid in checks[c["id"]] if name in c["tested_in"]]
            for c in book_claims if c["verdict"] != "untestable here"}


def test_every_verdict_is_named_by_an_assertion_cell_of_a_chapter_that_tests_it(book_claims):
    tested_in = {c["id"]: c["tested_in"] for c in book_claims}
    unchecked = [cid for cid, cells in verdict_checks(book_claims).items() if not cells]
    assert not unchecked, "no assertion cell names these claims in a chapter of their tested_in: " + ", ".join(
        f"{cid} (tested_in {tested_in[cid]})" for cid in unchecked)


def test_every_check_of_a_verdict_ran_and_passed_in_the_built_book(book_claims):
    if not EXECUTED.is_dir():
        pytest.skip(f"no executed book in {EXECUTED}: build it first (README step 1, "
                    "jupyter-book build --all -W -n --keep-going .)")
    assert BUILD_STATUS.is_file(), (f"the last book build stopped before its end (no {BUILD_STATUS}), so the "
                                    f"notebooks in {EXECUTED} may be older than the chapters: see _build/html/reports/")
    checks = verdict_checks(book_claims)
    unchecked = [cid for cid, cells in checks.items() if not cells]
    assert not unchecked, f"claims named by no assertion cell of their tested_in chapters: {unchecked}"
    named = {}  # notebook -> {cell id: [claim ids]}
    for cid, cells in checks.items():
        for name, cell_id in cells:
            named.setdefault(name, {}).setdefault(cell_id, []).append(cid)
    problems = []
    for name, cells in sorted(named.items()):
        executed_path = EXECUTED / name
        if not executed_path.is_file():
            problems.append(f"{name}: no executed copy in {EXECUTED}: its execution failed or the build stopped "
                            f"before it (see _build/html/reports/)")
            continue
        source_nb = json.loads((CHAPTERS / name).read_text(encoding="utf8"))
        executed = json.loads(executed_path.read_text(encoding="utf8"))
        code = [(c.get("id"), "".join(c["source"])) for c in source_nb["cells"] if c["cell_type"] == "code"]
        if code != [(c.get("id"), "".join(c["source"])) for c in executed["cells"] if c["cell_type"] == "code"]:
            problems.append(f"{name}: the executed copy's code differs from the chapter's: rebuild the book")
            continue
        by_id = {c.get("id"): c for c in executed["cells"]}
        for cell_id, cids in cells.items():
            cell = by_id[cell_id]
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if not isinstance(cell.get("execution_count"), int):
                problems.append(f"{name}, cell {cell_id!r} (checks {cids}): did not run in the built book")
            elif errors:
                problems.append(f"{name}, cell {cell_id!r} (checks {cids}): raised {errors[0].get('ename')}: "
                                f"{errors[0].get('evalue')}")
    assert not problems, "\n".join(problems)


def test_assertion_checks_reads_the_claims_metadata(tmp_path):
    def code(source, **metadata):
        return {"cell_type": "code", "id": f"c{len(cells)}", "metadata": metadata, "source": [source],
                "outputs": [], "execution_count": None}

    cells = []
    for source, meta in (("assert x > 0\n", {"claims": ["L1", "F5"]}), ("if x:\n    assert y\n", {"claims": []}),
                         ("np.testing.assert_allclose(a, b)", {"claims": ["A1"]}),  # no assert statement
                         ("%matplotlib inline\nassert z", {"claims": ["F5"]}), ("x = 1", {})):
        cells.append(code(source, **meta))
    cells.append({"cell_type": "markdown", "id": "m", "metadata": {"claims": ["A2"]}, "source": ["assert"]})
    (tmp_path / "a.ipynb").write_text(json.dumps({"cells": cells}))
    checks = claims.assertion_checks(tmp_path)
    assert set(checks) == set(claims.CLAIM_IDS)
    assert checks["L1"] == [("a.ipynb", "c0")] and checks["F5"] == [("a.ipynb", "c0"), ("a.ipynb", "c3")]
    assert checks["A1"] == checks["A2"] == []
    assert [claims.is_assertion_cell(c) for c in cells] == [True, True, False, True, False, False]
    cells[0]["metadata"]["claims"] = ["L9"]
    (tmp_path / "a.ipynb").write_text(json.dumps({"cells": cells}))
    with pytest.raises(ValueError, match="unknown claim ids \\['L9'\\]"):
        claims.assertion_checks(tmp_path)


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


def test_a_claims_file_that_is_not_yaml_is_named_in_the_error(tmp_path):
    bad = tmp_path / "mine.yml"
    bad.write_text("- id: L1\n  claim: [unclosed\n")
    with pytest.raises(ValueError, match=r"mine.yml is not valid YAML: while parsing"):
        claims.load_claims(bad)


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


def test_claims_table_keeps_the_roles_only_inside_the_book(book_claims):
    inside = claims.claims_table(book_claims, CHAPTERS, in_book=True)
    outside = claims.claims_table(book_claims, CHAPTERS, in_book=False)
    assert inside.count("{glue:text}") == sum(len(claims.glue_references(c["number"])) for c in book_claims) > 30
    assert "{glue" not in outside and "to measure it)" in outside


# ---------------------------------------------------------------------------------------------------------------
# the chapter index shipped with the package (chapters.json), so chapter 5 runs from any working directory

def test_the_shipped_chapter_index_matches_the_chapters():
    shipped = claims.chapter_index()
    assert shipped == claims.build_chapter_index(CHAPTERS), (
        "lib/batchsize/chapters.json is out of date with chapters/*.ipynb (a title or a verdict table changed): "
        "rewrite it with python -c \"from batchsize import claims; claims.write_chapter_index('chapters')\"")
    assert list(shipped) == sorted(p.name for p in CHAPTERS.glob("*.ipynb"))
    assert claims.chapter_verdict_rows() == chapter_rows()


def test_the_chapter_index_is_package_data():
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert claims.chapter_index_path().name in package_data["batchsize"]
    assert claims.chapter_index_path().parent == Path(claims.__file__).parent


def test_claims_table_from_the_shipped_index_is_the_table_from_the_chapters(book_claims):
    for in_book in (True, False):
        assert claims.claims_table(book_claims, in_book=in_book) == claims.claims_table(book_claims, CHAPTERS,
                                                                                         in_book=in_book)
    assert f"[{claims.chapter_title('02_batch_size_tradeoffs.ipynb')}](02_batch_size_tradeoffs.ipynb#" in (
        claims.claims_table(book_claims))


def write_chapter(folder, name, title, table=""):
    cells = [{"cell_type": "markdown", "source": [f"# {title}\n\nText.\n"]},
             {"cell_type": "markdown", "source": [table]}]
    (folder / name).write_text(json.dumps({"cells": cells}))


def test_write_chapter_index_reads_back_and_the_titles_and_rows_come_from_it(tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    write_chapter(chapters, "01_a.ipynb", "First “chapter”",
                  "| claim | x | verdict | y |\n|---|---|---|---|\n| F3 | x | **holds** | y |\n"
                  "| A3 | x | **not tested on this page** | |\n")
    write_chapter(chapters, "02_b.ipynb", "Second")
    path = claims.write_chapter_index(chapters, tmp_path / "index.json")
    index = json.loads(path.read_text(encoding="utf8"))
    assert index["chapters"] == {"01_a.ipynb": {"title": "First “chapter”", "verdict_rows": [["F3", "holds"],
                                                                                           ["A3", None]]},
                                 "02_b.ipynb": {"title": "Second", "verdict_rows": []}}
    assert index["chapters"] == claims.chapter_index(chapters)
    assert claims.chapter_title("02_b.ipynb", chapters) == "Second"
    assert claims.chapter_verdict_rows(chapters) == {"01_a.ipynb": [("F3", "holds"), ("A3", None)]}


def test_the_chapter_index_rejects_bad_input(tmp_path, monkeypatch, book_claims):
    with pytest.raises(TypeError, match="must be a path"):
        claims.chapter_index(5)
    with pytest.raises(FileNotFoundError, match="no chapter notebooks"):
        claims.chapter_index(tmp_path)
    with pytest.raises(TypeError, match="must be a string"):
        claims.chapter_title(1)
    with pytest.raises(ValueError, match="no chapter named 'nope.ipynb'"):
        claims.chapter_title("nope.ipynb")
    write_chapter(tmp_path, "01_a.ipynb", "First")
    with pytest.raises(ValueError, match="names the chapter '0.*', which is not one of 01_a.ipynb"):
        claims.claims_table(book_claims, tmp_path)
    monkeypatch.setattr(claims, "chapter_index_path", lambda: tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="no chapter index at .*absent.json.*write_chapter_index"):
        claims.chapter_index()
    (tmp_path / "absent.json").write_text(json.dumps({"chapters": {"01_a.ipynb": {"title": "First"}}}))
    with pytest.raises(ValueError, match="'01_a.ipynb' must have a 'title' and 'verdict_rows'"):
        claims.chapter_index()
