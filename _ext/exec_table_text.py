"""Words instead of emoji in myst-nb's execution table (the status page's {nb-exec-table}).

myst-nb marks each notebook's status with ✅ or ❌. Many machines have no font with those glyphs, and the
browser then draws an empty box; "passed" and "failed" render in any font and read out clearly.
"""
from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform

WORDS = {"✅": "passed", "❌": "failed"}


class ExecutionStatusWords(SphinxPostTransform):
    """Replace the status emoji in table cells, after myst-nb has built the table (priority 8)."""

    default_priority = 9

    def run(self, **kwargs):
        for entry in self.document.findall(nodes.entry):
            for text in list(entry.findall(nodes.Text)):
                word = WORDS.get(text.astext().strip())
                if word:
                    text.parent.replace(text, nodes.Text(word))


def setup(app):
    app.add_post_transform(ExecutionStatusWords)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
