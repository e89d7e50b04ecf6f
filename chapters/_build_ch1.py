"""Writes chapters/01_gradient_variance.ipynb from the cells below (kept for editing; outputs never stored)."""
import nbformat as nbf

INSTALL = '''# Colab or a fresh environment: install the book's library (batchsize) when it is missing.
import importlib.util, subprocess, sys
if importlib.util.find_spec("batchsize") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "batchsize @ git+https://github.com/batch-size-book/batch-size-book"], check=True)'''

cells = []


def md(text):
    cells.append(nbf.v4.new_markdown_cell(text.strip("\n")))


def code(text, tags=(), figure=None, alt=None):
    cell = nbf.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    if figure:
        name, caption = figure
        cell.metadata["mystnb"] = {"figure": {"name": name, "caption": caption}, "image": {"alt": alt}}
    cells.append(cell)


code(INSTALL, tags=["remove-cell"])
md(r"""
# Gradient variance

Stochastic gradient descent never sees the true gradient of the loss. At every step it sees the average of
the gradients of a few examples, a *mini-batch*, and that average is noisy. How noisy, and how the noise shrinks
as the batch grows, is the single fact on which every later chapter about batch size rests. This chapter measures
it three ways: in a one-parameter simulation where everything is known in closed form, in the gradient of a real
neural network at every batch size from 1 to the whole data set, and along a real training run.

**What you will learn**

- why a mini-batch gradient is an unbiased estimate of the full gradient, and why its variance is
  $\operatorname{tr}\Sigma / B$ when examples are drawn with replacement and smaller still without;
- how that noise sets the floor that SGD's loss settles on, as a closed form in the batch size and the learning
  rate that a thousand simulated runs confirm;
- how to measure the *gradient noise scale* $B_\text{simple}$ of a real network cheaply, and how it grows as
  training progresses;
- which popular claims about batch size and gradient noise hold, and under what conditions.
""")
md("""
Everything below runs on a laptop CPU in well under a minute. The heavy code lives in the book's library,
`batchsize`; the cell below imports it and seeds torch once.
""")
code("""
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from myst_nb import glue

from batchsize import data, grads, models, plots, sim, train, widgets

plots.use_book_style()
torch.manual_seed(0);
""")

md(r"""
## The course lesson's simulation, a thousand times over

The course lesson behind claim L5 runs SGD on the loss $L(\theta) = (\theta - 3)^2$ from $\theta_0 = 0$ with
learning rate $\eta = 0.1$ for 30 steps. Each step adds Gaussian noise of standard deviation $4/\sqrt{B}$ to
the true gradient $2(\theta - 3)$, which is how the mean of $B$ independent per-example gradients with standard
deviation 4 behaves:

$$\theta_{t+1} = \theta_t - \eta\,\bigl(2(\theta_t - 3) + \xi_t\bigr), \qquad \xi_t \sim \mathcal N(0, 16/B).$$

The lesson plots one run per batch size. One run says little about a random process, so we run 1000 seeds for each
of $B = 1, 8, 32, 128$ as a single array program (`sim.simulate_sgd`), and set beside them the exact mean and
variance of $\theta_t$, which this linear recursion has in closed form (`sim.theory_moments`).
""")
code("""
batch_sizes = (1, 8, 32, 128)
res = sim.simulate_sgd(batch_sizes=batch_sizes, lrs=0.1, num_steps=30, num_seeds=1000, seed=0)
mean, var = sim.theory_moments(batch_sizes=batch_sizes, lrs=0.1, num_steps=30)
res.theta.shape  # (num_seeds, num_batch_sizes, num_lrs, num_steps + 1)
""")
md(r"""
The figure shows, for each batch size, the median loss over the 1000 runs with the band between the 25th and
75th percentiles, and the exact expected loss $\mathbb E(\theta_t - 3)^2 = (\mathbb E\theta_t - 3)^2 +
\operatorname{Var}\theta_t$ as a dashed line.
""")
code("""
colors = plots.batch_colors(batch_sizes)
steps = np.arange(res.theta.shape[-1])
fig, ax = plt.subplots()
for j, batch_size in enumerate(batch_sizes):
    plots.plot_runs(ax, steps, res.loss[:, j, 0], label=f"B = {batch_size}", color=colors[batch_size])
    ax.plot(steps, (mean[j, 0] - 3) ** 2 + var[j, 0], "--", lw=1, color=colors[batch_size])
ax.set(yscale="log", xlabel="step", ylabel=r"loss $(\\theta - 3)^2$")
ax.legend(title="median and IQR of 1000 runs", ncols=2);
""", figure=("fig-lesson-loss", "The course lesson's SGD on $(\\theta-3)^2$, 1000 runs per batch size: median loss "
             "(solid) with its interquartile band, and the exact expected loss (dashed). All batch sizes descend "
             "alike for about 10 steps; then each settles on a noise floor that falls as $1/B$."),
     alt="Log-scale loss against step for batch sizes 1, 8, 32 and 128; the curves coincide early and then level "
         "off at floors that are lower for larger batches, each tracking a dashed theory line.")
