"""Tests for language.py: the exact entropies against closed forms and against samples."""
import numpy as np
import pytest
import torch
from batchsize.language import ALPHABET, MarkovLanguage, _alias_tables, make_lm_data


def binary_entropy(p):
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


@pytest.fixture(scope="module")
def language():
    return MarkovLanguage.make()  # the defaults: 27 symbols, order 2


@pytest.fixture(scope="module")
def small():
    return MarkovLanguage.make(vocab_size=5, order=3, concentration=0.5, seed=3)


def lifted_step(lang, pi):
    """pi P on the contexts: the distribution of the next context (x_{t-k+1}, ..., x_t)."""
    V, k = lang.vocab_size, lang.order
    joint = pi.reshape((V,) * k + (1,)) * lang.transitions.reshape((V,) * (k + 1))
    return joint.sum(axis=0).reshape(-1)


# ---------------------------------------------------------------------------------------------------------------
# The table and its stationary distribution


@pytest.mark.parametrize("fixture", ["language", "small"])
def test_transitions_are_distributions_and_pi_is_stationary(fixture, request):
    lang = request.getfixturevalue(fixture)
    V, k = lang.vocab_size, lang.order
    assert lang.transitions.shape == (V ** k, V) and lang.transitions.dtype == np.float64
    assert np.all(lang.transitions > 0)  # the floor: every context reaches every other one
    np.testing.assert_allclose(lang.transitions.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    pi = lang.stationary
    assert pi.shape == (V ** k,) and np.all(pi > 0)
    assert abs(pi.sum() - 1) < 1e-12
    assert np.abs(lifted_step(lang, pi) - pi).sum() < 1e-12


def test_the_default_language_has_the_documented_shape(language):
    assert (language.vocab_size, language.order) == (27, 2)
    assert repr(language).startswith("MarkovLanguage(vocab_size=27, order=2, entropy_rate=")


def test_two_state_chain_matches_its_closed_form():
    a, b = 0.2, 0.7  # P(0 -> 1) = a, P(1 -> 0) = b
    lang = MarkovLanguage(np.array([[1 - a, a], [b, 1 - b]]), order=1)
    np.testing.assert_allclose(lang.stationary, [b / (a + b), a / (a + b)], rtol=1e-12)
    rate = (b * binary_entropy(a) + a * binary_entropy(b)) / (a + b)
    assert lang.entropy_rate() == pytest.approx(rate, rel=1e-12)
    unigram = binary_entropy(a / (a + b))
    np.testing.assert_allclose(lang.conditional_entropies(), [unigram, rate], rtol=1e-12)


def test_a_source_that_copies_the_symbol_two_back_needs_both_symbols():
    """x_t = x_{t-2}, flipped with probability e: the previous symbol alone says nothing, H_0 = H_1 = ln 2."""
    e = 0.1
    table = np.empty((4, 2))
    for context in range(4):
        older = context // 2
        table[context, older], table[context, 1 - older] = 1 - e, e
    lang = MarkovLanguage(table, order=2)
    np.testing.assert_allclose(lang.stationary, 0.25, rtol=1e-12)
    np.testing.assert_allclose(lang.conditional_entropies(), [np.log(2), np.log(2), binary_entropy(e)], rtol=1e-12)


def test_order_zero_is_independent_symbols():
    lang = MarkovLanguage(np.full((1, 6), 1 / 6), order=0)
    assert lang.entropy_rate() == pytest.approx(np.log(6), rel=1e-14)
    np.testing.assert_allclose(lang.conditional_entropies(), [np.log(6)])
    zipf = MarkovLanguage.make(vocab_size=4, order=0, zipf=1.0)
    p = 1 / np.arange(1, 5)
    np.testing.assert_allclose(zipf.transitions[0], p / p.sum(), rtol=1e-12)  # level 0 is the Zipf law itself
    assert zipf.sample(3, 5).shape == (3, 5)


def test_a_periodic_chain_has_its_stationary_distribution():
    lang = MarkovLanguage(np.array([[0.0, 1.0], [1.0, 0.0]]), order=1)  # 0 1 0 1 ...: periodic, pi = (1/2, 1/2)
    np.testing.assert_allclose(lang.stationary, [0.5, 0.5], rtol=1e-12)
    assert lang.entropy_rate() == 0.0
    seqs = lang.sample(50, 6, seed=0)
    assert torch.all(seqs[:, 1:] == 1 - seqs[:, :-1])


def test_a_reducible_chain_is_refused():
    with pytest.raises(ValueError, match="not irreducible"):
        MarkovLanguage(np.eye(3), order=1)  # each symbol repeats forever
    with pytest.raises(ValueError, match="not irreducible"):
        MarkovLanguage(np.array([[0.5, 0.5], [0.0, 1.0]]), order=1)  # 1 never returns to 0


def test_the_table_is_copied_and_read_only():
    table = np.array([[0.5, 0.5], [0.25, 0.75]])
    lang = MarkovLanguage(table, order=1)
    table[0] = [1.0, 0.0]
    assert lang.transitions[0, 0] == 0.5
    with pytest.raises(ValueError):
        lang.transitions[0, 0] = 1.0


# ---------------------------------------------------------------------------------------------------------------
# The entropy ladder


@pytest.mark.parametrize("fixture", ["language", "small"])
def test_the_ladder_falls_from_ln_v_to_the_entropy_rate(fixture, request):
    lang = request.getfixturevalue(fixture)
    ladder = lang.conditional_entropies()
    assert ladder.shape == (lang.order + 1,)
    assert ladder[-1] == pytest.approx(lang.entropy_rate(), rel=1e-12)  # two routes to H_k
    steps = np.diff(np.concatenate([[np.log(lang.vocab_size)], ladder]))
    assert np.all(steps <= 1e-12)  # conditioning on more never raises the entropy


def test_the_default_ladder_has_steps_that_context_must_explain(language):
    ladder = language.conditional_entropies()
    assert np.log(27) - ladder[0] > 0.3  # the unigram law
    assert np.all(-np.diff(ladder) > 0.3)  # each symbol of context further back is worth more than 0.3 nats


def test_each_level_keeps_the_statistics_of_the_level_below():
    """make() with order k draws the same first levels as with order k - 1 and keeps their n-gram frequencies."""
    base = MarkovLanguage.make(vocab_size=6, order=1, concentration=0.4, seed=5)
    top = MarkovLanguage.make(vocab_size=6, order=2, concentration=(0.4, 0.2), seed=5)
    np.testing.assert_allclose(top.ngram_frequencies(2), base.ngram_frequencies(2), rtol=0, atol=1e-10)
    np.testing.assert_allclose(top.conditional_entropies()[:2], base.conditional_entropies(), rtol=0, atol=1e-10)
    zipf = 1 / np.arange(1, 7)
    np.testing.assert_allclose(top.ngram_frequencies(1), zipf / zipf.sum(), rtol=0, atol=1e-10)
    assert top.conditional_entropies()[2] < base.entropy_rate() - 0.1


def test_smaller_concentration_gives_fewer_likely_continuations():
    rates = [MarkovLanguage.make(vocab_size=10, order=1, concentration=c, seed=0).entropy_rate()
             for c in (0.1, 1.0, 10.0)]
    assert rates[0] < rates[1] < rates[2]


def test_a_tiny_concentration_still_makes_a_valid_language():
    """Gamma draws of shape 1e-4 underflow to 0: such a row becomes one-hot before the floor, never NaN."""
    lang = MarkovLanguage.make(vocab_size=3, order=2, concentration=1e-4, seed=0)
    assert np.all(np.isfinite(lang.transitions)) and np.all(lang.transitions > 0)
    assert 0 <= lang.entropy_rate() < lang.conditional_entropies()[1]


def test_conditional_probs_and_ngram_frequencies_agree(small):
    V, k = small.vocab_size, small.order
    np.testing.assert_allclose(small.conditional_probs(k), small.transitions, rtol=1e-12)
    np.testing.assert_allclose(small.ngram_frequencies(k), small.stationary, rtol=1e-12)
    assert small.ngram_frequencies(0).shape == (1,) and small.ngram_frequencies(0)[0] == pytest.approx(1.0)
    for j in range(k + 1):
        probs = small.conditional_probs(j)
        assert probs.shape == (V ** j, V)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        # the (j + 1)-gram frequencies are consistent: summing out the oldest or the newest symbol gives the j-grams
        joint = small.ngram_frequencies(j + 1).reshape(V, V ** j)
        np.testing.assert_allclose(joint.sum(axis=0), small.ngram_frequencies(j), rtol=0, atol=1e-13)
        joint = small.ngram_frequencies(j + 1).reshape(V ** j, V)
        np.testing.assert_allclose(joint.sum(axis=1), small.ngram_frequencies(j), rtol=0, atol=1e-13)


def test_window_entropy_averages_the_rungs_a_window_position_can_see(language):
    h = language.conditional_entropies()
    assert language.window_entropy(1) == pytest.approx(h[1])
    assert language.window_entropy(32) == pytest.approx((h[1] + 31 * h[2]) / 32)


# ---------------------------------------------------------------------------------------------------------------
# Samples against the exact numbers


def within(estimate, values, reference, num_se=4.0):
    """|mean - reference| < num_se standard errors, the SE from the spread of independent values."""
    se = values.std(ddof=1) / np.sqrt(len(values))
    return abs(estimate - reference) < num_se * se, (estimate, reference, se)


@pytest.mark.parametrize("fixture", ["language", "small"])
def test_the_mean_loss_of_the_true_model_on_a_sample_is_the_entropy_rate(fixture, request):
    lang = request.getfixturevalue(fixture)
    seqs = lang.sample(2000, 201, seed=11)
    nll = lang.nll(seqs[:, :-1], seqs[:, 1:])[:, lang.order:].numpy()  # the positions that see k symbols
    per_sequence = nll.mean(axis=1)  # the sequences are independent, their positions are not
    ok, info = within(nll.mean(), per_sequence, lang.entropy_rate())
    assert ok, info


def test_the_mean_loss_of_the_true_model_on_windows_is_the_window_entropy(language):
    _, _, X, y = make_lm_data(language, 1000, 200_000, context=32, seed=4)
    per_window = language.nll(X, y).mean(dim=1).numpy()
    ok, info = within(per_window.mean(), per_window, language.window_entropy(32))
    assert ok, info


def test_nll_at_the_first_positions_uses_the_shorter_contexts(small):
    X = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]])
    y = torch.tensor([[2, 3, 4, 0], [1, 1, 1, 1]])
    nll = small.nll(X, y).numpy()
    for row in range(2):
        x, target = X[row].tolist(), y[row].tolist()
        assert nll[row, 0] == pytest.approx(-np.log(small.conditional_probs(1)[x[0], target[0]]), rel=1e-12)
        assert nll[row, 1] == pytest.approx(-np.log(small.conditional_probs(2)[x[0] * 5 + x[1], target[1]]),
                                            rel=1e-12)
        for t in (2, 3):
            context = x[t - 2] * 25 + x[t - 1] * 5 + x[t]
            assert nll[row, t] == pytest.approx(-np.log(small.transitions[context, target[t]]), rel=1e-12)


