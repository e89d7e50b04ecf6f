"""Tests for the built site: every page of _toc.yml, opened offline in headless Chromium.

The site is built with the README's command (or reused when _build/html is newer than every source),
served from 127.0.0.1 and opened page by page. Each page must have its title, load every image, show
typeset math only, log no JavaScript error, request nothing from another host, hold no dead widget
control, pass axe-core's accessibility rules of impact serious or critical, and use no character that no
installed font can draw. A full-page screenshot of each page is written to artifacts/screenshots/ and
axe-core's counts per page to artifacts/axe.json.
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
BUILD_COMMAND = ["jupyter-book", "build", "--all", "-W", "-n", "--keep-going", "."]
CHROMIUM = "/usr/bin/chromium"
# Without these flags an offline Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_HOST = "127.0.0.1"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPOSITORY_URL = CONFIG["repository"]["url"]
# Console errors or failed requests that cannot be fixed at their root, each with its reason.
# Empty: every error seen so far had a fix.
ALLOWED_CONSOLE_ERRORS: list[str] = []

# ---------------------------------------------------------------------------------------------
# The pages, from _toc.yml


def toc_docnames(toc=None):
    """Every document of the table of contents, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text()) if toc is None else toc
    names = [toc["root"]] if "root" in toc else []

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    for key in ("parts", "chapters", "sections"):
        walk(toc.get(key))
    return [re.sub(r"\.(md|ipynb)$", "", name) for name in names]


def source_path(docname):
    """The .ipynb or .md file a page is built from."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / (docname + suffix)
        if path.exists():
            return path
    raise FileNotFoundError(f"no source for {docname} (listed in _toc.yml)")


def source_markdown(docname):
    """The Markdown text of a page's source (markdown cells only, for a notebook)."""
    path = source_path(docname)
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    text = path.read_text()
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)  # jupytext front matter
    return re.sub(r"^```\{code-cell\}.*?^```", "", text, flags=re.S | re.M)


def source_title(docname):
    """The text of the page's first level-1 heading, without Markdown markup."""
    match = re.search(r"^# (.+)$", source_markdown(docname), flags=re.M)
    assert match, f"{docname} has no '# Title' heading"
    return re.sub(r"[*_`]", "", match.group(1)).strip()


def source_has_math(docname):
    """Whether the source holds math: $...$, $$...$$, a math directive or role, or amsmath."""
    code_fence = r"```(\{code[^}]*\}|(?!\{))[^\n]*\n.*?```"  # ``` or ```{code-block}, not directives
    text = re.sub(code_fence, "", source_markdown(docname), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code, but keep {math}`...` roles
    return bool(re.search(r"\$\$|\$[^\s$][^$\n]*\$|\{math\}|\\begin\{", text))


DOCNAMES = toc_docnames()

# ---------------------------------------------------------------------------------------------
# Build, server and browser (one of each for the module)


def newest_source_mtime():
    """The latest modification time of anything the site is built from."""
    skip = {"_build", "artifacts", ".git", ".github", ".ci", ".pytest_cache", "tests", "benchmarks"}
    newest = 0.0
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith(".")
                       and not d.endswith(".egg-info") and d != "__pycache__"]
        for name in filenames:
            if name.endswith((".md", ".ipynb", ".yml", ".yaml", ".bib", ".py", ".css", ".js")):
                newest = max(newest, (Path(dirpath) / name).stat().st_mtime)
    return newest


def site_is_fresh():
    """Whether _build/html is a complete, successful build newer than every source."""
    pages = [HTML / f"{name}.html" for name in DOCNAMES]
    if not all(p.exists() for p in pages) or (HTML / "reports").exists():
        return False
    status = HTML / ".build-status.json"  # written by _ext/build_reports.py
    if not status.exists() or json.loads(status.read_text()).get("warnings") != 0:
        return False
    return min(p.stat().st_mtime for p in pages + [status]) > newest_source_mtime()