md(r"""
Two things stand out. Early on, every batch size makes the same progress: the deterministic part of the gradient
dominates. Later, the loss stops falling and fluctuates around a floor set by the gradient noise, and the floor
falls in proportion to $1/B$. The median sits below the mean because the loss is a squared Gaussian, a skewed
quantity: a few unlucky runs pull the mean up.

How wide is the spread of the final parameter? The exact standard deviation of $\theta_{30}$ and the one measured
over the 1000 seeds:
""")
code("""
final_sd = res.theta[..., -1].std(axis=0)[:, 0]  # (num_batch_sizes,)
exact_sd = np.sqrt(var[:, 0, -1])
for batch_size, measured, exact in zip(batch_sizes, final_sd, exact_sd):
    print(f"B = {batch_size:3d}: sd of theta_30 = {measured:.4f} measured, {exact:.4f} exact")
glue("sd_ratio_1_128", float(final_sd[0] / final_sd[-1]), display=False)
""")
md(r"""
At $B = 1$ the final parameter is spread {glue:text}`sd_ratio_1_128:.1f` times wider than at $B = 128$, close to
$\sqrt{128} \approx 11.3$: the standard deviation of the gradient noise scales as $1/\sqrt B$, and so does the
spread of where SGD ends up.

### The noise floor, in closed form

Write $e_t = \theta_t - 3$. The recursion is $e_{t+1} = (1 - 2\eta)\,e_t - \eta\,\xi_t$, a linear Gaussian
process. When $|1 - 2\eta| < 1$ it forgets its start and its variance settles where
$v = (1-2\eta)^2 v + \eta^2 \sigma^2 / B$, that is

$$\operatorname{Var}_\infty \theta = \frac{\eta^2 \sigma^2}{B\,\bigl(1 - (1 - 2\eta)^2\bigr)}
= \frac{\eta\, \sigma^2}{4 B (1 - \eta)}, \qquad \sigma = 4 .$$

Halving the learning rate or doubling the batch size each roughly halves the floor, the first trade-off of
batch size: a larger batch buys a lower noise floor at the same learning rate. For $\eta \ge 1$ the recursion is
unstable and SGD diverges, whatever the batch size. We check the formula over a grid of 8 batch sizes and
7 learning rates, one of them beyond the stability limit, 256 seeds each, 600 steps, all as one array program.
""")
code("""
grid_lrs = np.array([0.01, 0.03, 0.1, 0.3, 0.6, 0.9, 1.05])
grid_batch_sizes = 2 ** np.arange(8)  # 1, 2, ..., 128
long = sim.simulate_sgd(lrs=grid_lrs, batch_sizes=grid_batch_sizes, num_steps=600, num_seeds=256, seed=1)
per_seed = ((long.theta[..., 300:] - 3) ** 2).mean(-1)  # time average over the stationary half, per seed
stationary = per_seed.mean(0)  # (num_batch_sizes, num_lrs)
stationary_sem = per_seed.std(0, ddof=1) / np.sqrt(per_seed.shape[0])
exact = sim.stationary_variance(grid_lrs[None, :], grid_batch_sizes[:, None])
diverged_lrs = grid_lrs[long.diverged.all(axis=0)]
print("diverged (all batch sizes):", ", ".join(f"lr = {lr}" for lr in diverged_lrs))
""")
code("""
fig, ax = plt.subplots()
for k, lr in enumerate(grid_lrs):
    if long.diverged[:, k].any():
        continue  # reported above, never plotted
    line, = ax.plot(grid_batch_sizes, exact[:, k], lw=1, label=f"lr = {lr}")
    ax.errorbar(grid_batch_sizes, stationary[:, k], yerr=2 * stationary_sem[:, k], fmt="o", ms=4,
                color=line.get_color())
ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel=r"stationary Var $\\theta$")
ax.legend(ncols=2, fontsize=8);
""", figure=("fig-stationary", "Stationary variance of the SGD iterate against batch size for six stable learning "
             "rates: measured over 256 seeds (dots, bars of two standard errors) and the closed form (lines). "
             "The run with learning rate 1.05 diverged and is not drawn."),
     alt="Log-log plot of stationary variance against batch size; for each learning rate the dots fall on a "
         "straight line of slope minus one given by the formula; larger learning rates sit higher.")
