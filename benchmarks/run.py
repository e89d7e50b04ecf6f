"""Speed of the book's vectorised code against the straightforward versions it replaces.

Run `python benchmarks/run.py`. Each comparison runs side by side in this one process, with a warm-up and the median
of several repeats (`hardware.time_fn`, the book's one timer), torch's default thread count, and prints one line:
`<what>: <ratio>x <faster than / the cost of> <baseline> [<times>]  target ...: PASS/MISS`.
Nothing here asserts on timing; the targets are what the book's prose relies on.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from batchsize import grads, scaling, seeding
from batchsize.data import load_mnist1d
from batchsize.hardware import cpu_model, num_threads, time_fn
from batchsize.models import MLP, TinyGPT
from batchsize.sim import NQM, nqm_steps_to_target, simulate_nqm, simulate_sgd
from batchsize.train import TrainConfig, _batch_order, train, train_many


def median_times(*fns, repeats, warmup=1):
    """Median seconds of each fn() over repeats after warmup calls (`hardware.time_fn`), one fn after the other.

    Not interleaved: the per-example tensors of vmap(grad) would evict the small method's data from cache and
    charge it for page faults (measured: hooks 2.7 ms interleaved with vmap, 1.7 ms on their own).
    """
    return [time_fn(fn, repeats=repeats, warmup=warmup).median for fn in fns]


def fmt(seconds):
    """A time with a readable unit."""
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def report(what, ratio, relation, times, target=None):
    """Print one comparison line, with the target and PASS/MISS when there is one."""
    verdict = "" if target is None else f"  target >= {target:g}x: {'PASS' if ratio >= target else 'MISS'}"
    print(f"{what}: {ratio:.1f}x {relation} [{times}]{verdict}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# (a) the SGD simulator against the course lesson's loop


def lesson_loop(batch_sizes=(1, 8, 32, 128), num_seeds=1000, num_steps=30):
    """The course lesson's simulation, one Python step at a time (reference, not lib code)."""
    paths = {}
    for B in batch_sizes:
        runs = []
        for seed in range(num_seeds):
            np.random.seed(seed)
            theta = 0.0
            path = [theta]
            for t in range(num_steps):
                grad_ = 2 * (theta - 3) + np.random.normal(0, 4 / np.sqrt(B))
                theta -= 0.1 * grad_
                path.append(theta)
            runs.append(path)
        paths[B] = runs
    return paths


def bench_simulator():
    def simulator():
        return simulate_sgd(batch_sizes=(1, 8, 32, 128), lrs=0.1, num_seeds=1000, num_steps=30, seed=0)

    t_sim, t_loop = median_times(simulator, lesson_loop, repeats=3)
    report("SGD simulator (1000 seeds x B = 1, 8, 32, 128 x 30 steps)", t_loop / t_sim,
           "faster than the course lesson's per-step Python loop",
           f"simulate_sgd {fmt(t_sim)} vs loop {fmt(t_loop)}", target=50)


# ----------------------------------------------------------------------------------------------------------------
# (b), (c) per-example gradient statistics against torch.func