@pytest.mark.parametrize("n, positions", [(1, (0,)), (2, (0, 1)), (2, (5, 6)), (3, (0, 1, 2)), (3, (6, 7, 8))])
def test_sampled_ngrams_have_the_stationary_frequencies(small, n, positions):
    """One n-gram per independent sequence: a multinomial sample of the stationary n-gram law, at the start too."""
    V = small.vocab_size
    seqs = small.sample(200_000, 9, seed=2).numpy()
    index = sum(seqs[:, p] * V ** (n - 1 - i) for i, p in enumerate(positions))
    counts = np.bincount(index, minlength=V ** n)
    p = small.ngram_frequencies(n)
    z = (counts - len(seqs) * p) / np.sqrt(len(seqs) * p * (1 - p))
    assert np.abs(z).max() < 5.5, np.abs(z).max()  # 5.5 SE: below 1e-4 chance over <= 125 cells


def test_alias_tables_reproduce_every_row_exactly():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.full(7, 0.3), size=50)
    P[:5, 3] = 0.0  # rows with impossible symbols
    P[5:10] = 0.0
    P[5:10, 2] = 1.0  # a certain symbol
    P /= P.sum(axis=1, keepdims=True)
    prob, alias = _alias_tables(P)
    implied = prob / 7
    for row in range(len(P)):
        np.add.at(implied[row], alias[row], (1 - prob[row]) / 7)
    np.testing.assert_allclose(implied, P, rtol=0, atol=1e-14)
    assert np.all(prob[:5, 3] == 0)  # an impossible symbol keeps nothing of its own cell