def build_site(cwd, log, kernel_start_lock):
    """Run the README's build command in cwd; return the completed process (output in log).

    The build starts a kernel per notebook, so it holds the lock that keeps kernel starts one at a time
    (conftest.py) from start to end.
    """
    exe = shutil.which("jupyter-book")
    assert exe, "jupyter-book is not installed: pip install -r requirements.txt"
    with kernel_start_lock, open(log, "w") as out:
        return subprocess.run([exe, *BUILD_COMMAND[1:]], cwd=cwd, stdout=out,
                              stderr=subprocess.STDOUT, timeout=3600)


@pytest.fixture(scope="module")
def site(kernel_start_lock):
    """The built site in _build/html, rebuilt unless fresh (set BOOK_REBUILD=1 to force)."""
    ARTIFACTS.mkdir(exist_ok=True)
    AXE_COUNTS.unlink(missing_ok=True)
    if os.environ.get("BOOK_REBUILD") == "1" or not site_is_fresh():
        shutil.rmtree(ROOT / "_build", ignore_errors=True)
        log = ARTIFACTS / "build.log"
        result = build_site(ROOT, log, kernel_start_lock)
        tail = "\n".join(log.read_text().splitlines()[-60:])
        assert result.returncode == 0, f"book build failed (full log: {log}):\n{tail}"
    return HTML


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url(site):
    """The site served over http on 127.0.0.1, on a free port."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOCAL_HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from Debian, driven by Playwright."""
    sync_api = pytest.importorskip("playwright.sync_api")
    assert Path(CHROMIUM).exists(), "install Chromium: apt-get install -y chromium chromium-driver"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class PageVisit:
    """One page opened in a fresh browser context, with everything it logged and requested."""

    def __init__(self, browser, url):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.console_errors, self.page_errors, self.foreign_requests, self.bad_responses = [], [], [], []
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        self.page.on("requestfailed", lambda r: self.bad_responses.append(f"{r.url}: {r.failure}"))
        self.page.on("response", self._on_response)
        # Record, then block, anything that is not the local server: the site must work offline.
        self.page.route("**/*", self._route)
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _on_console(self, msg):
        if msg.type == "error" and not any(a in msg.text for a in ALLOWED_CONSOLE_ERRORS):
            self.console_errors.append(f"{msg.text} ({msg.location.get('url')})")

    def _on_response(self, response):
        if response.status >= 400:
            self.bad_responses.append(f"{response.url}: HTTP {response.status}")

    def _route(self, route):
        url = urlparse(route.request.url)
        if url.scheme in ("data", "blob", "about") or url.hostname == LOCAL_HOST:
            route.continue_()
        else:
            self.foreign_requests.append(route.request.url)
            route.abort()

    def close(self):
        self.context.close()


@pytest.fixture(scope="module")
def visits(base_url, browser):
    """Page visits, opened on first use and shared by the tests of one page."""
    opened = {}

    def visit(docname):
        if docname not in opened:
            opened[docname] = PageVisit(browser, f"{base_url}/{docname}.html")
        return opened[docname]

    yield visit
    for v in opened.values():
        v.close()


# ---------------------------------------------------------------------------------------------
# The table of contents


def test_toc_starts_with_the_numbered_gradient_variance_chapter():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbered = [part for part in toc["parts"] if part.get("numbered")]
    assert numbered, "no part of _toc.yml is numbered"
    assert numbered[0]["chapters"][0]["file"] == "chapters/01_gradient_variance"


