"""The web texts' claims and the book's verdicts: loading claims.yml and reading the chapters' verdict tables.

claims.yml, shipped inside this package (lib/batchsize/claims.yml), is the one source of truth for the 34 verdicts (L1-L5 from the course
lesson, F1-F18 from the forum answer, A1-A11 from the blog article). Each chapter that tests a claim ends with a
table whose rows read `| <claim id> | what it says | **<verdict>**: why | evidence |`; `verdict_rows` reads them,
and the tests check that claims.yml and the chapters agree. Each assertion cell of a chapter names the claims it
checks in its metadata, `"claims": [<claim id>, ...]` (an empty list for a check of a method); `assertion_checks`
collects them, so the tests can require every verdict to rest on checks that ran. Introduced in chapter 5 (the
claims, tested).

The chapters themselves are not part of an installed package (a reader who pip-installs the library from git has
no chapters/ folder), so the little that chapter 5 needs of them, each chapter's title and verdict rows, ships
inside the package as chapters.json (`chapter_index`): written from the notebooks by `write_chapter_index`,
and checked against them by tests/test_claims.py. Chapter 5 therefore runs from any working directory.
"""
import ast
import json
import os
import re
from pathlib import Path

from .prose import in_book_build

CLAIM_IDS = tuple([f"L{i}" for i in range(1, 6)] + [f"F{i}" for i in range(1, 19)]
                  + [f"A{i}" for i in range(1, 12)])
