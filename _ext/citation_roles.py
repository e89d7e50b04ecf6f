"""Bibliography entries that assistive technology reads as a list.

docutils writes each citation as ``<div role="doc-biblioentry">`` inside ``<div role="list">``. DPUB-ARIA 1.1
deprecated ``doc-biblioentry`` and it no longer counts as a list item, so a screen reader meets a list with
no items (axe-core: aria-required-children, critical). The entries are written as ``role="listitem"``.
"""
from sphinx.writers.html5 import HTML5Translator


class CitationListItems(HTML5Translator):
    """Sphinx's HTML translator with citations as ARIA list items (the theme adds its own mix-in on top)."""

    def visit_citation(self, node):
        if not isinstance(node.previous_sibling(), type(node)):
            self.body.append('<div role="list" class="citation-list">\n')
        self.body.append(self.starttag(node, "div", classes=[node.tagname], role="listitem"))


def setup(app):
    app.set_translator("html", CitationListItems)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