def test_impossible_continuations_are_never_sampled():
    table = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])  # never the same symbol twice
    seqs = MarkovLanguage(table, order=1).sample(2000, 50, seed=0)
    assert not torch.any(seqs[:, 1:] == seqs[:, :-1])


def test_same_seed_same_tokens_other_seed_other_tokens(language):
    a, b, c = (language.sample(100, 40, seed=s) for s in (1, 1, 2))
    assert a.dtype == torch.long and a.shape == (100, 40)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= int(a.min()) and int(a.max()) < 27
    again = MarkovLanguage.make()
    np.testing.assert_array_equal(again.transitions, language.transitions)
    assert not np.array_equal(MarkovLanguage.make(seed=1).transitions, language.transitions)


def test_sequences_shorter_than_the_order_are_contexts(small):
    one = small.sample(20_000, 1, seed=0).numpy()[:, 0]
    two = small.sample(20_000, 2, seed=0).numpy()
    np.testing.assert_array_equal(one, two[:, 0])  # the same stationary context, cut
    assert one.shape == (20_000,)


# ---------------------------------------------------------------------------------------------------------------
# Windows for a language model


def test_windows_are_shifted_by_one_and_seeded(language):
    X, y, X_test, y_test = make_lm_data(language, 3200, 700, context=32, seed=0)
    assert X.shape == y.shape == (100, 32) and X_test.shape == y_test.shape == (21, 32)
    assert X.dtype == y.dtype == X_test.dtype == y_test.dtype == torch.long
    assert torch.equal(X[:, 1:], y[:, :-1]) and torch.equal(X_test[:, 1:], y_test[:, :-1])
    again = make_lm_data(language, 3200, 700, context=32, seed=0)
    assert all(torch.equal(a, b) for a, b in zip((X, y, X_test, y_test), again))
    assert not torch.equal(make_lm_data(language, 3200, 700, context=32, seed=1)[0], X)
    assert not torch.equal(X[:21], X_test)  # train and test are different streams
    assert not torch.equal(X, language.sample(100, 33, seed=0)[:, :-1])  # and not sample's stream either