def vmap_per_example_grads(model):
    """A function (X, y) -> explicit per-example gradients (N, num_params) via torch.func vmap(grad)."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss_one(params, x, target):
        return F.cross_entropy(functional_call(model, params, (x[None],)), target[None])

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))

    def run(X, y):
        g = per_example(params, X, y)  # {name: (N, *param.shape)}
        return torch.cat([v.reshape(len(X), -1) for v in g.values()], dim=1)  # (N, num_params)
    return run


def bench_per_example_stats(batch_size=256):
    torch.manual_seed(0)
    model = MLP()
    X, y = torch.randn(batch_size, 40), torch.randint(10, (batch_size,))
    per_example = vmap_per_example_grads(model)
    params = list(model.parameters())

    def vmap_stats():
        G_all = per_example(X, y)  # (batch_size, num_params)
        mean = G_all.mean(0)
        return G_all.square().sum(1).mean() - mean.square().sum()  # tr(Sigma)

    def one_backward():
        return torch.autograd.grad(F.cross_entropy(model(X), y), params)

    hooks = grads.gradient_stats(model, X, y).trace_cov
    assert abs(hooks - vmap_stats().item()) <= 1e-3 * abs(hooks), "the two methods disagree"
    def hooks_stats():
        return grads.gradient_stats(model, X, y)

    t_hooks, t_backward, t_vmap = median_times(hooks_stats, one_backward, vmap_stats, repeats=50, warmup=5)
    report(f"per-example stats tr(Sigma) (MLP 40-100-100-10, batch {batch_size})", t_vmap / t_hooks,
           "faster than torch.func vmap(grad)", f"hooks {fmt(t_hooks)} vs vmap {fmt(t_vmap)}", target=10)
    report(f"per-example stats tr(Sigma) (MLP 40-100-100-10, batch {batch_size})", t_hooks / t_backward,
           "the cost of one batched forward+backward pass", f"hooks {fmt(t_hooks)} vs backward {fmt(t_backward)}")


def bench_gram(num_examples=4000):
    torch.manual_seed(0)
    model = MLP()
    X, y = torch.randn(num_examples, 40), torch.randint(10, (num_examples,))
    per_example = vmap_per_example_grads(model)

    def explicit_gram():
        G_all = per_example(X, y)  # (N, num_params), float32
        return G_all @ G_all.T  # (N, N)

    t_gram, t_explicit = median_times(lambda: grads.gradient_gram(model, X, y), explicit_gram, repeats=2)
    report(f"gradient_gram (MLP 40-100-100-10, N = {num_examples}, float64)", t_explicit / t_gram,
           "faster than vmap(grad) per-example matrix G then G @ G.T in float32",
           f"gram {fmt(t_gram)} vs explicit {fmt(t_explicit)}")


# ----------------------------------------------------------------------------------------------------------------
# (d) the noisy quadratic model: closed form against the sampled simulator, on the same question


def bench_nqm(lr=0.5, batch_size=128, num_seeds=1000):
    """Steps for the NQM (100 directions) to reach 1 % of its initial loss at one lr and batch size.

    The closed form answers exactly; the sampled simulator estimates the expected loss per step from num_seeds
    runs (standard error about 1 % at 1000 seeds) and finds the first step below the target. At this setting
    the loss crosses the target steeply (a 5 % change of target moves the answer by 5 steps), so both agree.
    """
    nqm = NQM.make(dim=100)
    target = 0.01 * nqm.initial_loss

    def closed_form():
        return nqm_steps_to_target(nqm, lr, batch_size, target)[0, 0]

    exact = closed_form()

    def sampled():
        mean_loss = simulate_nqm(nqm, lr, batch_size, int(1.2 * exact), num_seeds=num_seeds).mean(0)
        return int(np.argmax(mean_loss <= target))

    estimate = sampled()
    assert abs(estimate - exact) <= 0.03 * exact, (estimate, exact)
    t_closed, t_sampled = median_times(closed_form, sampled, repeats=3)
    report(f"NQM steps to target (100 directions, B = {batch_size}, lr {lr}; sampled with {num_seeds} seeds)",
           t_sampled / t_closed, "faster than the sampled simulator",
           f"closed form {fmt(t_closed)} ({exact:.0f} steps) vs sampled {fmt(t_sampled)} ({estimate} steps)",
           target=100)


# ----------------------------------------------------------------------------------------------------------------
# (d) the steps-to-target sweep engine against the same runs trained one by one, and pruning against no pruning


def bench_sweep(batch_sizes=(8, 32, 128), seeds=(0, 1), targets=(1.8, 1.6), max_steps=1500):
    """The sweep engine against the same grid trained one run at a time, on a grid small enough for ~1 minute.

    One CPU thread for both, as the chapters run them: a step here is a few small ops, which a second thread only
    slows down (by an order of magnitude on a loaded 2-core machine).
    """
    with num_threads(1):
        _bench_sweep(batch_sizes, seeds, targets, max_steps)


def _bench_sweep(batch_sizes, seeds, targets, max_steps):
    X, y, _, _ = load_mnist1d()
    data = (X[:1000], y[:1000], X[:1000], y[:1000])  # training-loss target on 1000 examples
    lrs = 0.05 * 2.0 ** np.arange(5)
    cfg = TrainConfig(eval_every=2, eval_growth=1.1)
    kw = dict(targets=list(targets), seeds=seeds, cfg=cfg, max_steps=max_steps)

    def pruned():
        return scaling.sweep_steps(MLP, data, batch_sizes, lrs, **kw)

    def unpruned():  # every (batch size, lr, seed) of the grid, no step budget: the same runs as the loop
        return scaling.sweep_steps(MLP, data, batch_sizes, lrs, window=(0, np.inf), slack=np.inf, **kw)

    def one_by_one():  # every (batch size, lr, seed) of the grid, each its own train() call
        steps = np.full((len(targets), len(batch_sizes), len(lrs), len(seeds)), np.inf)
        for j, batch_size in enumerate(batch_sizes):
            for k, lr in enumerate(lrs):
                for m, seed in enumerate(seeds):
                    torch.manual_seed(seed)
                    run_cfg = TrainConfig(lr=float(lr), batch_size=batch_size, seed=seed, num_steps=max_steps,
                                          eval_every=cfg.eval_every, eval_growth=cfg.eval_growth,
                                          target=min(targets), progress=False)
                    hist = train(MLP(), data, run_cfg)
                    steps[:, j, k, m] = scaling.steps_to_target(hist.eval_steps, hist.test_loss[None],
                                                                list(targets))[:, 0]
        return steps

    (t_pruned, sweep), (t_full, full), (t_loop, loop) = [timed(fn) for fn in (pruned, unpruned, one_by_one)]
    med = np.stack([scaling.median_steps(loop[:, :, k]) for k in range(len(lrs))], -1)  # (num_targets, num_B, num_lrs)
    best = len(lrs) - 1 - np.argmin(med[..., ::-1], -1)  # ties go to the larger lr, as in sweep_steps
    loop_steps = np.take_along_axis(loop, best[..., None, None], 2)[:, :, 0]  # (num_targets, num_B, num_seeds)
    same = np.array_equal(sweep.steps, full.steps) and np.array_equal(full.steps, loop_steps)
    print(f"sweep pruning (lr window, step budget): {sweep.num_runs} runs instead of {full.num_runs}; tuned steps "
          f"{'identical in' if same else 'DIFFERENT between'} the pruned sweep, the unpruned one and the loop",
          flush=True)
    what = f"steps-to-target sweep (MLP, B = {', '.join(map(str, batch_sizes))}, {len(lrs)} lrs x {len(seeds)} seeds)"
    report(what + ", unpruned", t_loop / t_full, "faster than the same runs trained one by one",
           f"batched {fmt(t_full)} vs loop {fmt(t_loop)}", target=3)
    report(what + ", pruned", t_loop / t_pruned, "faster than the unpruned grid trained one by one",
           f"pruned {fmt(t_pruned)} vs loop {fmt(t_loop)}")


# ----------------------------------------------------------------------------------------------------------------
# (e) chapter 2.2's sweep (hand-written MLP passes, slower learning rates stopped) against chapter 2's engine


def autograd_mlp(dtype=torch.float32):
    """The book's MLP with an nn.Identity appended: the same function, which train_many does not detect as a plain
    MLP, so it trains through torch.func and autograd, chapter 2's engine (tests/test_stacked_mlp.py)."""
    return torch.nn.Sequential(*MLP(), torch.nn.Identity()).to(dtype)


