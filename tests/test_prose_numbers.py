r"""Every number in the book's prose comes from the run: no hand-typed results in markdown, captions or alt texts.

The rule, mechanical on purpose:

- Prose is the markdown of the chapters (their markdown cells) and of the book's top-level .md pages. Left out
  before looking for numbers: roles ({eval}, {glue:...}, {cite:...}, {doc}, {numref}, {ref}, {term}, ...), inline
  code and code fences, URLs and link targets, directive options (`:label: ...`), label lines `(name)=`, a
  heading's section number, and names with a digit in them (F3, MNIST-1D, float32, CNN1D).
- In math, a number is a constant of a formula ($(\theta - 3)^2$, $1/\sqrt B$) and allowed, unless the math
  *states* it as a value: right after a relation (=, <, >, \le, \approx, \sim, ...), in a list that follows one,
  or as the whole of the math ($0.46$, $3 \times 10^{-4}$). A stated number obeys the rule below: $B = 32$ passes
  when the code sets 32, $\approx 0.46$ typed by hand does not.
- A number in prose is allowed when it is
  (a) a year, 1900-2099, after "in", "since", a citation or an opening parenthesis, or before ")", and not
      followed by a unit ("in 2018 the", "(2017)", "Smith, 2022)"; not "in 2000 steps", "in 2000 s");
  (b) a constant of the setup: it is a numeric literal of the same page's code (a code cell, or a {code-cell} of a
      .md page): batch sizes, seeds, steps, grids and tolerances typed into the code are the experiment's setup,
      not its results (a percentage may match a literal fraction: "10 %" and 0.1);
  (c) inside a match of a pattern of prose_numbers_allowed.yml, each with its reason (chapter numbers, ...);
  (d) in the "what it says" column of a claims table (| F17 | the claim's words | verdict | evidence |): the web
      text's own numbers, the claim under test; the verdict column is checked like any prose.
- Arithmetic in math is checked, not trusted: a stated number whose left-hand side is plain arithmetic
  ($\sqrt{128} \approx 11.3$, $(100 + 100) \times 4 = 800$, $\lfloor 11/2 \rfloor = 5$) passes when the arithmetic
  gives it to its last written digit, and fails when it does not. 0, 1 and 2 after an exact relation
  ($\eta > 0$, $= 1$) are constants of mathematics.
- Captions (markdown cells tagged figure-caption) and alt texts (mystnb.image.alt in a code cell's metadata,
  `![alt](...)`, `:alt:`) are stricter: every number, math included, must be a literal of the page's code; no
  formula-constant, year or allowlist exemption (an alt text cannot hold an {eval} role, so write it in words).

What the rule cannot see: a result that happens to equal a literal of the code ("about 10 steps" when the code
also contains 10), and results written in words ("five times smaller"). Those are for the reviewer.
"""
import io
import json
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
# The top-level pages of the book (the .md files of _toc.yml; README.md is the repository's, not the book's).
PAGES = sorted(p for p in ROOT.glob("*.md") if p.name != "README.md")
ALLOWED_FILE = Path(__file__).with_name("prose_numbers_allowed.yml")

# --- the numbers of a page's code ------------------------------------------------------------------------------


def number_value(text):
    """The value of a number as written in prose or code: 15 210, 1,000, 1_000, 0.10, 1e-3, 3 \\times 10^{-4}."""
    sci = re.fullmatch(r"(\d+(?:\.\d+)?)?\s*(?:\\times|\\cdot|×)?\s*10\^\{?([-+−]?\d+)\}?", text)
    if sci:
        return float(sci[1] or 1) * 10.0 ** int(sci[2].replace("−", "-"))
    return float(re.sub(r"[\s,_\u00a0\u2009\u202f]", "", text))