code("""
stable = np.isfinite(exact)
z_stationary = np.abs(stationary - exact) / stationary_sem
glue("stationary_max_z", float(z_stationary[stable].max()), display=False)
glue("stationary_num_settings", int(stable.sum()), display=False)
""")
md(r"""
All {glue:text}`stationary_num_settings` stable settings agree with the closed form; the largest deviation is
{glue:text}`stationary_max_z:.1f` standard errors. The run at learning rate 1.05 is reported as diverged, not
drawn.

## The variance of the mini-batch gradient, from B = 1 to N

Now a real data set. For $N$ examples with per-example gradients $g_i$, the full gradient is
$G = \frac1N\sum_i g_i$ and the per-example covariance $\Sigma = \frac1N \sum_i (g_i - G)(g_i - G)^\top$.
A mini-batch of $B$ indices drawn uniformly gives $\hat g_B = \frac1B \sum_k g_{i_k}$, with
$\mathbb E\,\hat g_B = G$ (claim L1) and

$$\mathbb E\,\lVert \hat g_B - G\rVert^2 = \frac{\operatorname{tr}\Sigma}{B} \quad\text{(with replacement)},
\qquad
\mathbb E\,\lVert \hat g_B - G\rVert^2 = \frac{\operatorname{tr}\Sigma}{B}\cdot\frac{N - B}{N - 1}
\quad\text{(without)}.$$

Without replacement no example repeats inside a batch, which is how an epoch-based data loader samples, and the
variance reaches exactly zero at $B = N$, where the mini-batch *is* the data set.

We measure $\mathbb E\lVert \hat g_B - G\rVert^2$ directly, by drawing thousands of mini-batches at each batch
size. Materialising every per-example gradient is not needed: the squared deviation of a mini-batch is a
quadratic form in the Gram matrix $K_{ij} = g_i \cdot g_j$, which `grads.gradient_gram` computes for a network of
linear layers from each layer's inputs and output gradients (the trick of {cite:p}`goodfellow2015efficient`).

First the synthetic linear-regression problem of `data.LinearRegression`, whose per-example gradients are
$x_i(x_i\cdot\theta - y_i)$, at $\theta = 0$ with $N = 2000$ examples:
""")
code("""
problem = data.LinearRegression.make(dim=20, noise_std=1.0, seed=0)
X_lin, y_lin = problem.sample(2000, seed=0)
per_example = problem.per_example_grads(X_lin, y_lin, np.zeros(20))  # (num_examples, dim)
gram_lin = per_example @ per_example.T  # (num_examples, num_examples)
trace_lin = per_example.var(0, unbiased=False).sum().item()
print(f"tr Sigma: {trace_lin:.2f} on these 2000 examples, "
      f"{np.trace(problem.gradient_covariance(np.zeros(20))):.2f} for the population (closed form)")
""")
md("""
Then the MLP of `models.MLP` (40 → 100 → 100 → 10, 15 210 parameters) at its initialisation, on the
4000 MNIST-1D training examples {cite:p}`greydanus2020scaling`:
""")
code("""
X_train, y_train, X_test, y_test = data.load_mnist1d()
mlp = models.MLP()
gram_mlp = grads.gradient_gram(mlp, X_train, y_train)  # (4000, 4000), no per-example gradients built
trace_mlp = grads.gradient_stats(mlp, X_train, y_train).trace_cov
print(f"tr Sigma of the MLP's per-example gradients: {trace_mlp:.3f}")
""")
md("""
For each problem and each sampling scheme we draw mini-batches at 12 batch sizes spread from 1 to $N$ and record
the mean squared deviation together with its Monte-Carlo standard error.
""")
code("""
def variance_curve(gram, trace_cov, num_draws):
    N = gram.shape[0]
    batch_grid = np.unique(np.round(np.logspace(0, np.log10(N), 12)).astype(int))
    out = {"B": batch_grid, "N": N}
    for replacement in (True, False):
        measured, sem = grads.measure_minibatch_variance(gram, batch_grid, num_draws=num_draws,
                                                         replacement=replacement, seed=0, return_sem=True)
        theory = grads.minibatch_variance(trace_cov, batch_grid, num_examples=N, replacement=replacement)
        out[replacement] = (measured, sem, theory)
    return out

curves = {"linear regression, N = 2000": variance_curve(gram_lin, trace_lin, num_draws=1000),
          "MLP on MNIST-1D, N = 4000": variance_curve(gram_mlp, trace_mlp, num_draws=200)}
""")
code("""
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=False)
for ax, (title, c) in zip(axes, curves.items()):
    for replacement, color, name in ((True, plots.PALETTE[0], "with"), (False, plots.PALETTE[3], "without")):
        measured, sem, theory = c[replacement]
        positive = theory > 0  # at B = N without replacement the variance is exactly 0: off a log scale
        ax.plot(c["B"][positive], theory[positive], color=color, lw=1, label=f"theory, {name} replacement")
        ax.plot(c["B"][positive], measured[positive], "o", ms=4, color=color, label=f"measured, {name}")
    ax.set(xscale="log", yscale="log", title=title, xlabel="batch size B",
           ylabel=r"$\\mathbb{E}\\,\\|\\hat g_B - G\\|^2$")
axes[0].legend(fontsize=8);
""", figure=("fig-minibatch-variance", "Variance of the mini-batch gradient against batch size, for linear "
             "regression (left) and an MLP on MNIST-1D (right): measured over random mini-batches (dots) and the "
             "theory (lines). With replacement it falls as $1/B$; without replacement it falls faster as $B$ "
             "nears $N$ and is exactly zero at $B=N$ (not drawn on the log scale)."),
     alt="Two log-log panels of gradient variance against batch size; measured dots lie on the theory lines; "
         "the with-replacement line is straight with slope minus one, the without-replacement line bends down "
         "near the data-set size.")