def bench_engine(batch_sizes=(4, 16, 64, 256), targets=(1.5, 1.2, 1.0), seeds=(0, 1, 2)):
    """Chapter 2.2's sweep, `sweep_steps(MLP, ..., stop_slower=True)`, against the same call through chapter 2's
    engine (autograd, every learning rate run to its end) on chapter 2.2's grid, smaller, and whether the tuned
    steps agree. One CPU thread for both, as in `bench_sweep`.

    The two compute the same runs up to float32 rounding, which differs between the hand-written passes and
    autograd; a learning rate near the edge of stability can amplify it into a different step count. So when the
    tuned steps differ in float32, the two sweeps are repeated in float64 (untimed) to tell rounding from the
    engines.
    """
    with num_threads(1):
        _bench_engine(batch_sizes, targets, seeds)


def _engine_sweeps(batch_sizes, targets, seeds, dtype):
    """() -> sweep of the new engine and of the old one, on chapter 2.2's grid in `dtype`."""
    X, y, _, _ = load_mnist1d()
    data = (X.to(dtype), y, X[:1000].to(dtype), y[:1000])  # training-loss target on 1000 examples, as chapter 2.2
    lrs = 0.01 * 2.0 ** (np.arange(19) / 2)
    kw = {"targets": list(targets), "seeds": seeds, "first_lrs": lrs[14:17], "window": (0.17, 1.0), "slack": 2.0,
          "max_steps": 20000, "cfg": TrainConfig(eval_every=1, eval_growth=1.1), "cache": False}

    def new():
        return scaling.sweep_steps(lambda: MLP().to(dtype), data, batch_sizes, lrs, stop_slower=True, **kw)

    def old():
        return scaling.sweep_steps(lambda: autograd_mlp(dtype), data, batch_sizes, lrs, stop_slower=False, **kw)
    return new, old