def code_literals(sources):
    """The numeric literals of Python code (a notebook's code cells), as floats."""
    values = set()
    for source in sources:
        # IPython magics and shell lines are not Python; blank them so the rest tokenizes.
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))
        try:
            tokens = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                      if t.type == tokenize.NUMBER]
        except (tokenize.TokenError, IndentationError, SyntaxError):
            tokens = re.findall(r"(?<![\w.])\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?", source)
        for token in tokens:
            try:
                values.add(float(token.replace("_", "").rstrip("jJ")))
            except ValueError:
                pass
    return values


def is_literal(value, literals, percent=False):
    """Whether `value` (a percentage when `percent`) is one of the code's literals."""
    candidates = [value, value / 100] if percent else [value]
    return any(abs(v - lit) <= 1e-9 * max(1.0, abs(lit)) for v in candidates for lit in literals)


# --- from markdown to the text whose numbers count --------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}|:{3,})\s*(.*?)\s*$")
# Fences that hold markdown (prose): directives such as exercise, solution, admonition, note.
MARKDOWN_DIRECTIVE = re.compile(r"^\{(?!(math|code-block|code-cell|code|eval-rst|glue:[a-z]+|bibliography|"
                                r"nb-exec-table)\})[\w:-]+\}")
OPTION = re.compile(r"^ {0,3}:([\w-]+):\s*(.*)$")
ROLE = re.compile(r"\{([\w:-]+)\}(`+)(.+?)\2", re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)]*)\)")
URL = re.compile(r"<?\bhttps?://[^\s)>]+>?")
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)(.+?)(?<![\\\s])\$", re.DOTALL)
HEADING_NUMBER = re.compile(r"^(#{1,6}\s+)(?:\d+(?:\.\d+)*\.?\s+)")
LIST_MARKER = re.compile(r"^(\s*)\d+[.)](?=\s)")  # "2. " opening an item of a numbered list
LABEL_LINE = re.compile(r"^\s*\([\w.:-]+\)=\s*$")
CITED = "⟨cite⟩"  # what a citation role leaves in the text: a year next to it is the year of a work


def math_mark(k):
    """The placeholder of the k-th math segment in the prose: no digit in it, so no number."""
    return f"⟨math{chr(0xE000 + k)}⟩"


@dataclass
class Prose:
    text: str  # the prose, with math replaced by math_mark(k) placeholders
    math: list  # the math segments, in order
    alts: list  # alt texts found in the markdown (images, :alt: options)
    code: list  # code of {code-cell} fences (a .md page's code)
    display_math: list  # contents of {math} directives


def strip_markdown(source):
    """Split markdown into prose, math, alt texts and code, dropping what holds no number of the text."""
    lines, fences, alts, code, display = [], [], [], [], []
    options_open = False
    for line in source.split("\n"):
        fence = FENCE.match(line)
        if fence and fences and not fence[2] and fence[1][0] == fences[-1][0][0] and len(fence[1]) >= len(
                fences[-1][0]):
            fences.pop()
            options_open = False
            lines.append("")
            continue
        if fence and (not fences or fences[-1][1] == "markdown"):
            info = fence[2]
            kind = ("markdown" if MARKDOWN_DIRECTIVE.match(info) else "code-cell" if info.startswith("{code-cell}")
                    else "math" if info.startswith("{math}") else "verbatim")
            fences.append((fence[1], kind))
            options_open = kind == "markdown"
            if kind == "code-cell":
                code.append("")
            lines.append("")
            continue
        kind = fences[-1][1] if fences else "markdown"
        if kind == "code-cell":
            if not OPTION.match(line):
                code[-1] += line + "\n"
            lines.append("")
            continue
        if kind == "math":
            display.append(line)
            lines.append("")
            continue
        if kind == "verbatim":
            lines.append("")
            continue
        option = OPTION.match(line)
        if options_open and option:
            if option[1] == "alt":
                alts.append(option[2])
            lines.append("")
            continue
        options_open = False
        if LABEL_LINE.match(line) or line.strip() == "+++":
            lines.append("")
            continue
        lines.append(LIST_MARKER.sub(r"\1", HEADING_NUMBER.sub(r"\1", line)))
    text = "\n".join(lines)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    text = re.sub(r"</?[A-Za-z][^<>\n]*>", " ", text)  # HTML tags and their attributes (href="...01_x.ipynb")
    math = []

    def keep_math(content):
        math.append(content)
        return math_mark(len(math) - 1)

    def role(m):
        name = m[1]
        if name == "math":
            return keep_math(m[3])
        return CITED if name.startswith("cite") else f"⟨{name.split(':')[0]}⟩"

    text = ROLE.sub(role, text)
    text = INLINE_CODE.sub("⟨code⟩", text)

    def link(m):
        if m[1]:
            alts.append(m[2])
            return "⟨image⟩"
        return m[2]

    text = LINK.sub(link, text)
    text = URL.sub("⟨url⟩", text)
    text = MATH.sub(lambda m: keep_math(m[1] if m[1] is not None else m[2]), text)
    return Prose(text, math, alts, code, display)


