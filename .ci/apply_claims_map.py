#!/usr/bin/env python3
"""Write the claims each assertion cell checks into its metadata, from .ci/claims_map.json.

The map reads {"<notebook>": {"<cell id>": {"claims": [<claim id>, ...], "why": "..."}}}; every assertion cell
(a code cell holding an assert statement, `batchsize.claims.is_assertion_cell`) of every notebook it names gets
`metadata["claims"]` set to its list. tests/test_claims.py requires that metadata.

    python .ci/apply_claims_map.py                       # the repository's chapters/
    python .ci/apply_claims_map.py --chapters /tmp/ch    # a copy
    python .ci/apply_claims_map.py --check               # exit 1 if a notebook would change; writes nothing

The notebooks are written as the repository writes them: json.dumps(nb, indent=1, ensure_ascii=False) and a
trailing newline, keys in their existing order ("claims" joins a cell's metadata in sorted place when its keys are
sorted, as nbformat would put it). A notebook that is not in that format, a cell id that is missing, a named cell
that is not an assertion cell, an unknown claim id or an assertion cell the map leaves out stops the script before
anything is written. A notebook whose metadata already says what the map says is left byte for byte as it was.
"""
import argparse
import json
import sys
from pathlib import Path

from batchsize import claims

ROOT = Path(__file__).resolve().parents[1]


def dumps(nb):
    """A notebook as the repository writes it."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def with_claims(metadata, named):
    """metadata with "claims" set to named, in place if present, else in sorted place when the keys are sorted."""
    if "claims" in metadata or list(metadata) != sorted(metadata):
        return {**metadata, "claims": named}
    return dict(sorted({**metadata, "claims": named}.items()))


def apply(mapping, chapters):
    """{notebook path: new text} of the notebooks the map changes; raises SystemExit with every problem found."""
    problems, changed = [], {}
    for name, cells in mapping.items():
        path = chapters / name
        if not path.is_file():
            problems.append(f"{name}: no such notebook in {chapters}")
            continue
        raw = path.read_bytes().decode("utf8")  # bytes: no newline translation
        nb = json.loads(raw)
        if dumps(nb) != raw:
            problems.append(f"{name}: not formatted as json.dumps(nb, indent=1, ensure_ascii=False) + newline; "
                            "rewriting it would change more than the metadata")
            continue
        by_id = {cell.get("id"): cell for cell in nb["cells"]}
        for cell_id, entry in cells.items():
            where = f"{name}, cell {cell_id!r}"
            cell = by_id.get(cell_id)
            if cell is None:
                problems.append(f"{where}: no cell with this id")
                continue
            if not claims.is_assertion_cell(cell):
                problems.append(f"{where}: not an assertion cell (a code cell with an assert statement)")
                continue
            named = entry.get("claims") if isinstance(entry, dict) else None
            if not isinstance(named, list) or not all(isinstance(cid, str) for cid in named):
                problems.append(f"{where}: 'claims' must be a list of claim ids, got {named!r}")
                continue
            unknown = sorted(set(named) - set(claims.CLAIM_IDS))
            if unknown:
                problems.append(f"{where}: unknown claim ids {unknown}")
                continue
            if not (isinstance(entry.get("why"), str) and entry["why"].strip()):
                problems.append(f"{where}: 'why' must say in a sentence what the cell checks")
            cell["metadata"] = with_claims(cell.get("metadata", {}), named)
        left_out = [c.get("id") for c in nb["cells"] if claims.is_assertion_cell(c) and c.get("id") not in cells]
        if left_out:
            problems.append(f"{name}: assertion cells missing from the map: {left_out}")
        text = dumps(nb)
        if text != raw:
            changed[path] = text
    for path in sorted(chapters.glob("*.ipynb")):
        if path.name not in mapping and any(map(claims.is_assertion_cell, json.loads(path.read_bytes())["cells"])):
            problems.append(f"{path.name}: has assertion cells but is not in the map")
    if problems:
        raise SystemExit("apply_claims_map: nothing written:\n  " + "\n  ".join(problems))
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map", type=Path, default=ROOT / ".ci" / "claims_map.json")
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook would change; write nothing")
    args = parser.parse_args(argv)
    mapping = json.loads(args.map.read_text(encoding="utf8"))
    changed = apply(mapping, args.chapters)
    for path, text in changed.items():
        if not args.check:
            path.write_bytes(text.encode("utf8"))
        print(f"{'would change' if args.check else 'wrote'} {path}")
    if not changed:
        print(f"all {len(mapping)} notebooks already carry the map's claims")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
