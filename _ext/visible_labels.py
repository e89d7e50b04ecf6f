"""Accessible names that contain the visible text of their control (WCAG 2.5.3, axe-core:
label-content-name-mismatch, serious).

Three controls had an ``aria-label`` that hides the words a reader sees on them:

- myst-nb's code-cell toggles, ``<summary aria-label="Toggle hidden content">`` around the visible "Show code cell
  source" / "Hide code cell source" (one of the two shown, by CSS, as the cell opens and closes). The summary is
  written without the ``aria-label``, so its name is the prompt on screen and follows Show/Hide.
- pydata-sphinx-theme's search field, ``aria-label="Search"`` on a button that reads "Search Ctrl+K": the script
  below removes the ``aria-label``, so the name is the button's text (⌘ on a Mac, as the theme writes it).
- the colour-mode button, ``aria-label="Color mode"`` on the icon of the current mode, whose title (Light, Dark,
  System Settings) is its text: the script names it "Color mode: Light" etc. and renames it when the mode changes.

Both buttons only work with JavaScript (the theme hides them without it), so a script fixes them; it is inlined in
every page and runs after the theme's own scripts have set the mode.
"""
import re

from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput, visit_HideCellInput

ARIA_LABEL = re.compile(r'\s+aria-label="[^"]*"')

SCRIPT = """// _ext/visible_labels.py: accessible names that contain the visible text (WCAG 2.5.3).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".search-button-field[aria-label]").forEach((button) => button.removeAttribute("aria-label"));
  const nameModeButtons = () => {
    const mode = document.documentElement.dataset.mode;
    document.querySelectorAll(".theme-switch-button").forEach((button) => {
      if (!("modeLabel" in button.dataset)) button.dataset.modeLabel = button.getAttribute("aria-label") || "Color mode";
      const icon = button.querySelector(`.theme-switch[data-mode="${mode}"]`);
      const title = icon && (icon.getAttribute("title") || icon.querySelector("title")?.textContent || "").trim();
      button.setAttribute("aria-label", title ? `${button.dataset.modeLabel}: ${title}` : button.dataset.modeLabel);
    });
  };
  nameModeButtons();
  new MutationObserver(nameModeButtons).observe(document.documentElement, {attributes: true, attributeFilter: ["data-mode"]});
});
"""


def visit_hidden_cell(self, node):
    """myst-nb's markup for a hidden cell part, with the summary's aria-label removed."""
    start = len(self.body)
    visit_HideCellInput(self, node)
    for i in range(start, len(self.body)):
        if self.body[i].lstrip().startswith("<summary"):
            self.body[i] = ARIA_LABEL.sub("", self.body[i], count=1)
            return
    raise RuntimeError("myst-nb wrote a hidden cell without a <summary>: _ext/visible_labels.py does not know "
                       f"this markup: {''.join(self.body[start:])[:300]!r}")


def setup(app):
    app.setup_extension("myst_nb")  # its node handlers first, so that this one replaces them
    app.add_node(HideCodeCellNode, override=True, html=(visit_hidden_cell, depart_HideCellInput))
    app.add_js_file(None, body=SCRIPT)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