# --- the numbers, and which are allowed -------------------------------------------------------------------------

# A number in prose: 15 210 (a space between groups of three), 1,000, 0.5, .5, 1e-3; a digit glued to a letter
# before it (F3, float32, x86) or after it (1D, CNN1D, 3rd is handled below) makes a name, not a number.
PROSE_NUMBER = re.compile(
    r"(?<![\w.])(?<![A-Za-z]-)"
    r"(\d{1,3}(?:[ \u00a0\u2009\u202f]\d{3})+(?![\d.])|\d{1,3}(?:,\d{3})+(?![\d])|\d*\.\d+|\d+)"
    r"(?:[eE][-+]?\d+)?")
ORDINAL_OR_TIMES = re.compile(r"(st|nd|rd|th|x|×)(?![A-Za-z])")
RELATION = (r"(?:=|<|>|≈|≤|≥|\\(?:approx|simeq|sim|leq|le|geq|ge|lesssim|gtrsim|ll|gg|neq|ne|lt|gt)(?![A-Za-z]))")
MATH_NUMBER = r"(?:\d+(?:\.\d+)?\s*(?:\\times|\\cdot)\s*10\^\{?[-−]?\d+\}?|10\^\{?[-−]?\d+\}?|\d+(?:\.\d+)?)"
# A stated number is the whole right-hand side: after it comes the end, punctuation, a unit or another relation
# ($\eta\lambda > 2(1 + \beta)$ is a formula, its 2 a constant of it; $B = 32$, $\approx 0.46$ state values).
RHS_END = (r"(?=\s*(?:$|[,.;:)\]|]|\\[,;! ]|\\q?quad|\\%|\\text|\\mathrm|\\operatorname|\\times\s*$|"
           + RELATION + "))")
STATED = re.compile(RELATION + r"\s*(?:\\[,;!]\s*)*\{?\s*[-−+]?\s*(" + MATH_NUMBER + r"(?:\s*,\s*(?:\\dots\s*,\s*)?"
                    + MATH_NUMBER + r")*)\}?" + RHS_END)
# 0, 1 and 2 after an exact relation are constants of mathematics ($\eta > 0$, $= 1$, $\eta\lambda > 2$), not values
# that a run could produce; after \approx or \sim they are checked like any other number.
EXACT_SMALL = re.compile(r"(?:=|<|>|≤|≥|\\(?:leq|le|geq|ge|lt|gt|neq|ne)(?![A-Za-z]))"
                         r"\s*(?:\\[,;!]\s*)*\{?\s*[-−+]?\s*[012]\}?" + RHS_END)
ONLY_A_NUMBER = re.compile(r"\s*[-−+]?\s*(" + MATH_NUMBER
                           + r")\s*(?:\\,|\\;|\\ )*\s*(?:\\%|\\times|\\text\{[^}\d]*\})?\s*")