md(r"""
Measurement and theory agree at every batch size on both problems, without any fitted constant: the only input
to the theory is $\operatorname{tr}\Sigma$. The $1/B$ law of claim F5 holds exactly for sampling with
replacement; for the sampling real data loaders do, without replacement, it holds while $B \ll N$ and then the
variance drops faster, to zero at $B = N$.

## Signal, noise and the gradient noise scale during training

How much does the noise matter compared with the signal? The *signal-to-noise ratio* of a mini-batch gradient
compares the squared norm of the true gradient with the expected squared error of its estimate:

$$\mathrm{SNR}(B) = \frac{\lVert G\rVert^2}{\operatorname{tr}\Sigma / B} = \frac{B}{B_\text{simple}},
\qquad B_\text{simple} = \frac{\operatorname{tr}\Sigma}{\lVert G\rVert^2}.$$

$B_\text{simple}$, the *simple gradient noise scale* of {cite:p}`mccandlish2018empirical`, is the batch size at
which noise and signal are equal. Below it, a bigger batch makes each step markedly better; far above it, the
gradient is already accurate and extra examples are mostly wasted. Chapter 2 builds on it.

We train the MLP with SGD (learning rate 0.1, batch size 512, 2000 steps) and every 10 steps measure
the full training loss and $B_\text{simple}$ exactly, from per-example gradient norms over all 4000 training
examples (`grads.gradient_stats`, a few milliseconds). Every 250 steps we also run the practical estimator of
{cite:p}`mccandlish2018empirical` (appendix A), which needs only ordinary mini-batch gradients at two batch sizes,
here 32 and 1024 (`grads.estimate_noise_scale`).
""")
code("""
cfg = replace(train.TrainConfig(), lr=0.1, batch_size=512, num_steps=2000, eval_every=10,
              progress=False)  # a progress bar is a live widget: none in the static book
checkpoints = []  # (step, full training loss, exact GradStats)
estimates = []  # (step, two-batch GradStats)

def measure(step, model):
    with torch.no_grad():
        full_loss = torch.nn.functional.cross_entropy(model(X_train), y_train).item()
    checkpoints.append((step, full_loss, grads.gradient_stats(model, X_train, y_train)))
    if step % 250 == 0:
        estimates.append((step, grads.estimate_noise_scale(model, X_train, y_train, b_small=32, b_big=1024,
                                                           num_draws=40, seed=step)))

torch.manual_seed(0)
mlp = models.MLP()
measure(0, mlp)
history = train.train(mlp, (X_train, y_train, X_test, y_test), cfg, callback=measure)
print(f"test accuracy after {cfg.num_steps} steps: {history.test_acc[-1]:.1%}")
""")
md(r"""
Per checkpoint, $B_\text{simple}$ jumps around: $\lVert G\rVert^2$ at the current parameters is small and
sensitive to where SGD's last steps left them. Like {cite:p}`mccandlish2018empirical`, who average the numerator
and the denominator separately over time, we also show the ratio of $\operatorname{tr}\Sigma$ and
$\lVert G\rVert^2$ each averaged over windows of 250 steps.
""")
code("""
ckpt_steps = np.array([step for step, _, _ in checkpoints])
ckpt_loss = np.array([loss for _, loss, _ in checkpoints])
b_exact = np.array([st.b_simple for _, _, st in checkpoints])
windows = np.split(np.arange(1, len(checkpoints)), 8)  # 8 windows of 250 steps after initialisation
b_window = np.array([sum(checkpoints[i][2].trace_cov for i in w) / sum(checkpoints[i][2].grad_sq_norm for i in w)
                     for w in windows])
fig, (ax_loss, ax_b) = plt.subplots(1, 2, figsize=(10, 3.6))
ax_loss.plot(ckpt_steps, ckpt_loss, label="full training loss")
ax_loss.plot(history.eval_steps, history.test_loss, label="test loss")
ax_loss.set(xlabel="step", ylabel="cross-entropy loss")
ax_loss.legend(fontsize=8)
ax_b.plot(ckpt_steps, b_exact, ".", ms=3, alpha=0.5, label="exact, every 10 steps")
ax_b.plot([ckpt_steps[w].mean() for w in windows], b_window, "-", lw=2, label="exact, 250-step windows")
ax_b.plot([s for s, _ in estimates], [e.b_simple for _, e in estimates], "s", ms=6, mfc="none",
          label="two-batch estimate (B = 32, 1024)")
ax_b.set(yscale="log", xlabel="step", ylabel=r"$B_\\mathrm{simple}$ (examples)")
ax_b.legend(fontsize=8);
""", figure=("fig-noise-scale", "Training the MLP on MNIST-1D with batch size 512. Left: the training and test "
             "loss. Right: the simple gradient noise scale $B_\\text{simple}$, exactly from per-example gradients "
             "every 10 steps (dots), as 250-step windowed averages (line), and from the two-batch estimator (squares). "
             "It rises several-fold early in training, then levels off."),
     alt="Left panel: training and test loss decreasing over 2000 steps. Right panel: the gradient noise scale "
         "on a log axis: scattered dots and a smoother line that rise several-fold over the first few hundred steps and then level off, with open squares near them.")