def _tuning_differs(a, b):
    """The batch sizes at which two sweeps' tuned steps (any target, any seed) or learning rates differ."""
    differ = (a.steps != b.steps).any((0, 2)) | (a.best_lr != b.best_lr).any(0)
    return a.batch_sizes[differ].tolist()


def _bench_engine(batch_sizes, targets, seeds):
    (t_new, new), (t_old, old) = [timed(fn) for fn in _engine_sweeps(batch_sizes, targets, seeds, torch.float32)]
    differ = {"float32": _tuning_differs(new, old)}
    if differ["float32"]:
        new64, old64 = [fn() for fn in _engine_sweeps(batch_sizes, targets, seeds, torch.float64)]
        differ["float64"] = _tuning_differs(new64, old64)
    print("engine sweeps, tuned steps and learning rates: " + ", ".join(
        f"DIFFERENT in {dtype} (at B = {', '.join(map(str, d))})" if d else f"identical in {dtype}"
        for dtype, d in differ.items()) + f"; {new.num_runs} runs in float32 vs {old.num_runs}", flush=True)
    report(f"chapter 2.2's sweep (MLP, B = {', '.join(map(str, batch_sizes))}, a 19-lr grid x {len(seeds)} seeds, "
           f"{len(targets)} targets down to {min(targets)})", t_old / t_new,
           "faster than chapter 2's engine (autograd, no stop_slower)", f"new {fmt(t_new)} vs old {fmt(t_old)}")


# ----------------------------------------------------------------------------------------------------------------
# (f) chapter 5's batched transformer runs against the same runs trained one by one with torch.optim.AdamW


def random_sequences(vocab_size, context, num_train=512, num_test=64, seed=0):
    """(X, y, X_test, y_test) of random tokens, y the next tokens: (N, context) each."""
    seq = torch.randint(vocab_size, (num_train + num_test, context + 1), generator=torch.Generator().manual_seed(seed))
    return seq[:num_train, :-1], seq[:num_train, 1:], seq[num_train:, :-1], seq[num_train:, 1:]


def adamw_loop(make_model, data, lr, seed, batch_size, num_steps, weight_decay):
    """One run as a plain PyTorch loop: torch.optim.AdamW over the batches train_many gives seed, the loss read every
    step and the test set evaluated at the start and the end, as train_many does. Returns the training losses."""
    X, y, X_test, y_test = data
    seeding.manual_seed(seed)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def evaluate():
        with torch.no_grad():
            return F.cross_entropy(model(X_test).flatten(0, 1), y_test.flatten()).item()

    evaluate()
    losses = []
    for idx in _batch_order(len(X), batch_size, num_steps, seed):
        opt.zero_grad()
        loss = F.cross_entropy(model(X[idx]).flatten(0, 1), y[idx].flatten())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    evaluate()
    return losses


