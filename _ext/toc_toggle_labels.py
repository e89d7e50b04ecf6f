"""Names for the sidebar's expand/collapse toggles, so that screen readers can announce them.

pydata-sphinx-theme turns a chapter with sections into ``<a>Chapter</a><details><summary>`` with only a decorative
chevron inside the summary: a control with no name (axe-core: summary-name, serious). This extension wraps the
theme's ``generate_toctree_html`` template function and labels each such summary "Sections of <chapter>".
"""
import html
import re

TOGGLE = re.compile(r'(<a [^>]*>(?P<title>.*?)</a>\s*<details[^>]*>\s*)<summary>(?=<span class="toctree-toggle")',
                    flags=re.S)


def _label(match):
    title = html.unescape(re.sub(r"<[^>]+>", "", match.group("title"))).strip()
    return f'{match.group(1)}<summary aria-label="{html.escape(f"Sections of {title}")}">'


def wrap_toctree(app, pagename, templatename, context, doctree):
    generate = context.get("generate_toctree_html")
    if generate is None:
        return

    def labelled(*args, **kwargs):
        return TOGGLE.sub(_label, str(generate(*args, **kwargs)))

    context["generate_toctree_html"] = labelled


def setup(app):
    app.connect("html-page-context", wrap_toctree, priority=900)  # after the theme defines the function
    return {"parallel_read_safe": True, "parallel_write_safe": True}
