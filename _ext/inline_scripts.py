"""Stop Sphinx 7.4 from writing inline scripts twice into every page.

An extension that adds an inline script (``app.add_js_file(None, body=...)``) after the HTML builder
started, as sphinx-thebe and sphinx-togglebutton do, gets it registered twice: once with the builder
directly, as ``filename=None``, and again when ``StandaloneHTMLBuilder.prepare_writing`` re-adds the
registry's scripts as ``filename=''``. The two do not compare equal, so both are written, and
sphinx-thebe's ``const THEBE_JS_URL`` then fails in the browser as a redeclaration. Normalising the
file name to ``''`` at the builder makes Sphinx's own duplicate check catch the second copy.
"""


def normalise_inline_scripts(app):
    builder = app.builder
    original = getattr(builder, "add_js_file", None)
    if original is None:  # not an HTML builder
        return

    def add_js_file(filename, **kwargs):
        return original(filename or "", **kwargs)

    builder.add_js_file = add_js_file


def setup(app):
    # Before the other extensions' builder-inited handlers (default priority 500) add their scripts.
    app.connect("builder-inited", normalise_inline_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