def bench_language_model(batch_sizes=(1, 4), context=32, vocab_size=32, num_lrs=4, seeds=(0, 1, 2), num_steps=100):
    """`train_many` of TinyGPT runs (learning rates x seeds, one tensor program) against the same runs trained one
    by one with torch.optim.AdamW, at each batch size, and the tokens per second of one plain run at B = 1 and
    B = 64. One CPU thread, as the chapter runs them: at these sizes a step is dozens of small operations, whose fixed
    costs the batched runs share; as B grows the arithmetic, which batching does not share, takes over."""
    with num_threads(1):
        _bench_language_model(batch_sizes, context, vocab_size, num_lrs, seeds, num_steps)


def _bench_language_model(batch_sizes, context, vocab_size, num_lrs, seeds, num_steps):
    data = random_sequences(vocab_size, context)
    lrs, num_runs = 1e-3 * 3.0 ** np.arange(num_lrs), num_lrs * len(seeds)

    def make_model():
        return TinyGPT(vocab_size, context)

    def one_by_one(B, lrs=lrs, seeds=seeds):
        return [adamw_loop(make_model, data, float(lr), s, B, num_steps, 0.1) for lr in lrs for s in seeds]

    rates = {}
    for B in batch_sizes:
        cfg = TrainConfig(batch_size=B, num_steps=num_steps, eval_every=num_steps, optimizer="adamw",
                          weight_decay=0.1, progress=False)

        def batched(cfg=cfg):
            return train_many(make_model, data, lrs, seeds, cfg)

        gap = np.abs(batched().train_loss - np.array(one_by_one(B))).max(0)  # per step, over the runs
        t_batched, t_loop = median_times(batched, lambda B=B: one_by_one(B), repeats=3)
        rates[B] = num_runs * B * context * num_steps / t_batched
        same = (f"training losses within {gap[:10].max():.1g} over the first 10 steps and {gap[-1]:.1g} at the end "
                f"(float32 rounding, which these noisy runs amplify)" if gap[:10].max() < 1e-4 else
                f"training losses DIFFERENT from the first steps on (by up to {gap[:10].max():.2g})")
        report(f"TinyGPT runs ({num_lrs} lrs x {len(seeds)} seeds, B = {B} sequences = {B * context} tokens, "
               f"context {context}, {num_steps} AdamW steps)", t_loop / t_batched,
               "faster than the same runs trained one by one with torch.optim.AdamW",
               f"train_many {fmt(t_batched)} vs loop {fmt(t_loop)}; {same}", target=3)
    alone = {B: B * context * num_steps / median_times(lambda B=B: one_by_one(B, lrs[:1], seeds[:1]), repeats=3)[0]
             for B in (1, 64)}
    print(f"TinyGPT tokens per second on one thread (context {context}, evaluations included): one run with "
          f"torch.optim.AdamW {alone[1]:,.0f} at B = 1 and {alone[64]:,.0f} at B = 64; train_many's {num_runs} runs "
          + ", ".join(f"{rates[B]:,.0f} at B = {B}" for B in batch_sizes), flush=True)


def timed(fn):
    """(seconds, result) of one call (`hardware.time_fn`, one repeat): the sweeps are long enough for one."""
    result = []
    seconds = time_fn(lambda: result.append(fn()), repeats=1, warmup=0).median
    return seconds, result[0]


if __name__ == "__main__":
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} threads, "
          f"CPU: {cpu_model()}", flush=True)
    load, cores = os.getloadavg()[0], os.cpu_count()
    if load > 0.5 * cores:
        print(f"warning: load average {load:.1f} on {cores} cores; other processes compete for the CPU, "
              f"so small-op timings (and their ratios) are unreliable: rerun on an idle machine", flush=True)
    bench_simulator()
    bench_per_example_stats()
    bench_gram()
    bench_sweep()
    bench_engine()
    bench_nqm()
    bench_language_model()
