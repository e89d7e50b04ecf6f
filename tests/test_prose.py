"""Tests for batchsize.prose: the values a chapter's {eval} roles show."""
import math

import numpy as np
import pytest

from batchsize import prose


def test_quote_keeps_the_value_by_name_and_shows_nothing():
    quote = prose.Quoted()
    assert quote("ratio", np.float64(11.25)) is None  # a cell ending in a quote has no output
    assert quote.ratio == 11.25 and type(quote.ratio) is float
    quote("count", np.int64(7))
    assert type(quote.count) is int
    quote("verdict", "holds")
    assert quote.verdict == "holds"
    assert f"{quote.ratio:.1f}" == "11.2"


@pytest.mark.parametrize("name", ["1st", "a-b", "", None])
def test_quote_refuses_a_name_the_prose_cannot_read(name):
    with pytest.raises(ValueError, match="identifier"):
        prose.Quoted()(name, 1.0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -np.inf])
def test_quote_refuses_a_number_that_cannot_be_right(value):
    with pytest.raises(ValueError, match="finite"):
        prose.Quoted()("x", value)


@pytest.mark.parametrize("value", [None, True, [1, 2], {"a": 1}])
def test_quote_refuses_what_is_not_a_number_or_text(value):
    with pytest.raises(TypeError):
        prose.Quoted()("x", value)


def test_quote_glues_only_inside_a_book_build(monkeypatch):
    glued = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.append((name, value, display)))
    monkeypatch.delenv(prose.BUILD_ENV, raising=False)
    prose.Quoted()("a", 1.5)
    assert glued == []
    monkeypatch.setenv(prose.BUILD_ENV, "1")
    prose.Quoted()("b", 2.5)
    assert glued == [("b", 2.5, False)]