md(r"""
How large is the change, given the scatter? The spread of the 8 window values gives a standard error for their
mean, to compare with the exact value at initialisation:
""")
code("""
later_mean, later_sem = b_window.mean(), b_window.std(ddof=1) / np.sqrt(len(b_window))
peak = int(b_window.argmax())
last = checkpoints[-1][2]
snr_end = grads.gradient_snr(last.grad_sq_norm, last.trace_cov, cfg.batch_size)
print("windowed B_simple:", " ".join(f"{b:.0f}" for b in b_window))
print(f"at initialisation {b_exact[0]:.0f}; mean of the windows {later_mean:.0f} +/- {later_sem:.0f}")
glue("b_simple_start", float(b_exact[0]), display=False)
glue("b_window_mean", float(later_mean), display=False)
glue("b_window_peak", float(b_window[peak]), display=False)
glue("b_window_peak_end", 250 * (peak + 1), display=False)
glue("b_window_last", float(b_window[-1]), display=False)
glue("snr_end", float(snr_end), display=False)
glue("test_acc_end", float(100 * history.test_acc[-1]), display=False)
""")
md(r"""
The noise scale is {glue:text}`b_simple_start:.0f` examples at initialisation. Once training is under way it is
several times larger: {glue:text}`b_window_mean:.0f` on average over the windows, peaking at
{glue:text}`b_window_peak:.0f` in the window ending at step {glue:text}`b_window_peak_end`. As the network starts
to fit the data, the mean gradient shrinks faster than the spread of the per-example gradients around it. It does
not keep growing, though: in the last window it is {glue:text}`b_window_last:.0f`, while the training loss is
still falling (test accuracy {glue:text}`test_acc_end:.1f` % at the end). {cite:t}`mccandlish2018empirical`
report a noise scale that grows over long training runs; on this small, overfitting MLP the growth is confined to
the early phase, a reminder that $B_\text{simple}$ is a property of the point where it is measured, not a
constant of the task. The signal-to-noise ratio of the 512-example batch ends at {glue:text}`snr_end:.2f`: each
step's gradient is mostly noise. With a much smaller batch, the parameters jitter more and
$\lVert G\rVert^2$ at the current point is inflated by that jitter (try {ref}`ex-jitter`).

How good is the cheap estimator? Each estimate above used 40 pairs of mini-batches. To know its noise we repeat
it with 8 seeds at the final parameters and compare the mean with the exact value.
""")
code("""
exact_end = checkpoints[-1][2].b_simple
repeats = np.array([grads.estimate_noise_scale(mlp, X_train, y_train, b_small=32, b_big=1024, num_draws=40,
                                               seed=100 + r).b_simple for r in range(8)])
repeat_sem = repeats.std(ddof=1) / np.sqrt(len(repeats))
print(f"B_simple at step {cfg.num_steps}: exact {exact_end:.0f}, two-batch {repeats.mean():.0f} +/- {repeat_sem:.0f} "
      f"(mean +/- standard error of 8 repeats)")
glue("two_batch_rel_err", float(100 * abs(repeats.mean() / exact_end - 1)), display=False)
""")
md(r"""
The two-batch estimate lands within {glue:text}`two_batch_rel_err:.1f` % of the exact per-example value, with no
per-example gradient computed. (The estimator of $\lVert G\rVert^2$ and of $\operatorname{tr}\Sigma$ is unbiased;
$B_\text{simple}$, their ratio, is only consistent, hence the averaging.)

## Explore it yourself

The function `widgets.plot_sgd_paths` draws the lesson's simulation for any batch size and learning rate: five
paths on the loss curve and the loss per step over 200 seeds. Here it is at the lesson's settings with $B = 8$.
""")
code("""
widgets.plot_sgd_paths(batch_size=8, lr=0.1);
""", figure=("fig-explore", "The lesson's simulation at batch size 8 and learning rate 0.1: five SGD paths on "
             "the loss curve (left) and the loss per step over 200 seeds with the exact expected loss (right)."),
     alt="Left: a parabola with five short paths of dots converging to its minimum at 3. Right: loss per step "
         "on a log scale falling and levelling off, with a band and a dashed theory line.")
