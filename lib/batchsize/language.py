"""A character-level language made offline and seeded: an order-k Markov source whose entropy rate is known exactly.

The language of chapter 5 (language models) is a stationary Markov chain of order k over V symbols: the next
symbol's distribution P(x | c) depends on the last k symbols c (a context, one of V**k). It is built one level at
a time so that every level adds structure that needs one more symbol of context and changes nothing shorter:

* level 0, the unigram frequencies: a Zipf law p(i) ~ 1 / (i + 1)**zipf (symbol 0 the most frequent);
* level j = 1..k: for every middle (j - 1)-gram m, a V x V table W_m(a, x) whose rows are drawn from a symmetric
  Dirichlet(concentration) (small concentration: each row puts its mass on a few continuations), mixed with a
  uniform floor (every entry > 0), then scaled by Sinkhorn iterations to the row marginals q(a m) and column
  marginals q(m x) of the level below. The (j + 1)-gram table q(a m x) = W_m(a, x) u_m(a) v_m(x) is the one
  closest to W_m (in relative entropy) with those marginals, so the order-j chain P(x | a m) = q(a m x) / q(a m)
  has the same j-gram frequencies as level j - 1: its shorter statistics stay those of the level below and only
  the dependence on the symbol j steps back is new.

Drawing every context's row from one Dirichlet directly (no Sinkhorn step) makes chains that fall into a few
near-deterministic loops: the stationary distribution then sits on a handful of contexts. The construction above
keeps the frequencies of shorter strings as built, so the text visits many contexts.

Everything exact is computed from the final transition table alone, in float64: the stationary distribution pi of
the chain on the V**k contexts (power iteration of the lazy chain (I + P) / 2, which converges for every irreducible
chain, periodic or not; irreducibility is checked first, and the floor makes every entry of P positive so a made
language is always irreducible and aperiodic), the entropy rate H = sum_c pi(c) H(P(. | c)) in nats per symbol, and
the ladder of conditional entropies H_j = H(X_t | the j previous symbols) under pi: the best loss of a model that
sees only j symbols back. ln V >= H_0 >= H_1 >= ... >= H_k = H.

Samples are many independent stationary sequences drawn at once (the first k symbols from pi, then the chain, one
uniform number per symbol through Walker's alias tables), so a few million symbols take a fraction of a second. As
with the book's other data sets, the seeds given here are used as they are (BATCHSIZE_SEED does not shift them).
"""
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from ._checks import check_int, check_positive_float, check_positive_int

ALPHABET = " etaoinshrdlcumwfgypbvkjxqz"  # what `decode` prints: symbol 0 (the most frequent) is a space
MAX_TABLE = 10_000_000  # the largest vocab_size ** (order + 1) a language may have (its table of (k+1)-grams)
_STATIONARY_TOL = 1e-14  # power iteration stops when pi moves less than this in L1 norm
_STATIONARY_MAX_ITER = 200_000
_SINKHORN_TOL = 1e-13
_SINKHORN_MAX_ITER = 5_000


def _entropies(rows):
    """Entropy in nats of each row of a table of probabilities (0 log 0 = 0)."""
    return -(rows * np.log(np.where(rows > 0, rows, 1.0))).sum(axis=-1)


def _alias_tables(P):
    """Walker's alias tables (prob, alias) of every row of P, shape (R, V) each, built for all rows at once."""
    rows, V = P.shape
    q = P * V  # each row has mean 1; a column keeps q / 1 of its cell and hands the rest to its alias
    prob = np.ones((rows, V))
    alias = np.tile(np.arange(V), (rows, 1))
    done = np.zeros((rows, V), dtype=bool)
    r = np.arange(rows)
    for _ in range(V - 1):  # Robin Hood: the poorest open column takes its missing mass from the richest
        lo = np.where(done, np.inf, q).argmin(axis=1)
        hi = np.where(done, -np.inf, q).argmax(axis=1)
        prob[r, lo] = q[r, lo]
        alias[r, lo] = hi
        q[r, hi] -= 1.0 - q[r, lo]
        done[r, lo] = True
    return np.clip(prob, 0.0, 1.0), alias  # the last open column keeps prob 1 (its q is 1 up to rounding)


