"""The book's MLP for many runs at once, forward and backward written out as batched matrix products.

`train.train_many` trains many runs of one model as stacked parameters {name: (num_runs, ...)}. For a model that
is a plain stack of nn.Linear layers with ReLU between them (`models.MLP` without batch norm), this module does a
step without autograd: a forward pass of three batched matrix products, the softmax cross-entropy's gradient in
closed form and a backward pass of matrix products. At small batches that is several times faster than torch.func's
`vmap` with autograd, whose fixed cost per step dominates there (`benchmarks/run.py` measures it), and it gives the
same gradients up to rounding (tests/test_stacked_mlp.py checks them against autograd in float64). It also gives each
run's gradient noise scale over a whole data set in the same pass, from the per-example gradient norms of linear
layers, |g_i|^2 = sum over layers of |delta_i|^2 (|a_i|^2 + 1). Introduced in chapter 2.2.
"""
import torch
import torch.nn.functional as F
from torch import nn


def layer_names(model):
    """The (weight, bias) parameter names of each Linear layer if model is Linear layers with ReLU between, else None.

    Every parameter must be trainable and every Linear must have a bias.
    """
    if not isinstance(model, nn.Sequential) or len(model) == 0 or len(model) % 2 == 0:
        return None
    names = []
    for i, layer in enumerate(model):
        if i % 2 == 1:
            if type(layer) is not nn.ReLU:
                return None
            continue
        if type(layer) is not nn.Linear or layer.bias is None:
            return None
        if not (layer.weight.requires_grad and layer.bias.requires_grad):
            return None
        names.append((f"{i}.weight", f"{i}.bias"))
    return names


def _bmm(a, b):
    """torch.bmm, with a single run computed as two: with several threads, a product of one pair may be split along
    the summed axis and round differently, and a run must give the same numbers alone as inside a stack."""
    if len(a) > 1:
        return torch.bmm(a, b)
    return torch.bmm(a.expand(2, -1, -1), b.expand(2, -1, -1))[:1]


def _baddbmm_(c, a, b, beta=1.0, alpha=1.0):
    """c = beta c + alpha a @ b in place, one kernel; a single run computed as two, as `_bmm`."""
    if len(c) != 1:
        return c.baddbmm_(a, b, beta=beta, alpha=alpha)
    two = (t.expand(2, -1, -1) for t in (c, a, b))
    return c.copy_(torch.baddbmm(*two, beta=beta, alpha=alpha)[:1])


def _mean_nll(log_p, y):
    """Each run's mean of -log p(label) over the labels y, broadcast to log_p's leading axes: (num_runs,)."""
    return -log_p.gather(-1, y.expand(log_p.shape[:-1])[..., None]).flatten(1).mean(1)


def _log_softmax_(z):
    """log_softmax over the last axis, in place: a few classes make F.log_softmax's kernel several times slower."""
    z -= z.amax(-1, keepdim=True)
    return z.sub_(z.exp().sum(-1, keepdim=True).log_())