md("""
```{admonition} Live version
:class: tip
The cell below gives sliders for the batch size and the learning rate. Sliders need a running Python kernel, so
this web page shows only the code: open the chapter in Colab or Binder with the rocket button at the top of the
page, or download the notebook and run it in Jupyter locally. Try a learning rate near 1 and watch SGD diverge.
```
""")
code("""
widgets.sgd_explorer()
""", tags=["remove-output"])

md(r"""
## What the claims say

Each claim from the three web texts (see the book's introduction) gets a verdict backed by the measurements
above. The cells after the table check each verdict in code, so the chapter fails its tests if a claim stops
holding. Tolerances come from the noise of each measurement: standard errors over seeds or draws, stated in each
check.

| claim | what it says | verdict | evidence |
|---|---|---|---|
| L5 | the lesson's simulation: larger batches give a lower, steadier loss | **holds**, and the theory is exact | {numref}`fig-lesson-loss`, {numref}`fig-stationary` |
| L1 | the mini-batch gradient estimates the full gradient; its variance falls as the batch grows | **holds**: unbiased, variance $\operatorname{tr}\Sigma/B$ | {numref}`fig-minibatch-variance` |
| F5 | the variance of the gradient estimate falls as $1/B$ | **holds with conditions**: exactly with replacement; without replacement faster, by $(N-B)/(N-1)$, zero at $B=N$ | {numref}`fig-minibatch-variance` |
| F1 | batch size 1 is pure SGD and gives a very noisy loss | **holds**: at $B=1$ the loss fluctuates about 128 times more than at $B=128$ (noise floor $\propto 1/B$) | {numref}`fig-lesson-loss` |
""")
md(r"""
**L5 and the closed form.** The spread of $\theta_{30}$ over 1000 seeds matches the exact standard deviation.
The standard error of a sample standard deviation of $n$ near-Gaussian draws is $\mathrm{sd}/\sqrt{2n}$, 2.2 %
here; we allow 4 standard errors.
""")
code("""
sd_sem = exact_sd / np.sqrt(2 * res.theta.shape[0])
assert np.all(np.abs(final_sd - exact_sd) < 4 * sd_sem), (final_sd, exact_sd)
assert np.all(np.diff(final_sd) < 0), "the spread must shrink as the batch grows"
""")
md(r"""
**The noise floor.** Every stable (batch size, learning rate) pair matches the closed-form stationary variance
within 4 standard errors of its mean over seeds, and the unstable learning rate is detected as diverged at every
batch size.
""")
code("""
assert np.all(z_stationary[stable] < 4), z_stationary
assert list(diverged_lrs) == [1.05] and not long.diverged[:, grid_lrs < 1].any()
""")
md(r"""
**L1: unbiased, with shrinking variance.** The mean of 4000 mini-batch gradients of the linear-regression
problem at $B = 8$ equals the full gradient in every coordinate within 4 standard errors, and the measured
variance falls at every step of the batch grid, on both problems.
""")
code("""
rng = np.random.default_rng(0)
idx = torch.from_numpy(rng.integers(0, len(per_example), size=(4000, 8)))
batch_means = per_example[idx].mean(1)  # (4000, dim): 4000 mini-batch gradients at B = 8
z_bias = (batch_means.mean(0) - per_example.mean(0)).abs() / (batch_means.std(0) / np.sqrt(4000))
assert torch.all(z_bias < 4), z_bias
for c in curves.values():
    assert np.all(np.diff(c[True][0]) < 0) and np.all(np.diff(c[False][0]) < 0)
""")
md(r"""
**F5: the $1/B$ law, and its correction without replacement.** At every batch size, with and without
replacement, on both problems, the measured variance matches the theory within 4 Monte-Carlo standard errors; at
$B = N$ without replacement it is zero up to rounding.
""")
code("""
for title, c in curves.items():
    for replacement in (True, False):
        measured, sem, theory = c[replacement]
        nonzero = theory > 0
        z = np.abs(measured[nonzero] - theory[nonzero]) / sem[nonzero]
        assert np.all(z < 4), (title, replacement, z)
    measured_full = c[False][0][-1]
    assert c["B"][-1] == c["N"] and abs(measured_full) < 1e-9 * c[True][2][0], measured_full
""")
md(r"""
**F1: batch size 1 gives a very noisy loss.** In the lesson's simulation the standard deviation of the loss
across runs at step 30, at $B=1$ against $B=128$, should be near the exact ratio from the closed form (for a
Gaussian $e$ with mean $m$ and variance $v$, $\operatorname{Var} e^2 = 2v^2 + 4m^2v$). We split the 1000 seeds
into 10 groups to get the standard error of the measured ratio and allow 4 of them.
""")
code("""
m30, v30 = mean[:, 0, -1] - 3, var[:, 0, -1]
exact_loss_sd = np.sqrt(2 * v30**2 + 4 * m30**2 * v30)
exact_ratio = exact_loss_sd[0] / exact_loss_sd[-1]
loss_30 = res.loss[:, :, 0, -1]  # (num_seeds, num_batch_sizes)
group_ratios = [g[:, 0].std() / g[:, -1].std() for g in np.split(loss_30, 10)]
measured_ratio = loss_30[:, 0].std() / loss_30[:, -1].std()
ratio_sem = np.std(group_ratios, ddof=1) / np.sqrt(10)
print(f"loss sd ratio B=1 / B=128: measured {measured_ratio:.0f} +/- {ratio_sem:.0f}, exact {exact_ratio:.0f}")
assert abs(measured_ratio - exact_ratio) < 4 * ratio_sem and measured_ratio > 50
""")
md(r"""
**The noise scale rises during training, and the cheap estimator finds it.** The mean of the windowed
$B_\text{simple}$ exceeds its exact value at initialisation by more than 4 standard errors (from the spread of
the 8 windows), and the mean of 8 two-batch estimates lies within 4 standard errors of the exact value.
""")
code("""
assert later_mean - 4 * later_sem > b_exact[0], (b_window, b_exact[0])
assert abs(repeats.mean() - exact_end) < 4 * repeat_sem, (repeats, exact_end)
""")