# A row of a claims table, "| F17 | what the claim says | verdict | evidence |": its second column is the web text's
# claim in its own words (its numbers are the claim under test, not results); the verdict column is checked.
CLAIM_ROW = re.compile(r"^[ \t]*\|[ \t]*[A-Z]\d+\b[^|\n]*\|([^|\n]*)\|", re.MULTILINE)
# What a count or a measurement is followed by, and a year never is ("in 2000 steps" is not a year).
UNIT_AFTER = re.compile(r"\s*(?:%|×|x\b|(?:[a-z]+-)?(?:steps?|examples?|epochs?|seeds?|runs?|iterations?|updates?|"
                        r"samples?|batch(?:es)?|tokens?|parameters?|points?|times|rounds?|repeats?|s|ms|bytes?|"
                        r"[KMGT]i?B)\b)")
YEAR_BEFORE = re.compile(r"(?:\b(?:in|since|from|until|by|of|and|to)\s+|\(\s*|" + CITED + r"[\s,;]*)$", re.IGNORECASE)


def load_allowed(path=ALLOWED_FILE):
    """The allowlist: a list of entries with a regex `pattern`, a `reason` and optionally `files` (names)."""
    entries = yaml.safe_load(path.read_text(encoding="utf8"))
    for entry in entries:
        if not entry.get("reason", "").strip():
            raise ValueError(f"allowlist entry {entry.get('pattern')!r} has no reason")
        entry["regex"] = re.compile(entry["pattern"])
    return entries


def allowed_spans(text, allowed, filename):
    """The character spans of `text` that an allowlist pattern covers (for this file)."""
    return [m.span() for entry in allowed if filename in entry.get("files", [filename])
            for m in entry["regex"].finditer(text)]


def context(prose, start, end, width=45):
    """The words around text[start:end] of the prose, the number in brackets and math written back as $...$."""
    text = prose.text

    def show(part):
        part = re.sub("⟨math([\ue000-\uf8ff])⟩", lambda m: f"${prose.math[ord(m[1]) - 0xE000].strip()}$", part)
        part = re.sub("⟨?m?a?t?h?[\ue000-\uf8ff]⟩?|⟨m?a?t?h?$", "…", part)  # a placeholder cut at the edge
        return re.sub(r"\s+", " ", part)

    return f"...{show(text[max(0, start - width):start])}[{show(text[start:end])}]{show(text[end:end + width])}..."


def prose_numbers(text):
    """(start, end, value, percent) of every number in prose text (math already taken out)."""
    for m in PROSE_NUMBER.finditer(text):
        rest = text[m.end():]
        if (rest[:1].isalpha() or rest[:1] == "_") and not ORDINAL_OR_TIMES.match(rest):
            continue  # a name (1D, MNIST-1D); a letter before the digit (F3, float32) never matches
        yield m.start(), m.end(), number_value(m[0]), rest.lstrip()[:1] == "%"


SCRIPT = re.compile(r"(?<!\\log)_(?:\{[^{}]*\}|\\?\w)")  # a subscript: \sum_{i=1}, x_0 (indices, not values)
RELATION_SPLIT = re.compile(RELATION)