class StackedMLP:
    """Forward and backward of stacked runs of an MLP whose Linear layers have the parameter names `names`."""

    def __init__(self, names):
        self.names = names

    def _forward(self, params, x):
        """Each layer's input (after the ReLU, which is in place) and the logits: x (num_runs, n, in) or (n, in)."""
        inputs = []
        h = x
        for k, (w, b) in enumerate(self.names):
            W = params[w]  # (num_runs, out, in)
            if h.ndim == 2:
                h = h.expand(len(W), *h.shape)
            inputs.append(h)
            z = _bmm(h, W.transpose(1, 2)).add_(params[b][:, None])  # (num_runs, n, out); faster than baddbmm
            if k + 1 < len(self.names):
                h = z.clamp_min_(0)
        return inputs, z

    def __call__(self, params, x, shared=False):
        """Logits (num_runs, n, num_classes) of x, (num_runs, n, in) or (n, in) when shared (as train._Stacked)."""
        return self._forward(params, x)[1]

    def _backward(self, params, inputs, dz, want_grads=True):
        """Deltas of every layer's output, first layer first, and the gradients {name: (num_runs, ...)} if want_grads.

        A ReLU passes the delta where its output is positive (autograd's threshold_backward, one kernel)."""
        deltas, grads = [], {}
        for k in range(len(self.names) - 1, -1, -1):
            w, b = self.names[k]
            deltas.append(dz)
            if want_grads:
                grads[w] = _bmm(dz.transpose(1, 2), inputs[k])  # (num_runs, out, in)
                grads[b] = dz.sum(1)
            if k > 0:
                dz = torch.ops.aten.threshold_backward(torch.bmm(dz, params[w]), inputs[k], 0)
        return deltas[::-1], grads

    def loss_and_deltas(self, params, xb, yb):
        """Every run's mean cross-entropy and accuracy on its batch, and what a backward pass starts from: each layer's
        input and the loss's gradient in the logits (num_runs, batch_size, num_classes)."""
        with torch.no_grad():
            inputs, z = self._forward(params, xb)
            log_p = _log_softmax_(z)  # (num_runs, batch_size, num_classes)
            loss = _mean_nll(log_p, yb)
            acc = (log_p.argmax(-1) == yb).double().mean(1)
            dz = log_p.exp_()
            dz.scatter_add_(-1, yb[..., None], torch.full_like(dz[..., :1], -1.0))
            dz /= yb.shape[-1]
        return loss, acc, (inputs, dz)

    def loss_and_grads(self, params, xb, yb):
        """Every run's mean cross-entropy and accuracy on its batch, and the gradients (as train._loss_and_grads)."""
        loss, acc, (inputs, dz) = self.loss_and_deltas(params, xb, yb)
        with torch.no_grad():
            _, grads = self._backward(params, inputs, dz)
        return loss, acc, [grads[name] for name in params]

    def sgd_step_(self, params, velocity, inputs, dz, lr, momentum=0.0):
        """torch.optim.SGD's step (no weight decay) of every run in place, inside the backward pass of
        `loss_and_deltas`' output: each weight's gradient is summed straight into its velocity (into the weight,
        scaled by the run's lr (num_runs,), without momentum) by one batched product, never stored on its own."""
        with torch.no_grad():
            for k in range(len(self.names) - 1, -1, -1):
                w, b = self.names[k]
                W, a = params[w], inputs[k]
                below = torch.ops.aten.threshold_backward(torch.bmm(dz, W), a, 0) if k > 0 else None  # W unchanged
                if momentum:
                    _baddbmm_(velocity[w], dz.transpose(1, 2), a, beta=momentum)
                    velocity[b].mul_(momentum).add_(dz.sum(1))
                    W.addcmul_(velocity[w], lr[:, None, None], value=-1)
                    params[b].addcmul_(velocity[b], lr[:, None], value=-1)
                else:
                    dz = dz * lr[:, None, None]
                    _baddbmm_(W, dz.transpose(1, 2), a, alpha=-1.0)
                    params[b].sub_(dz.sum(1))
                dz = below

    def noise_scale(self, params, X, y):
        """|G|^2, tr(Sigma) and B_simple of every run over the whole of (X, y): three float64 tensors (num_runs,).

        As grads.gradient_stats for each run: G is the mean gradient, tr(Sigma) = mean_i |g_i|^2 - |G|^2. The sums
        run in X's dtype (float32 keeps about six digits of each, far more than a noise scale needs) and the last
        subtraction in float64.
        """
        with torch.no_grad():
            inputs, z = self._forward(params, X)
            dz = F.softmax(z, -1)  # per-example gradient of each example's own loss: softmax - one-hot
            dz.scatter_add_(-1, y.expand(len(z), -1)[..., None], torch.full_like(dz[..., :1], -1.0))
            deltas, _ = self._backward(params, inputs, dz, want_grads=False)
            sq = torch.zeros(z.shape[:2], dtype=z.dtype)  # (num_runs, N): |g_i|^2
            mean_sq = torch.zeros(len(z), dtype=torch.float64)  # |G|^2
            for a, d in zip(inputs, deltas):
                sq += d.square().sum(-1) * (a.square().sum(-1) + 1)
                G_w = torch.bmm(d.transpose(1, 2), a) / len(X)  # (num_runs, out, in): the weight's mean gradient
                mean_sq += G_w.square().sum((1, 2)).double() + d.mean(1).square().sum(1).double()
            trace = sq.double().mean(1) - mean_sq
        return mean_sq, trace, trace / mean_sq