def test_decode_prints_symbol_zero_as_a_space(language):
    assert language.decode([0, 1, 2, 26]) == " etz"
    assert language.decode(torch.tensor([[3, 0], [1, 1]])) == ["a ", "ee"]
    assert len(ALPHABET) == 27 and len(set(ALPHABET)) == 27
    with pytest.raises(ValueError, match="symbols 0..26"):
        language.decode([27])
    with pytest.raises(TypeError, match="integers"):
        language.decode([0.5])
    with pytest.raises(ValueError, match="at most 27"):
        MarkovLanguage.make(vocab_size=30, order=1).decode([0])


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize("kwargs, error, message", [
    ({"vocab_size": 1}, ValueError, "at least 2"),
    ({"vocab_size": 2.0}, TypeError, "vocab_size must be an integer"),
    ({"order": -1}, ValueError, "order must be an integer >= 0"),
    ({"order": 1.5}, TypeError, "order must be an integer"),
    ({"concentration": 0}, ValueError, "concentration must be a finite number > 0"),
    ({"concentration": -1.0}, ValueError, "concentration must be a finite number > 0"),
    ({"concentration": (0.3,)}, ValueError, "one value per level"),
    ({"concentration": "x"}, ValueError, "one value per level"),
    ({"concentration": None}, TypeError, "concentration must be a number > 0 or a sequence"),
    ({"zipf": -0.5}, ValueError, "zipf must be a finite number >= 0"),
    ({"floor": 0.0}, ValueError, "floor must be a finite number > 0"),
    ({"floor": 1.5}, ValueError, r"floor must be in \(0, 1\]"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
    ({"seed": 0.5}, TypeError, "seed must be an integer"),
    ({"vocab_size": 100, "order": 3}, ValueError, "at most 10000000"),
])
def test_make_refuses_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        MarkovLanguage.make(**kwargs)


@pytest.mark.parametrize("table, order, message", [
    (np.full((1, 1), 1.0), 0, "V >= 2"),
    (np.full((2, 2), 0.5), 2, "4 rows"),
    (np.full(3, 1 / 3), 0, "2-D table"),
    (np.array([[1.5, -0.5], [0.5, 0.5]]), 1, ">= 0"),
    (np.array([[0.5, 0.6], [0.5, 0.5]]), 1, "sum to 1"),
    (np.array([[np.nan, 0.5], [0.5, 0.5]]), 1, "finite"),
])
def test_the_constructor_refuses_bad_tables(table, order, message):
    with pytest.raises(ValueError, match=message):
        MarkovLanguage(table, order)


def test_sampling_nll_and_windows_refuse_bad_arguments(language):
    with pytest.raises(ValueError, match="num_sequences must be an integer >= 1"):
        language.sample(0, 10)
    with pytest.raises(TypeError, match="length must be an integer"):
        language.sample(10, 2.5)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        language.sample(10, 10, seed=-3)
    X = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(TypeError, match="X must be a torch.long tensor"):
        language.nll(X.float(), X)
    with pytest.raises(ValueError, match="same shape"):
        language.nll(X, X[:, :4])
    with pytest.raises(ValueError, match=r"symbols 0..26"):
        language.nll(X, X + 27)
    with pytest.raises(ValueError, match=r"shape \(N, T\)"):
        language.nll(X[0], X[0])
    with pytest.raises(TypeError, match="MarkovLanguage"):
        make_lm_data("text", 100, 100)
    with pytest.raises(ValueError, match="num_train_tokens must be at least one window of context = 32"):
        make_lm_data(language, 31, 100)
    with pytest.raises(ValueError, match="num_test_tokens must be an integer >= 1"):
        make_lm_data(language, 100, 0)
    with pytest.raises(ValueError, match="context must be an integer >= 1"):
        make_lm_data(language, 100, 100, context=0)
    with pytest.raises(ValueError, match="j must be between 0 and order = 2"):
        language.conditional_probs(3)
    with pytest.raises(ValueError, match="n must be between 0 and order"):
        language.ngram_frequencies(4)
    with pytest.raises(ValueError, match="context must be an integer >= 1"):
        language.window_entropy(0)