def test_toc_lists_every_chapter_notebook():
    notebooks = {f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.ipynb")}
    assert notebooks <= set(DOCNAMES), f"not in _toc.yml: {sorted(notebooks - set(DOCNAMES))}"


# ---------------------------------------------------------------------------------------------
# Every page, in the browser

DEAD_WIDGETS = ('input[type="range"]', ".widget-slider", ".jupyter-widgets",
                'script[type="application/vnd.jupyter.widget-view+json"]')

MATHJAX_READY = """async () => {
    if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) return false;
    await MathJax.startup.promise;
    return true;
}"""

IMAGES_SETTLED = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = "eager"; });
    await Promise.all(images.map(img => img.complete ? null :
        new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
    return images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}"""

# Text a reader sees outside code: raw TeX delimiters here mean math that was not typeset.
PROSE_TEXT = """() => {
    const main = document.querySelector("main") || document.body;
    const clone = main.cloneNode(true);
    clone.querySelectorAll("pre, code, script, style, textarea, mjx-container, mjx-assistive-mml")
         .forEach(el => el.remove());
    return clone.textContent;
}"""


def plain_quotes(text):
    """text with Sphinx's typographic quotes (smartquotes) turned back into the source's straight ones."""
    return text.translate(str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}))


@pytest.mark.parametrize("docname", DOCNAMES)
def test_page_renders_offline(docname, visits):
    visit = visits(docname)
    page = visit.page

    # Title: the <title> and the page's h1 both carry the source's first heading.
    title = plain_quotes(source_title(docname))
    assert title in plain_quotes(page.title()), f"<title> {page.title()!r} lacks {title!r}"
    h1 = page.locator("main article h1").first
    assert h1.count() == 1, "no h1 in the article"
    assert title in plain_quotes(h1.inner_text())

    # Math: typeset by the MathJax served from the book, no TeX error, no raw delimiters left.
    math_nodes = page.locator("main .math").count()
    if source_has_math(docname) or math_nodes:
        assert page.locator('script[src*="_static/mathjax/"]').count() == 1, "MathJax is not loaded locally"
        assert page.evaluate(MATHJAX_READY), "MathJax did not start"
        assert page.locator("main mjx-container").count() >= max(1, math_nodes)
        assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"
    prose = page.evaluate(PROSE_TEXT)
    for delimiter in ("\\(", "\\[", "$$"):
        assert delimiter not in prose, f"raw math delimiter {delimiter!r} in the page text"

    # Images: every <img> loaded.
    broken = [img["src"] for img in page.evaluate(IMAGES_SETTLED) if img["width"] == 0]
    assert not broken, f"images that did not load: {broken}"

    # Figures: every image in the article (not the theme's logos) has alt text, and every figure a
    # numbered caption, so a screen reader and a cross-reference both have something to say.
    figures = page.evaluate("""() => [...document.querySelectorAll("main article img")].map(img => ({
        src: img.getAttribute("src"), alt: (img.getAttribute("alt") || "").trim(),
        caption: (img.closest("figure")?.querySelector("figcaption")?.textContent || "").trim()}))""")
    no_alt = [f["src"] for f in figures if not f["alt"]]
    assert not no_alt, f"images without alt text: {no_alt}"
    no_caption = [f["src"] for f in figures if not f["caption"].startswith("Fig.")]
    assert not no_caption, f"images without a numbered caption: {no_caption}"

    # No dead widgets: the static site has no kernel behind a slider (or a tqdm.auto progress bar).
    dead = {selector: page.locator(selector).count() for selector in DEAD_WIDGETS}
    dead = {selector: count for selector, count in dead.items() if count}
    assert not dead, f"widgets without a kernel (tag the cell remove-output): {dead}"

    page.wait_for_load_state("networkidle")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{docname.replace('/', '_')}.png"), full_page=True,
                    animations="disabled")

    # Nothing failed, nothing logged an error, nothing left 127.0.0.1.
    assert not visit.foreign_requests, f"requests to other hosts: {visit.foreign_requests}"
    assert not visit.bad_responses, f"failed requests: {visit.bad_responses}"
    assert not visit.page_errors, f"page errors: {visit.page_errors}"
    assert not visit.console_errors, f"console errors: {visit.console_errors}"


# axe-core, the accessibility engine, from the npm registry: tests/axe/package.json pins its release and the
# README's install command (`npm ci --prefix tests/axe`) puts it in tests/axe/node_modules. Nothing is fetched here.
AXE_DIR = ROOT / "tests" / "axe"
AXE_SOURCE = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_BLOCKING = ("serious", "critical")
AXE_COUNTS = ARTIFACTS / "axe.json"  # per page: violations by impact, for the record


def axe_pinned_version():
    """The axe-core release that tests/axe/package.json pins (an exact version, not a range)."""
    version = json.loads((AXE_DIR / "package.json").read_text())["dependencies"]["axe-core"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"tests/axe/package.json must pin axe-core exactly, not {version!r}"
    return version


def test_axe_core_is_pinned_exactly_and_locked():
    lock = json.loads((AXE_DIR / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/axe-core"]
    assert locked["version"] == axe_pinned_version(), "package-lock.json disagrees with package.json"
    assert locked["resolved"].startswith("https://registry.npmjs.org/axe-core/"), locked["resolved"]
    assert locked["integrity"].startswith("sha512-"), "the lock has no checksum for axe-core"


@functools.lru_cache(maxsize=None)
def axe_source():
    """The text of axe.min.js as installed by `npm ci --prefix tests/axe`."""
    assert AXE_SOURCE.exists(), (f"axe-core is not installed ({AXE_SOURCE.relative_to(ROOT)} is missing): run "
                                 "`npm ci --prefix tests/axe` (part of the README's install command)")
    return AXE_SOURCE.read_text()


@pytest.mark.parametrize("docname", DOCNAMES)
def test_page_has_no_serious_accessibility_violation(docname, visits):
    page = visits(docname).page
    page.add_script_tag(content=axe_source())
    version, pinned = page.evaluate("axe.version"), axe_pinned_version()
    assert version == pinned, (f"axe-core {version} ran, tests/axe/package.json pins {pinned}: "
                               "run `npm ci --prefix tests/axe` (part of the README's install command)")
    violations = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    counts = {impact: sum(len(v["nodes"]) for v in violations if v["impact"] == impact)
              for impact in ("minor", "moderate", "serious", "critical")}
    record = json.loads(AXE_COUNTS.read_text()) if AXE_COUNTS.exists() else {}
    AXE_COUNTS.write_text(json.dumps({**record, docname: counts}, indent=1, sort_keys=True))
    blocking = [f"{v['id']} ({v['impact']}): {v['help']}; e.g. {v['nodes'][0]['html'][:160]}"
                for v in violations if v["impact"] in AXE_BLOCKING]
    assert not blocking, "\n".join(blocking)


def test_controls_are_named_by_the_text_they_show(site, base_url, browser):
    # _ext/visible_labels.py (WCAG 2.5.3): a code-cell toggle is named by its prompt, also once opened; the search
    # field by "Search Ctrl+K"; the colour-mode button by its label and the title of the mode's icon, at every mode.
    expect = pytest.importorskip("playwright.sync_api").expect
    pages = [d for d in NOTEBOOK_PAGES if 'class="admonition hide' in (site / f"{d}.html").read_text()]
    assert pages, "no page has a hidden code cell to check"
    visit = PageVisit(browser, f"{base_url}/{pages[0]}.html")  # its own browser context: clicks change the page
    try:
        toggle = visit.page.locator("details.hide > summary").first
        expect(toggle).to_have_accessible_name(re.compile(r"^Show code cell (source|outputs?|content)$"))
        toggle.click()
        expect(toggle).to_have_accessible_name(re.compile(r"^Hide code cell (source|outputs?|content)$"))
        search = visit.page.locator(".search-button-field:visible")
        assert search.count() >= 1, "no search field on the page"
        expect(search.first).to_have_accessible_name(re.compile(r"^Search Ctrl ?\+ ?K$"))
        mode = visit.page.locator(".theme-switch-button").first
        titles = []
        for _ in range(3):  # light, auto, dark
            icon = mode.locator(".theme-switch:visible")
            title = icon.get_attribute("title") or icon.locator("title").text_content()
            expect(mode).to_have_accessible_name(f"Color mode: {title}")
            titles.append(title)
            mode.click()
        assert sorted(titles) == ["Dark", "Light", "System Settings"], titles
    finally:
        visit.close()


VISIBLE_TEXT = """() => {
    const clone = document.body.cloneNode(true);
    clone.querySelectorAll("script, style, noscript, mjx-container, mjx-assistive-mml").forEach(el => el.remove());
    return clone.textContent;
}"""


@functools.lru_cache(maxsize=None)  # pages share most of their characters: ask fontconfig once per character
def has_font_for(char):
    """Whether an installed font (fontconfig, which Chromium uses for fallback) has a glyph for char."""
    found = subprocess.run(["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True)
    return bool(found.stdout.strip())


@pytest.mark.parametrize("docname", DOCNAMES)
def test_page_text_has_a_font_for_every_glyph(docname, visits):
    # Math is typeset by MathJax with its own fonts; everything else is drawn from the machine's fonts.
    assert shutil.which("fc-list"), "fontconfig's fc-list is missing (it comes with chromium)"
    text = visits(docname).page.evaluate(VISIBLE_TEXT)
    missing = sorted({c for c in text if ord(c) > 127 and not c.isspace() and not has_font_for(c)})
    assert not missing, f"characters no installed font can draw: {[f'U+{ord(c):04X} {c}' for c in missing]}"


NOTEBOOK_PAGES = [d for d in DOCNAMES if source_path(d).suffix == ".ipynb"]


@pytest.mark.parametrize("docname", NOTEBOOK_PAGES)
def test_notebook_page_offers_launch_and_download(docname, visits, base_url):
    page = visits(docname).page
    repo_path = urlparse(REPOSITORY_URL).path.strip("/")
    branch = CONFIG["repository"]["branch"]
    colab = page.locator(f'a[href="https://colab.research.google.com/github/{repo_path}/blob/'
                         f'{branch}/{docname}.ipynb"]')
    assert colab.count() == 1, "no Colab launch link"
    assert page.locator(f'a[href^="https://mybinder.org/v2/gh/{repo_path}/{branch}"]').count() == 1, \
        "no Binder launch link"
    download = page.locator('a.btn-download-source-button[href$=".ipynb"]')
    assert download.count() == 1, "no .ipynb download button"
    href = download.get_attribute("href")
    response = page.request.get(f"{base_url}/{Path(docname).parent.as_posix()}/{href}")
    assert response.ok, f"download link {href} gives HTTP {response.status}"
    assert json.loads(response.body())["cells"], "downloaded notebook has no cells"
    # The install cell is tagged remove-cell: the reader does not see it.
    assert "Colab or a fresh environment" not in page.locator("main").inner_text()


# ---------------------------------------------------------------------------------------------
# A failing notebook fails the build and leaves its report


def test_failing_notebook_fails_build_and_keeps_report(tmp_path, kernel_start_lock):
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "_ext", tmp_path / "_ext")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: broken\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Broken"),
                nbformat.v4.new_code_cell("raise ValueError('a cell that fails')")]
    nbformat.write(nb, tmp_path / "broken.ipynb")

    result = build_site(tmp_path, tmp_path / "build.log", kernel_start_lock)

    assert result.returncode != 0, "a notebook that raises did not fail the build"
    report = tmp_path / "_build" / "html" / "reports" / "broken.err.log"
    assert report.exists(), (tmp_path / "build.log").read_text()[-3000:]
    assert "a cell that fails" in report.read_text()


# ---------------------------------------------------------------------------------------------
# Publishing: the workflows run the README's commands, word for word


def readme_commands():
    """The shell commands of README.md's fenced bash blocks, in order."""
    blocks = re.findall(r"```bash\n(.*?)\n\s*```", (ROOT / "README.md").read_text(), flags=re.S)
    return [block.strip() for block in blocks]


def workflow_runs(name):
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return [step["run"].strip() for job in workflow["jobs"].values()
            for step in job["steps"] if "run" in step]


def test_readme_gives_the_build_and_test_commands():
    commands = readme_commands()
    assert commands[0].endswith(" ".join(BUILD_COMMAND)), commands[0]
    assert commands[1] == "python -m pytest"


def test_book_workflow_builds_with_the_readme_command():
    assert workflow_runs("book.yml") == [readme_commands()[0]]


def test_tests_workflow_installs_and_tests_with_the_readme_commands():
    assert workflow_runs("tests.yml") == readme_commands()[:2]


def test_ci_runs_the_readme_commands_in_a_new_virtual_environment():
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines()]
    install, test = readme_commands()[:2]
    assert install in lines, "the README's install-and-build command is not a line of .ci/run"
    assert any(line.startswith(test) for line in lines), "the README's test command is not run by .ci/run"
    venv = next(i for i, line in enumerate(lines) if line.startswith("python3 -m venv"))
    activate = next(i for i, line in enumerate(lines) if re.match(r"(source|\.) .*/bin/activate\"?$", line))
    assert venv < activate < lines.index(install), "the commands must run inside a new virtual environment"
    assert "mktemp -d" in script, "the environment must be made in a new temporary directory"