md(r"""
## Summary

- A mini-batch gradient is an unbiased estimate of the full gradient; its variance is
  $\operatorname{tr}\Sigma / B$ with replacement and $\operatorname{tr}\Sigma / B \cdot (N-B)/(N-1)$ without,
  measured here at every batch size from 1 to $N$ on a real network.
- That noise sets the floor at which SGD's loss stops falling: for a quadratic it is
  $\eta^2\sigma^2 / \bigl(B(1 - (1 - \eta h)^2)\bigr)$, so batch size and learning rate trade off.
- The gradient noise scale $B_\text{simple} = \operatorname{tr}\Sigma / \lVert G\rVert^2$ is the batch size at
  which signal equals noise. Here it rises several-fold early in training and then levels off; ordinary
  mini-batch gradients at two batch sizes estimate it without any per-example gradient.
- Verdicts: L1 and L5 hold; F5 holds exactly with replacement and with a correction without; F1 holds.

## Exercises

```{exercise}
:label: ex-without-replacement

Show that for a mini-batch of $B$ distinct indices drawn uniformly without replacement from $N$ examples,
$\mathbb E \lVert \hat g_B - G \rVert^2 = \frac{\operatorname{tr}\Sigma}{B}\cdot\frac{N-B}{N-1}$.
*Hint:* write $d_i = g_i - G$, note $\sum_i d_i = 0$, and compute $\mathbb E[d_{i_k}\cdot d_{i_l}]$ for $k \ne l$.
```

````{solution} ex-without-replacement
:class: dropdown

$\hat g_B - G = \frac1B \sum_{k=1}^B d_{i_k}$, so
$\mathbb E\lVert\hat g_B - G\rVert^2 = \frac1{B^2}\bigl(B\,\mathbb E\lVert d_{i_1}\rVert^2 + B(B-1)\,
\mathbb E[d_{i_1}\cdot d_{i_2}]\bigr)$. The first expectation is $\operatorname{tr}\Sigma$. For two distinct
indices, $\mathbb E[d_{i_1}\cdot d_{i_2}] = \frac{1}{N(N-1)}\sum_{i\ne j} d_i\cdot d_j =
\frac{1}{N(N-1)}\bigl(\lVert\sum_i d_i\rVert^2 - \sum_i \lVert d_i\rVert^2\bigr) = -\frac{\operatorname{tr}\Sigma}{N-1}$.
Hence $\mathbb E\lVert\hat g_B - G\rVert^2 = \frac{\operatorname{tr}\Sigma}{B}\bigl(1 - \frac{B-1}{N-1}\bigr) =
\frac{\operatorname{tr}\Sigma}{B}\cdot\frac{N-B}{N-1}$. With replacement the cross term is zero, giving
$\operatorname{tr}\Sigma/B$.
````

```{exercise}
:label: ex-floor

(Coding.) With `sim.stationary_variance`, find the smallest batch size (a power of two up to 1024) whose
stationary loss $\operatorname{Var}_\infty\theta$ at learning rate 0.1 is below 0.01. Then find the learning rate
that reaches the same floor at batch size 8. Confirm both with `sim.simulate_sgd`. What do the two answers say
about the cost of a low noise floor?
```

```{solution-start} ex-floor
:class: dropdown
```
""")
code("""
candidates = 2 ** np.arange(11)
floors = sim.stationary_variance(0.1, candidates)
b_needed = int(candidates[np.argmax(floors < 0.01)])
lr_needed = 0.9 * 0.02 / 1.02  # at B = 8: 4 lr / (8 (1 - lr)) < 0.01  <=>  lr < 0.02 / 1.02
check = sim.simulate_sgd(lrs=[0.1, lr_needed], batch_sizes=[b_needed, 8], num_steps=3000, num_seeds=200, seed=2)
floor = ((check.theta[..., 2000:] - 3) ** 2).mean(axis=(0, -1))  # (num_batch_sizes, num_lrs)
print(f"B = {b_needed} at lr 0.1: floor {floor[0, 0]:.4f};  B = 8 at lr {lr_needed:.4f}: floor {floor[1, 1]:.4f}")
""")
md(r"""
Both reach a floor below 0.01, but the small-batch route needs a learning rate five times smaller, so about five
times more steps to get there from $\theta_0 = 0$ (the error shrinks by a factor $1 - 2\eta$ per step), while the
large-batch route spends many more examples per step. Which is cheaper depends on what a step costs at each
batch size: the subject of chapter 2.

```{solution-end}
```

```{exercise}
:label: ex-jitter

(Coding.) Repeat the training run of the noise-scale section with batch size 64 instead of 512 (same learning
rate, 1500 steps), measuring $\lVert G\rVert^2$ and $\operatorname{tr}\Sigma$ every 50 steps. Does the windowed
$B_\text{simple}$ still grow as the loss falls? Which of its two factors behaves differently, and why?
```

```{solution-start} ex-jitter
:class: dropdown
```
""")
code("""
small_cfg = replace(cfg, batch_size=64, num_steps=1500, progress=False)
small_ckpts = []
torch.manual_seed(0)
small_mlp = models.MLP()
train.train(small_mlp, (X_train, y_train, X_test, y_test), small_cfg,
            callback=lambda step, model: small_ckpts.append(grads.gradient_stats(model, X_train, y_train)))
for k, w in enumerate(np.split(np.arange(len(small_ckpts)), 6)):
    g2 = np.mean([small_ckpts[i].grad_sq_norm for i in w])
    tr = np.mean([small_ckpts[i].trace_cov for i in w])
    print(f"steps {250 * k:4d}-{250 * (k + 1):4d}: |G|^2 = {g2:.3f}, tr Sigma = {tr:6.1f}, B_simple = {tr / g2:5.0f}")
""")
md(r"""
With batch 64 the parameters take noisier steps and keep bouncing across the sharp directions of the loss,
where the gradient is large: $\lVert G\rVert^2$ measured at the current parameters stays high instead of
shrinking, so the windowed $B_\text{simple}$ grows much less, or not at all. $B_\text{simple}$ describes the
point where it is measured; at a noisy SGD iterate it mixes the data's gradient noise with the optimiser's own
jitter. Lowering the learning rate (or averaging the parameters) removes most of the jitter.

```{solution-end}
```

```{exercise}
:label: ex-cnn-noise-scale

(Coding.) Measure $B_\text{simple}$ of the 1-D CNN `models.CNN1D()` at initialisation on the MNIST-1D training
set, exactly and with the two-batch estimator, and compare with the MLP's value at initialisation. `grads`
supports `nn.Conv1d` layers.
```

```{solution-start} ex-cnn-noise-scale
:class: dropdown
```
""")
code("""
torch.manual_seed(0)
cnn = models.CNN1D()
exact_cnn = grads.gradient_stats(cnn, X_train, y_train)
two_batch_cnn = grads.estimate_noise_scale(cnn, X_train, y_train, b_small=32, b_big=1024, num_draws=40)
print(f"CNN at init: B_simple exact {exact_cnn.b_simple:.0f}, two-batch {two_batch_cnn.b_simple:.0f}; "
      f"MLP at init: {b_exact[0]:.0f}")
""")
md(r"""
The noise scale depends on the model and on where in training it is measured, so no single batch size is right
for every network: a reason to measure it rather than adopt a rule of thumb.

```{solution-end}
```

## References

The works cited in this chapter, with every other source of the book, are listed in the
{doc}`bibliography <../bibliography>`.
""")

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
               "language_info": {"name": "python"}}
nbf.write(nb, __file__.replace("_build_ch1.py", "01_gradient_variance.ipynb"))
