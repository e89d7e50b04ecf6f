"""Section numbers by page: chapters 1, 2, ..., their sub-pages 2.1, 2.2, ...; headings inside a page unnumbered.

Sphinx numbers a sub-page after its chapter page's own headings, so chapter 2's first sub-page became "2.9", which
reads as the ninth section of chapter 2. After Sphinx assigns its numbers (and the figure numbers, which keep their
chapter prefix), this extension keeps only each page's title number and renumbers sub-pages in the order of the
table of contents.
"""


def renumber_pages(app, env):
    titles = {doc: nums.get("") for doc, nums in env.toc_secnumbers.items() if nums.get("")}
    new = {}
    for chapter in sorted({n[:1] for n in titles.values()}):
        new.update({doc: n for doc, n in titles.items() if n == chapter})
        children = sorted((n, doc) for doc, n in titles.items() if len(n) == 2 and n[:1] == chapter)
        new.update({doc: chapter + (i,) for i, (_, doc) in enumerate(children, start=1)})
    changed = [doc for doc, nums in env.toc_secnumbers.items() if nums != ({"": new[doc]} if doc in new else {})]
    env.toc_secnumbers = {doc: {"": new[doc]} if doc in new else {} for doc in env.toc_secnumbers}
    return changed


def setup(app):
    app.connect("env-get-updated", renumber_pages, priority=900)  # after Sphinx's TocTreeCollector (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