def _sinkhorn(W, row, col):
    """W (M, V, V) scaled to u[:, :, None] * W * v[:, None, :] with row sums row (M, V) and column sums col."""
    v = np.ones_like(col)
    for _ in range(_SINKHORN_MAX_ITER):
        u = row / np.einsum("mij,mj->mi", W, v)
        v = col / np.einsum("mij,mi->mj", W, u)
        if np.abs(u * np.einsum("mij,mj->mi", W, v) - row).sum() < _SINKHORN_TOL:
            break
    return u[:, :, None] * W * v[:, None, :]  # the columns are exact; the rows are within the tolerance


@dataclass(eq=False, repr=False)
class MarkovLanguage:
    """A stationary order-k Markov source over V symbols. Introduced in chapter 5 (language models).

    transitions[c, x] = P(next symbol x | context c). A context c = (x_{t-k}, ..., x_{t-1}) has index
    sum_i x_{t-k+i} V**(k-1-i) (the oldest symbol most significant), so the next context is (c V + x) mod V**k.
    `stationary` (computed) is the stationary distribution of the chain on contexts, pi P = pi.
    """

    transitions: np.ndarray  # (V**order, V) float64, rows sum to 1
    order: int
    stationary: np.ndarray = field(init=False)  # (V**order,) float64

    def __post_init__(self):
        self.order = check_int(self.order, "order", 0)
        P = np.array(self.transitions, dtype=np.float64)  # a copy: the language never shares its table
        if P.ndim != 2 or P.shape[1] < 2:
            raise ValueError(f"transitions must be a 2-D table (V**order, V) with V >= 2 symbols, "
                             f"got shape {P.shape}")
        V = P.shape[1]
        if V ** (self.order + 1) > MAX_TABLE:
            raise ValueError(f"vocab_size ** (order + 1) must be at most {MAX_TABLE}, got {V}**{self.order + 1}")
        if P.shape[0] != V ** self.order:
            raise ValueError(f"transitions must have V**order = {V}**{self.order} = {V ** self.order} rows "
                             f"(one per context), got {P.shape[0]}")
        if not np.all(np.isfinite(P)) or np.any(P < 0):
            raise ValueError("transitions must hold finite probabilities >= 0")
        sums = P.sum(axis=1)
        if np.any(np.abs(sums - 1.0) > 1e-9):
            raise ValueError(f"every row of transitions must sum to 1, got sums from {sums.min()} to {sums.max()}")
        self.transitions = P / sums[:, None]
        self.transitions.setflags(write=False)
        self.stationary = self._solve_stationary()
        self.stationary.setflags(write=False)
        self._prob, self._alias = _alias_tables(self.transitions)
        self._start_cdf = np.cumsum(self.stationary)

    @property
    def vocab_size(self):
        """The number of symbols V. Introduced in chapter 5 (language models)."""
        return self.transitions.shape[1]

    def __repr__(self):
        return (f"MarkovLanguage(vocab_size={self.vocab_size}, order={self.order}, "
                f"entropy_rate={self.entropy_rate():.4f})")

    @classmethod
    def make(cls, vocab_size=27, order=2, concentration=0.3, zipf=1.0, floor=1e-3, seed=0):
        """A random language built level by level (see the module), seeded. Introduced in chapter 5 (language models).

        concentration: one number, or one per level 1..order (smaller: fewer likely continuations per context);
        zipf: the exponent of the unigram law (0: uniform); floor: the weight of the uniform table mixed into each
        level's Dirichlet draws, in (0, 1].
        """
        V = check_positive_int(vocab_size, "vocab_size")
        if V < 2:
            raise ValueError(f"vocab_size must be at least 2 symbols, got {V}")
        k = check_int(order, "order", 0)
        if V ** (k + 1) > MAX_TABLE:
            raise ValueError(f"vocab_size ** (order + 1) must be at most {MAX_TABLE}, got {V}**{k + 1}")
        if isinstance(concentration, numbers.Real) and not isinstance(concentration, bool):
            levels = [check_positive_float(concentration, "concentration")] * k
        else:
            try:
                levels = list(concentration)
            except TypeError:
                raise TypeError(f"concentration must be a number > 0 or a sequence of {k} numbers > 0 "
                                f"(one per level), got {type(concentration).__name__}") from None
            if len(levels) != k:
                raise ValueError(f"concentration must have one value per level 1..order ({k}), "
                                 f"got {len(levels)}")
            levels = [check_positive_float(a, "concentration") for a in levels]
        if isinstance(zipf, bool) or not isinstance(zipf, numbers.Real):
            raise TypeError(f"zipf must be a number >= 0, got {type(zipf).__name__} {zipf!r}")
        if not np.isfinite(zipf) or zipf < 0:
            raise ValueError(f"zipf must be a finite number >= 0, got {zipf}")
        floor = check_positive_float(floor, "floor")
        if floor > 1:
            raise ValueError(f"floor must be in (0, 1], got {floor}")
        rng = np.random.default_rng(check_int(seed, "seed", 0))

        q = 1.0 / np.arange(1, V + 1) ** float(zipf)  # q: the j-gram frequencies, flat, oldest symbol first
        q /= q.sum()
        for j, alpha in enumerate(levels, start=1):
            M = V ** (j - 1)  # middles m: the j - 1 symbols between the first symbol a and the next one x
            W = rng.standard_gamma(alpha, size=(M, V, V))
            empty = W.sum(axis=2) == 0  # every gamma draw underflowed (tiny concentration): the row is one-hot
            W[empty, rng.integers(V, size=int(empty.sum()))] = 1.0
            W = (1 - floor) * W / W.sum(axis=2, keepdims=True) + floor / V  # Dirichlet rows W_m(a, .), floored
            qj = q.reshape(V, M)  # (a, m)
            J = _sinkhorn(W, row=qj.T, col=q.reshape(M, V))  # (m, a, x)
            q = J.transpose(1, 0, 2).reshape(-1)  # (a, m, x): the (j + 1)-gram frequencies
        return cls(q.reshape(V ** k, V) / q.reshape(V ** k, V).sum(axis=1, keepdims=True), k)

    def _lifted(self):
        """The transition table as an array of shape (V,) * (order + 1), axes oldest symbol first."""
        return self.transitions.reshape((self.vocab_size,) * (self.order + 1))

    def _solve_stationary(self):
        """pi with pi P = pi on the V**k contexts (raises unless every context reaches every other one)."""
        V, k = self.vocab_size, self.order
        if k == 0:
            return np.ones(1)
        support = self._lifted() > 0  # (c_1, ..., c_k, x)
        for direction in ("reach", "be reached from"):
            seen = np.zeros((V,) * k, dtype=bool)
            seen[(0,) * k] = True
            while True:
                if direction == "reach":  # contexts (c_2..c_k, x) one step after a seen context
                    new = seen | (seen[..., None] & support).any(axis=0)
                else:  # contexts with one step into a seen context
                    new = seen | (support & seen[None, ...]).any(axis=-1)
                if np.array_equal(new, seen):
                    break
                seen = new
            if not seen.all():
                raise ValueError(f"the chain is not irreducible: context 0 cannot {direction} "
                                 f"{int((~seen).sum())} of the {V ** k} contexts (mix a uniform floor into "
                                 f"transitions so that every context reaches every other one)")
        P = self._lifted()
        pi = np.full((V,) * k, 1.0 / V ** k)
        for _ in range(_STATIONARY_MAX_ITER):
            new = 0.5 * (pi + (pi[..., None] * P).sum(axis=0))  # the lazy chain: same pi, never periodic
            new /= new.sum()
            if np.abs(new - pi).sum() < _STATIONARY_TOL:
                return new.reshape(-1)
            pi = new
        raise ValueError(f"the stationary distribution did not converge in {_STATIONARY_MAX_ITER} steps "
                         f"(the chain mixes too slowly; mix a uniform floor into transitions)")

    def ngram_frequencies(self, n):
        """The stationary n-gram frequencies, (V**n,), oldest first. Introduced in chapter 5 (language models)."""
        n = check_int(n, "n", 0)
        k, V = self.order, self.vocab_size
        if n > k + 1:
            raise ValueError(f"n must be between 0 and order + 1 = {k + 1}, got {n}")
        joint = self.stationary.reshape((V,) * k + (1,)) * self._lifted()  # the (k+1)-gram frequencies
        return joint.sum(axis=tuple(range(k + 1 - n))).reshape(-1)

    def conditional_probs(self, j):
        """P(next | last j symbols) in the stationary chain, (V**j, V). Introduced in chapter 5 (language models).

        The best prediction from j symbols back (0 <= j <= order); j = order gives transitions.
        """
        j = check_int(j, "j", 0)
        if j > self.order:
            raise ValueError(f"j must be between 0 and order = {self.order}, got {j}")
        joint = self.ngram_frequencies(j + 1).reshape(self.vocab_size ** j, self.vocab_size)
        return joint / joint.sum(axis=1, keepdims=True)

    def entropy_rate(self):
        """The entropy rate H = sum_c pi(c) H(P(.|c)), nats per symbol. Introduced in chapter 5 (language models)."""
        return float(self.stationary @ _entropies(self.transitions))

    def conditional_entropies(self):
        """The ladder H_j = H(next | last j symbols), j = 0..order, in nats. Introduced in chapter 5 (language models).

        H_0 is the unigram entropy, H_order the entropy rate; each is the best loss of a model that sees j
        symbols back, and ln V (a uniform guess) >= H_0 >= H_1 >= ... >= H_order.
        """
        out = []
        for j in range(self.order + 1):
            marginal = self.ngram_frequencies(j)
            out.append(float(marginal @ _entropies(self.conditional_probs(j))))
        return np.array(out)

    def window_entropy(self, context):
        """The best mean loss on windows of `context` inputs, in nats. Introduced in chapter 5 (language models).

        The prediction at position t of a window sees only the t + 1 symbols of the window so far, so the first
        order - 1 positions cannot reach the entropy rate.
        """
        context = check_positive_int(context, "context")
        ladder = self.conditional_entropies()
        return float(np.mean([ladder[min(t + 1, self.order)] for t in range(context)]))

    def _sample(self, rng, num_sequences, length):
        V, k = self.vocab_size, self.order
        out = np.empty((num_sequences, length), dtype=np.int64)
        ctx = np.zeros(num_sequences, dtype=np.int64)
        if k > 0:  # the first k symbols: a context drawn from the stationary distribution
            ctx = np.minimum(np.searchsorted(self._start_cdf, rng.random(num_sequences) * self._start_cdf[-1],
                                             side="right"), V ** k - 1)
            for i in range(min(k, length)):
                out[:, i] = ctx // V ** (k - 1 - i) % V
        if length <= k:
            return out
        u = rng.random((length - k, num_sequences)) * V  # one uniform per symbol: its column and its coin
        prob, alias = self._prob.reshape(-1), self._alias.reshape(-1)
        for t in range(k, length):
            col = np.minimum(u[t - k].astype(np.int64), V - 1)
            cell = ctx * V + col
            x = np.where(u[t - k] - col < prob[cell], col, alias[cell])
            out[:, t] = x
            if k > 0:
                ctx = (ctx * V + x) % V ** k
        return out

    def sample(self, num_sequences, length, seed=0):
        """Stationary sequences, torch.long (num_sequences, length). Introduced in chapter 5 (language models).

        Vectorised over the sequences (the time steps run in a loop): many short sequences are fast, one long
        one is slow.
        """
        num_sequences = check_positive_int(num_sequences, "num_sequences")
        length = check_positive_int(length, "length")
        rng = np.random.default_rng(check_int(seed, "seed", 0))
        return torch.from_numpy(self._sample(rng, num_sequences, length))

    def nll(self, X, y):
        """The true source's -log P(y[:, t] | X[:, :t+1]), float64 (N, T). Introduced in chapter 5 (language models).

        The best possible per-token loss on these windows: position t conditions on its last min(t + 1, order)
        symbols (the Bayes predictor that sees only the window). Its mean estimates `window_entropy(T)`.
        """
        V, k = self.vocab_size, self.order
        for name, value in (("X", X), ("y", y)):
            if not isinstance(value, torch.Tensor) or value.dtype != torch.long:
                raise TypeError(f"{name} must be a torch.long tensor of shape (N, T), got "
                                f"{type(value).__name__} {getattr(value, 'dtype', '')}".rstrip())
            if value.dim() != 2 or value.numel() == 0:
                raise ValueError(f"{name} must have shape (N, T) with N, T >= 1, got {tuple(value.shape)}")
            if value.min() < 0 or value.max() >= V:
                raise ValueError(f"{name} must hold symbols 0..{V - 1}, got values from {int(value.min())} "
                                 f"to {int(value.max())}")
        if X.shape != y.shape:
            raise ValueError(f"X and y must have the same shape, got {tuple(X.shape)} and {tuple(y.shape)}")
        Xn, yn = X.numpy(), y.numpy()
        T = Xn.shape[1]
        logp = np.empty(Xn.shape)
        for t in range(min(max(k - 1, 0), T)):  # the first positions see fewer than order symbols
            j = t + 1
            index = sum(Xn[:, i] * V ** (j - 1 - i) for i in range(j))
            logp[:, t] = np.log(self.conditional_probs(j)[index, yn[:, t]])
        if k == 0:
            logp[:] = np.log(self.transitions[0, yn])
        elif T >= k:  # positions t >= k - 1 see the whole context X[:, t-k+1 .. t]
            index = sum(Xn[:, i:T - k + 1 + i] * V ** (k - 1 - i) for i in range(k))
            logp[:, k - 1:] = np.log(self.transitions[index, yn[:, k - 1:]])
        return torch.from_numpy(-logp)

    def decode(self, tokens):
        """The text of symbols: a str (a list of str for 2-D). Introduced in chapter 5 (language models).

        Symbol i prints as ALPHABET[i]: a space, then letters in English order of frequency (V <= 27).
        """
        if self.vocab_size > len(ALPHABET):
            raise ValueError(f"decode prints at most {len(ALPHABET)} symbols, this language has {self.vocab_size}")
        arr = np.asarray(tokens.numpy() if isinstance(tokens, torch.Tensor) else tokens)
        if arr.ndim not in (1, 2) or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"tokens must be a 1-D or 2-D sequence of integers, got dtype {arr.dtype} "
                            f"and shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"tokens must be symbols 0..{self.vocab_size - 1}")
        if arr.ndim == 2:
            return ["".join(ALPHABET[i] for i in row) for row in arr]
        return "".join(ALPHABET[i] for i in arr)


def make_lm_data(language, num_train_tokens, num_test_tokens, context=32, seed=0):
    """Windows (X_train, y_train, X_test, y_test), y = X shifted by one. Introduced in chapter 5 (language models).

    Each window is an independent stationary sequence of context + 1 symbols: X its first context symbols, y its
    last context. num_*_tokens counts the targets (N = num_tokens // context windows). Train and test come from
    two different random streams of the same seed.
    """
    if not isinstance(language, MarkovLanguage):
        raise TypeError(f"language must be a MarkovLanguage, got {type(language).__name__}")
    context = check_positive_int(context, "context")
    seed = check_int(seed, "seed", 0)
    out = []
    for stream, (name, num_tokens) in enumerate((("num_train_tokens", num_train_tokens),
                                                 ("num_test_tokens", num_test_tokens)), start=1):
        num_tokens = check_positive_int(num_tokens, name)
        if num_tokens < context:
            raise ValueError(f"{name} must be at least one window of context = {context} tokens, got {num_tokens}")
        windows = language._sample(np.random.default_rng([seed, stream]), num_tokens // context, context + 1)
        windows = torch.from_numpy(windows)
        out += [windows[:, :-1].contiguous(), windows[:, 1:].contiguous()]
    return tuple(out)
