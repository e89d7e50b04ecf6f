"""Section numbers by page: chapters 1, 2, ..., their sub-pages 2.1, 2.2, ...; headings inside a page unnumbered.

Sphinx numbers a sub-page after its chapter page's own headings, so chapter 2's first sub-page became "2.9", which
reads as the ninth section of chapter 2. After Sphinx assigns its numbers (and the figure numbers, which keep their
chapter prefix), this extension keeps only each page's title number, renumbers sub-pages in the order of the table
of contents, and writes the new numbers where Sphinx reads them: `env.toc_secnumbers` (headings: an empty number
means none), the references of `env.tocs` (the tables of contents) and `env.titles` (links to next and previous).
"""
from docutils import nodes
from sphinx import addnodes


def page_numbers(toc_secnumbers):
    """{docname: new number of its title}: chapters keep theirs, sub-pages count 1, 2, ... under their chapter."""
    titles = {doc: nums.get("") for doc, nums in toc_secnumbers.items() if nums.get("")}
    new = {}
    for chapter in sorted({n[:1] for n in titles.values()}):
        new.update({doc: n for doc, n in titles.items() if n == chapter})
        children = sorted((n, doc) for doc, n in titles.items() if len(n) > 1 and n[:1] == chapter)
        new.update({doc: chapter + (i,) for i, (_, doc) in enumerate(children, start=1)})
    return new


def renumber_pages(app, env):
    new = page_numbers(env.toc_secnumbers)
    changed = []
    for doc, nums in env.toc_secnumbers.items():
        renumbered = {anchor: (new.get(doc, ()) if anchor == "" else ()) for anchor in nums}
        if renumbered != nums:
            changed.append(doc)
        env.toc_secnumbers[doc] = renumbered
    for doc, toc in getattr(env, "tocs", {}).items():  # the toctree entries that show the numbers
        for paragraph in toc.findall(addnodes.compact_paragraph):
            for reference in paragraph.findall(nodes.reference):
                if reference.get("secnumber") and "anchorname" in reference:
                    reference["secnumber"] = list(new[doc]) if reference["anchorname"] == "" and doc in new else None
    for doc, title in getattr(env, "titles", {}).items():
        if title.get("secnumber") and doc in new:
            title["secnumber"] = list(new[doc])
    return changed


def setup(app):
    app.connect("env-get-updated", renumber_pages, priority=900)  # after Sphinx's TocTreeCollector (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