def arithmetic(latex):
    r"""The value of math that is plain arithmetic ((40 + 100) \times 4, \sqrt{128}, 10^{1/3}), else None."""
    expr = re.sub(r"\\(?:left|right|[,;! ]|quad|qquad)", " ", latex).replace("−", "-")
    while True:
        new = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", expr)
        new = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r"sqrt(\1)", new)
        new = re.sub(r"\^\s*\{([^{}]*)\}", r"**(\1)", new)
        if new == expr:
            break
        expr = new
    expr = re.sub(r"\\sqrt\s*(\d+)", r"sqrt(\1)", expr)
    expr = re.sub(r"\^\s*(\d)", r"**\1", expr)
    expr = re.sub(r"\\lfloor(.*?)\\rfloor", r"floor(\1)", expr)
    expr = re.sub(r"\\lceil(.*?)\\rceil", r"ceil(\1)", expr)
    expr = re.sub(r"\\log_\{?10\}?", "log10", expr)
    expr = re.sub(r"\\log_\{?2\}?", "log2", expr)
    expr = re.sub(r"\\(ln|exp)\b", r"\1", expr)
    expr = re.sub(r"\b(ln|exp|log10|log2)\s*(\d+(?:\.\d+)?)", r"\1(\2)", expr)  # \ln 10
    expr = re.sub(r"\\times|\\cdot|×|·", "*", expr)
    expr = re.sub(r"(?<![A-Za-z\d.])(\d+(?:\.\d+)?)\s*\(", r"\1*(", expr)  # 2(1 + 3): a product
    expr = re.sub(r"(?<![A-Za-z\d.])(\d+)(?![\d.])", r"\1.0", expr)  # floats: 2^{10^{10}} overflows, never hangs
    if not re.search(r"\d", expr) or not re.fullmatch(r"(?:[\d.+\-*/() ]|sqrt|floor|ceil|log10|log2|ln|exp)+", expr):
        return None
    import math
    try:
        return float(eval(expr, {"__builtins__": {}}, {"sqrt": math.sqrt, "floor": math.floor, "ceil": math.ceil,
                                                         "log10": math.log10, "log2": math.log2, "ln": math.log,
                                                         "exp": math.exp}))
    except (SyntaxError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None


def rounds_to(value, written):
    """Whether `value` shows as `written` (a number to its last written digit)."""
    decimals = len(written.split(".")[1]) if "." in written and "10^" not in written else 0
    return abs(value - number_value(written)) <= 0.5 * 10.0 ** -decimals * (1 + 1e-9)


def stated_math_numbers(math):
    r"""The numbers that math states as values: (written, value, percent, arithmetic it equals or None).

    A number is stated when it is the whole of the math or follows a relation (with a list after it); the
    arithmetic is the value of the math between that relation and the one before, when that math is arithmetic
    ($\sqrt{128} \approx 11.3$: the reader can check it, and so does the test).
    """
    whole = ONLY_A_NUMBER.fullmatch(math)
    if whole:
        yield whole[1], number_value(whole[1]), "\\%" in math, None
        return
    math = SCRIPT.sub(" ", math)
    relations = [m.start() for m in RELATION_SPLIT.finditer(math)]
    for m in STATED.finditer(math):
        before = [r for r in relations if r < m.start()]
        left = math[before[-1]:m.start()] if before else math[:m.start()]
        left = RELATION_SPLIT.sub("", left, count=1) if before else left
        for i, number in enumerate(re.finditer(MATH_NUMBER, m[1])):
            if i == 0 and EXACT_SMALL.match(m[0]) and len(re.findall(MATH_NUMBER, m[1])) == 1:
                continue
            after = m[1][number.end():] + math[m.end():]
            yield (number[0], number_value(number[0]), after.lstrip().startswith("\\%"),
                   arithmetic(left) if i == 0 else None)


def all_math_numbers(math):
    for number in re.finditer(MATH_NUMBER, re.sub(r"\\[A-Za-z]+\d*", " ", math)):
        yield number[0], number_value(number[0])


def check_prose(source, literals, allowed=(), filename="", strict=False):
    """The unexplained numbers of a markdown source, as 'number: context' strings.

    `strict` is the rule of captions: every number, math included, must be a literal of the code.
    """
    prose = strip_markdown(source)
    literals = literals | code_literals(prose.code)
    spans = [] if strict else allowed_spans(prose.text, allowed, filename) + [
        m.span(1) for m in CLAIM_ROW.finditer(prose.text)]
    found = []
    for start, end, value, percent in prose_numbers(prose.text):
        if is_literal(value, literals, percent):
            continue
        if not strict:
            if any(a <= start and end <= b for a, b in spans):
                continue
            if (value.is_integer() and 1900 <= value <= 2099 and not UNIT_AFTER.match(prose.text[end:])
                    and (YEAR_BEFORE.search(prose.text[:start]) or re.match(r"[a-z]?\)", prose.text[end:]))):
                continue
        found.append(f"{prose.text[start:end]}: {context(prose, start, end)}")
    segments = prose.math + ["\n".join(prose.display_math)]
    for k, math in enumerate(segments):
        numbers = ((n, v, False, None) for n, v in all_math_numbers(math)) if strict else stated_math_numbers(math)
        for number, value, percent, *equals in numbers:
            equals = equals[0] if equals else None
            if equals is not None and rounds_to(equals, number):
                continue  # arithmetic the reader can redo: (100 + 100) \times 4 = 800
            if equals is not None or not is_literal(value, literals, percent):
                where = prose.text.find(math_mark(k))
                near = context(prose, where, where + len(math_mark(k))) if where >= 0 else ""
                wrong = f", but the arithmetic gives {equals:.6g}" if equals is not None else ""
                found.append(f"{number} (in math ${math.strip()}${wrong}): {near}")
    for alt in prose.alts:
        found += [f"{n} (in alt text): {alt!r}" for n in check_alt(alt, literals)]
    return found


def check_alt(alt, literals):
    """The numbers of an alt text that are not literals of the code (an alt text cannot hold a role)."""
    return [alt[s:e] for s, e, value, percent in prose_numbers(alt) if not is_literal(value, literals, percent)]


# --- pages ------------------------------------------------------------------------------------------------------


def notebook_offenders(path, allowed):
    """Every unexplained number of a notebook's markdown, captions and alt texts: 'cell <id>: ...' strings."""
    cells = json.loads(path.read_text(encoding="utf8"))["cells"]
    literals = code_literals("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    found = []
    for cell in cells:
        source = "".join(cell["source"])
        meta = cell.get("metadata", {})
        if cell["cell_type"] == "markdown":
            caption = "figure-caption" in meta.get("tags", [])
            found += [f"cell {cell.get('id')}{' (caption)' if caption else ''}: {p}"
                      for p in check_prose(source, literals, allowed, path.name, strict=caption)]
        mystnb = meta.get("mystnb", {})
        for key in ("image", "figure"):
            for field in ("alt", "caption"):
                text = mystnb.get(key, {}).get(field)
                if text:
                    found += [f"cell {cell.get('id')}: {n} (in {key}.{field}): {text!r}"
                              for n in check_alt(text, literals)]
    return found


def page_offenders(path, allowed):
    source = path.read_text(encoding="utf8")
    source = re.sub(r"\A---\n.*?\n---\n", "", source, flags=re.DOTALL)  # jupytext front matter
    prose = strip_markdown(source)
    return [f"{path.name}: {p}" for p in check_prose(source, code_literals(prose.code), allowed, path.name)]


# --- the checker can fail ---------------------------------------------------------------------------------------

SETUP = "batch_sizes = (8, 32, 128)\ntrain(lr=0.1, num_steps=300, seed=0)\n"


def test_a_hand_typed_result_is_flagged():
    literals = code_literals([SETUP])
    source = ("We train at batch sizes 8, 32 and 128 for 300 steps. The test accuracy reaches 87.5 % at $B = 32$,\n"
              "a ratio of $\\approx 0.46$ to the baseline, and the run took 12 s.")
    found = check_prose(source, literals)
    assert [f.split(":")[0] for f in found] == ["87.5", "12", "0.46 (in math $\\approx 0.46$)"], found
    assert "accuracy reaches [87.5] %" in found[0]


def test_eval_roles_setup_constants_formulas_years_and_names_pass():
    literals = code_literals([SETUP])
    source = ("## 2.1 The loss at $B = 32$\n\n"
              "(sec-loss-2)=\n"
              "At batch sizes 8, 32 and 128, learning rate $\\eta = 0.1$ and 300 steps, the loss is\n"
              "{eval}`f\"{quote.loss:.3f}\"` and {glue:text}`acc_12:.1f` % {cite:p}`smith2018bayesian`; the variance\n"
              "falls as $1/B$ and $\\operatorname{tr}\\Sigma/(2B)$ (claim F3, MNIST-1D, float32,\n"
              "see {numref}`fig-7`).\n"
              "Proposed in 2017, {cite:t}`goyal2017accurate` (2017). The code: `torch.zeros(17)`, "
              "[a link](https://x.org/v2/3).\n"
              "```python\nx = 99\n```\n")
    assert check_prose(source, literals) == []


def test_a_year_needs_a_year_context_and_setup_in_words_is_not_exempt():
    literals = code_literals([SETUP])
    assert check_prose("In 2018 the method ran (Smith, 2022) for 2000 steps.", literals) == [
        "2000: ...In 2018 the method ran (Smith, 2022) for [2000] steps...."]
    assert [f.split(":")[0] for f in check_prose("It ran in 2000 s, in 2048 steps.", literals)] == ["2000", "2048"]


def test_arithmetic_in_math_is_checked_and_formula_constants_pass():
    literals = code_literals([SETUP])
    ok = ("Close to $\\sqrt{128} \\approx 11.3$; $(40 + 100 + 100 + 10) \\times 4 + 8 = 1008$ bytes;\n"
          "every rank gets $\\lfloor 11/2 \\rfloor = 5$; $\\ln 10 \\approx 2.3$; stable for\n"
          "$\\eta\\lambda > 2(1 + \\beta)$ and $\\eta > 0$;\n"
          "$$\\hat g_B = \\frac{1}{B}\\sum_{i=1}^{B} g_i, \\qquad\n"
          "\\operatorname{Var} = \\frac{\\sigma^2}{4 B (1 - \\eta)}.$$")
    assert check_prose(ok, literals) == []
    found = check_prose("It saves $(100 + 100) \\times 4 = 900$ bytes, $\\sqrt{2} \\approx 1.5$ times.", literals)
    assert [f.split(" (")[0] for f in found] == ["900", "1.5"], found
    assert "the arithmetic gives 800" in found[0]


def test_a_claims_table_quotes_the_claim_but_its_verdict_is_checked():
    literals = code_literals([SETUP])
    table = ("| claim | what it says | verdict |\n|---|---|---|\n"
             "| A2 (memory) | 2/4/3/4/8 GB at batch 8 to 128 | **does not hold**: 5 GB at most |\n")
    found = check_prose(table, literals)
    assert [f.split(":")[0] for f in found] == ["5"], found


def test_captions_and_alt_texts_carry_only_literals_of_the_code():
    literals = code_literals([SETUP])
    assert check_prose("**Figure.** Loss at $B = 8$ and $B = 128$ for 300 steps.", literals, strict=True) == []
    found = check_prose("**Figure.** Loss at $B = 8$ levels off at $0.03$ after 40 steps.", literals, strict=True)
    assert [f.split(":")[0].split(" ")[0] for f in found] == ["40", "0.03"], found
    found = check_prose("**Figure.** A {eval}`quote.x` fold rise, $\\times 2$ by hand.", literals, strict=True)
    assert found == ["2 (in math $\\times 2$): ...**Figure.** A ⟨eval⟩ fold rise, [$\\times 2$] by hand...."], found
    assert check_alt("Loss against step for batch sizes 8, 32 and 128; it falls 5-fold", literals) == ["5"]


def test_the_allowlist_explains_each_entry_and_covers_only_its_match():
    allowed = load_allowed()
    assert allowed and all(entry["reason"].strip() for entry in allowed)
    literals = code_literals([SETUP])
    assert check_prose("This is the subject of chapter 4.", literals, allowed) == []
    found = check_prose("This is the subject of chapter 4, which found 47 %.", literals, allowed)
    assert found == ["47: ...his is the subject of chapter 4, which found [47] %...."], found


# --- the book ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS + PAGES, ids=lambda p: p.name)
def test_every_number_in_the_prose_is_glued_or_a_constant_of_the_setup(path):
    allowed = load_allowed()
    found = notebook_offenders(path, allowed) if path.suffix == ".ipynb" else page_offenders(path, allowed)
    assert not found, (
        f"{path.name}: numbers in the prose that neither an {{eval}} role shows nor the code sets; quote them "
        "(quote(...) in a code cell, {eval} in the text), write the sentence without them, or, for a constant of "
        f"the text, add a pattern with its reason to {ALLOWED_FILE.name}:\n" + "\n".join(found))