VERDICTS = ("holds", "holds with conditions", "does not hold", "untestable here")
# The verdict cell of a chapter row that names a claim tested on another page (its verdict there counts).
ELSEWHERE = "not tested on this page"
_FIELDS = {"id", "claim", "verdict", "why", "number", "tested_in", "settle"}
_ROW = re.compile(r"^\|\s*([LFA]\d+)\b[^|]*\|[^|]*\|\s*\*\*([^*]+)\*\*")
_GLUE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)::([^`:]+)(?::[^`]*)?`")
_ASSERT_LINE = re.compile(r"^\s*assert\b", re.M)


def default_path():
    """The claims.yml shipped with this package. Introduced in chapter 5."""
    return Path(__file__).with_name("claims.yml")


def chapter_index_path():
    """The chapters.json shipped with this package: every chapter's title and verdict rows. Introduced in chapter 5."""
    return Path(__file__).with_name("chapters.json")


def normalise_verdict(text):
    """One of VERDICTS for the verdict of a chapter table row (None for ELSEWHERE). Introduced in chapter 5."""
    if not isinstance(text, str):
        raise TypeError(f"a verdict must be a string, got {type(text).__name__}")
    word = " ".join(text.strip().lower().split())
    if word in VERDICTS:
        return word
    if word == ELSEWHERE:
        return None
    raise ValueError(f"unknown verdict {text!r}: use one of {', '.join(VERDICTS)}, or {ELSEWHERE!r} for a row "
                     f"that names a claim tested on another page")


def load_yaml(path):
    """The parsed YAML file at path; a ValueError naming the file when it is not valid YAML."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from error


def load_claims(path=None):
    """The claims of claims.yml as a list of dicts, checked. Introduced in chapter 5 (the claims, tested).

    Every claim has an id, a one-sentence `claim`, a `verdict` (one of VERDICTS), a short `why`, the
    chapters it is `tested_in` (the first is linked) and a `number` measured there (a glue role); an
    untestable claim says instead, in `settle`, which experiment would settle it.
    """
    path = Path(default_path() if path is None else path)
    if not path.is_file():
        raise ValueError(f"no claims file at {path}: the book's verdicts are in lib/batchsize/claims.yml")
    claims = load_yaml(path)
    if not isinstance(claims, list):
        raise ValueError(f"{path.name} must hold a list of claims, got {type(claims).__name__}")
    for claim in claims:
        if not isinstance(claim, dict) or "id" not in claim:
            raise ValueError(f"every claim in {path.name} must be a mapping with an id, got {claim!r}")
        where = f"claim {claim['id']!r} in {path.name}"
        if claim["id"] not in CLAIM_IDS:
            raise ValueError(f"{where}: unknown id; ids are {CLAIM_IDS[0]}-L5, F1-F18 and A1-{CLAIM_IDS[-1]}")
        unknown = set(claim) - _FIELDS
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
        if claim.get("verdict") not in VERDICTS:
            raise ValueError(f"{where}: verdict must be one of {VERDICTS}, got {claim.get('verdict')!r}")
        needed = ["claim", "why"] + (["settle"] if claim["verdict"] == "untestable here" else [])
        needed += ["tested_in", "number"]
        for name in needed:
            if not claim.get(name):
                raise ValueError(f"{where}: {name!r} is missing or empty")
        if not isinstance(claim["tested_in"], list) or not all(isinstance(t, str) for t in claim["tested_in"]):
            raise ValueError(f"{where}: tested_in must be a list of notebook names, e.g. [01_gradient_variance.ipynb]")
    ids = [c["id"] for c in claims]
    if sorted(ids) != sorted(CLAIM_IDS):
        missing = sorted(set(CLAIM_IDS) - set(ids))
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path.name} must give each of the {len(CLAIM_IDS)} claims exactly one verdict; "
                         f"missing: {missing}, more than once: {twice}")
    return claims


def notebook_markdown(path):
    """The markdown cells of a notebook, as one string per cell. Introduced in chapter 5."""
    cells = json.loads(Path(path).read_text(encoding="utf8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def verdict_rows(path):
    """(claim id, verdict) for every row of a notebook's verdict tables, verdicts normalised. Introduced in chapter 5.

    None as a verdict marks a row saying the claim is tested on another page.
    """
    rows = []
    for text in notebook_markdown(path):
        if "| claim |" not in text:
            continue
        for line in text.splitlines():
            match = _ROW.match(line.strip())
            if match:
                rows.append((match.group(1), normalise_verdict(match.group(2))))
    return rows


def allowed_verdicts(verdicts):
    """The verdicts claims.yml may give a claim whose chapter rows say `verdicts`. Introduced in chapter 5.

    Where the rows agree, their verdict; where they differ (a claim tested part by part), any of theirs or
    "holds with conditions", and claims.yml says why in `why`. Rows marked None (tested elsewhere) are left
    out; an empty set if no row is left.
    """
    found = {v for v in verdicts if v is not None}
    return found | {"holds with conditions"} if len(found) > 1 else found


def heading_anchor(title):
    """The anchor MyST gives a heading: "what-the-claims-say" for "What the claims say". Introduced in chapter 5."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def glue_references(text):
    """(notebook, key) of every cross-page glue role in text, written notebook::key. Introduced in chapter 5."""
    return _GLUE.findall(text)


def notebook_title(path):
    """The first level-1 heading of a notebook. Introduced in chapter 5."""
    for text in notebook_markdown(path):
        for line in text.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    raise ValueError(f"{path} has no level-1 heading")


_INDEX_ABOUT = ("Each chapter's title and verdict rows, read from chapters/*.ipynb by batchsize.claims."
                "write_chapter_index; tests/test_claims.py checks that they match the chapters.")
_REGENERATE = ("python -c \"from batchsize import claims; claims.write_chapter_index('chapters')\" "
               "in the repository")


def build_chapter_index(chapters_dir):
    """{notebook name: {"title", "verdict_rows"}} read from the notebooks in chapters_dir. Introduced in chapter 5."""
    if not isinstance(chapters_dir, (str, os.PathLike)):
        raise TypeError(f"chapters_dir must be a path, got {type(chapters_dir).__name__}")
    chapters_dir = Path(chapters_dir)
    paths = sorted(chapters_dir.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no chapter notebooks (*.ipynb) in {chapters_dir.resolve()}")
    return {p.name: {"title": notebook_title(p), "verdict_rows": [list(row) for row in verdict_rows(p)]}
            for p in paths}


def write_chapter_index(chapters_dir, path=None):
    """Write build_chapter_index(chapters_dir) to path (default: the package's chapters.json); return the path.

    Run it after changing a chapter's title or verdict table. Introduced in chapter 5.
    """
    path = chapter_index_path() if path is None else Path(path)
    chapters = build_chapter_index(chapters_dir)

    def dumps(value):
        return json.dumps(value, ensure_ascii=False)

    # One line per verdict row, so that a change to a chapter's table is a one-line diff.
    entries = []
    for name, entry in chapters.items():
        rows = ",\n".join(f"    {dumps(row)}" for row in entry["verdict_rows"])
        entries.append(f'  {dumps(name)}: {{"title": {dumps(entry["title"])}, "verdict_rows": ['
                       + (f"\n{rows}\n  ]}}" if rows else "]}"))
    text = f'{{"about": {dumps(_INDEX_ABOUT)},\n "chapters": {{\n' + ",\n".join(entries) + "\n }\n}\n"
    if json.loads(text) != {"about": _INDEX_ABOUT, "chapters": chapters}:  # the layout above is JSON of the index
        raise RuntimeError("write_chapter_index made JSON that does not read back as the index")
    path.write_text(text, encoding="utf8")
    return path


def chapter_index(chapters_dir=None):
    """{notebook name: {"title": str, "verdict_rows": [[claim id, verdict or None], ...]}}, by notebook name.

    From the chapters.json shipped with this package, which works wherever the package is installed and
    whatever the working directory; from the notebooks in chapters_dir instead when it is given. Introduced in
    chapter 5.
    """
    if chapters_dir is not None:
        return build_chapter_index(chapters_dir)
    path = chapter_index_path()
    if not path.is_file():
        raise FileNotFoundError(f"no chapter index at {path}: it ships with the package (package data "
                                f"chapters.json); write it with {_REGENERATE}")
    index = json.loads(path.read_text(encoding="utf8"))
    chapters = index.get("chapters") if isinstance(index, dict) else None
    if not isinstance(chapters, dict) or not chapters:
        raise ValueError(f"{path} must hold {{'chapters': {{notebook name: ...}}}}; write it with {_REGENERATE}")
    for name, entry in chapters.items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("title"), str)
                or not isinstance(entry.get("verdict_rows"), list)):
            raise ValueError(f"{path}: the entry of {name!r} must have a 'title' and 'verdict_rows'; write it "
                             f"with {_REGENERATE}")
    return chapters


def chapter_title(name, chapters_dir=None):
    """The title of the chapter notebook `name` (e.g. "02_batch_size_tradeoffs.ipynb"). Introduced in chapter 5."""
    if not isinstance(name, str):
        raise TypeError(f"a chapter name must be a string such as '01_gradient_variance.ipynb', got "
                        f"{type(name).__name__}")
    index = chapter_index(chapters_dir)
    if name not in index:
        raise ValueError(f"no chapter named {name!r}; the chapters are {', '.join(index)}")
    return index[name]["title"]


def chapter_verdict_rows(chapters_dir=None):
    """{notebook name: verdict_rows of that chapter} for every chapter with a verdict table. Introduced in chapter 5.

    From the package's chapters.json (see `chapter_index`), so it works from any working directory.
    """
    return {name: [tuple(row) for row in entry["verdict_rows"]]
            for name, entry in chapter_index(chapters_dir).items() if entry["verdict_rows"]}


def claims_table(claims, chapters_dir=None, anchor="what-the-claims-say", in_book=None):
    """The claims as one MyST table: id, claim, verdict and why, key number, link. Introduced in chapter 5.

    The chapters' titles come from the package's chapter index (`chapter_index`), or from the notebooks in
    chapters_dir when it is given. The key numbers are cross-page glue roles that only the book's build can fill
    from the chapters' runs (`in_book`, by default whether this kernel runs inside the build); elsewhere a
    number's cell names the value and the chapter that measures it when run.
    """
    titles = {name: entry["title"] for name, entry in chapter_index(chapters_dir).items()}

    def title(name, claim):
        if name not in titles:
            raise ValueError(f"claim {claim['id']!r} names the chapter {name!r}, which is not one of "
                             f"{', '.join(titles)}")
        return titles[name]

    in_book = in_book_build() if in_book is None else in_book
    lines = ["| claim | what the text says | verdict | key measured number | tested in |", "|---|---|---|---|---|"]
    for claim in sorted(claims, key=lambda c: CLAIM_IDS.index(c["id"])):
        why = claim["why"] + (f" *To settle it:* {claim['settle']}" if claim.get("settle") else "")
        links = ", ".join(f"[{title(t, claim)}]({t}#{anchor})" for t in claim["tested_in"])
        number = claim["number"] if in_book else _GLUE.sub(
            lambda m: f"`{m.group(2)}` (run {title(m.group(1), claim)} to measure it)", claim["number"])
        cells = [claim["id"], claim["claim"], f"**{claim['verdict']}**: {why}", number, links]
        lines.append("| " + " | ".join(" ".join(str(c).split()).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _parse_cell(source):
    """The syntax tree of a cell's code, read as IPython if plain Python fails (magics, shell escapes); None if neither."""
    try:
        return ast.parse(source)
    except SyntaxError:
        pass
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return ast.parse(TransformerManager().transform_cell(source))
    except (ImportError, SyntaxError):
        return None


def is_assertion_cell(cell):
    """Whether a notebook cell (a dict of the .ipynb) is code holding an assert statement. Introduced in chapter 5."""
    if cell.get("cell_type") != "code":
        return False
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    if "assert" not in source:
        return False
    tree = _parse_cell(source)
    if tree is None:  # not Python even for IPython: fall back to the text
        return bool(_ASSERT_LINE.search(source))
    return any(isinstance(node, ast.Assert) for node in ast.walk(tree))


def assertion_checks(chapters_dir):
    """{claim id: [(notebook, cell id), ...]}, from the "claims" metadata of assertion cells. Introduced in chapter 5."""
    checks = {cid: [] for cid in CLAIM_IDS}
    for path in sorted(Path(chapters_dir).glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
            if not is_assertion_cell(cell) or "claims" not in cell.get("metadata", {}):
                continue
            named = cell["metadata"]["claims"]
            where = f"{path.name}, cell {cell.get('id')!r}"
            if not isinstance(named, list) or not all(isinstance(cid, str) for cid in named):
                raise ValueError(f"{where}: the 'claims' metadata must be a list of claim ids, got {named!r}")
            unknown = sorted(set(named) - set(CLAIM_IDS))
            if unknown:
                raise ValueError(f"{where}: unknown claim ids {unknown}; ids are L1-L5, F1-F18 and A1-A11")
            for cid in dict.fromkeys(named):
                checks[cid].append((path.name, cell.get("id")))
    return checks
