"""Small models: for MNIST-1D an MLP and a 1-D CNN, without batch norm (unless asked) so per-example gradients
exist; for token sequences a tiny causal transformer in the style of nanoGPT."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_positive_int


class MLP(nn.Sequential):
    """A ReLU multilayer perceptron, 40 -> 100 -> 100 -> 10 by default. Introduced in chapter 1.

    batch_norm=True puts a BatchNorm1d before each ReLU that normalises with the statistics of the batch it is given,
    in training and in evaluation alike (no running averages); chapter 5.1 trains it. Such a model mixes the
    examples of a batch, so it has no per-example gradients.
    """

    def __init__(self, in_features=40, hidden=(100, 100), num_classes=10, batch_norm=False):
        sizes = [check_positive_int(n, "layer size") for n in (in_features, *hidden, num_classes)]
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be True or False, got {batch_norm!r}")
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(n_out, track_running_stats=False))
                layers.append(nn.ReLU())
        super().__init__(*layers)


class CNN1D(nn.Sequential):
    """A small 1-D CNN for length-40 signals: three strided convolutions and a linear read-out.

    Introduced in chapter 1 (gradient variance). Input shape (batch_size, length) or
    (batch_size, 1, length).
    """

    def __init__(self, length=40, channels=32, num_classes=10):
        check_positive_int(length, "length")
        check_positive_int(channels, "channels")
        out_len = length
        for _ in range(3):
            out_len = (out_len + 2 * 1 - 3) // 2 + 1
        super().__init__(
            nn.Unflatten(1, (1, length)),
            nn.Conv1d(1, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * out_len, num_classes))
        self.length = length

    def forward(self, x):
        if x.ndim == 3 and x.shape[1] == 1:
            x = x.flatten(1)
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"CNN1D expects inputs of shape (batch_size, {self.length}) or "
                             f"(batch_size, 1, {self.length}), got {tuple(x.shape)}")
        return super().forward(x)


class _Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attention(ln1(x)), then x + mlp(ln2(x)), as in nanoGPT."""

    def __init__(self, width, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)  # queries, keys and values of every head
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def forward(self, h):
        n, T, C = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(n, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (n, heads, T, C // heads)
        h = h + self.proj(att.transpose(1, 2).reshape(n, T, C))
        return h + self.out(F.gelu(self.fc(self.ln2(h))))


def _linear(params, name, x, bias=True):
    """x (runs, m, in) through the stacked Linear `name` {name.weight: (runs, out, in), name.bias: (runs, out)}."""
    if not bias:
        return torch.bmm(x, params[name + ".weight"].transpose(1, 2))
    return torch.baddbmm(params[name + ".bias"][:, None], x, params[name + ".weight"].transpose(1, 2))


def _layer_norm(params, name, x):
    """x (runs, m, width) through the stacked LayerNorm `name`."""
    normed = F.layer_norm(x, x.shape[-1:])
    return torch.addcmul(params[name + ".bias"][:, None], normed, params[name + ".weight"][:, None])


class TinyGPT(nn.Module):
    """Introduced in chapter 5 (language models).

    A tiny causal transformer in the style of nanoGPT: token and learned position embeddings, `num_layers`
    pre-LayerNorm blocks of causal self-attention (`num_heads` heads) and an MLP (4 x width, GELU), a final
    LayerNorm and a linear head without bias (not tied to the token embedding); no dropout. Input: token ids
    (batch, T) of dtype torch.long with T <= context; output: next-token logits (batch, T, vocab_size), position t
    seeing tokens 0..t only. A batch of B sequences is B x T tokens. Weights are initialised as nanoGPT does:
    normal with std 0.02 (the residual projections 0.02 / sqrt(2 num_layers)), biases zero, so the logits start
    within about 0.02 sqrt(width) of zero and the loss at initialisation is close to ln(vocab_size).
    `forward_stacked` computes many runs (stacked parameters) at once; `train.train_many` uses it.
    """

    def __init__(self, vocab_size, context, width=32, num_layers=1, num_heads=2):
        super().__init__()
        self.vocab_size = check_positive_int(vocab_size, "vocab_size")
        self.context = check_positive_int(context, "context")
        self.width = check_positive_int(width, "width")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if width % num_heads:
            raise ValueError(f"width must be a multiple of num_heads, got width {width} and num_heads {num_heads}")
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(_Block(width, num_heads) for _ in range(num_layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:  # embeddings and Linear weights; LayerNorm weights stay 1
                std = 0.02 / math.sqrt(2 * num_layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def check_tokens(self, tokens, stacked=False):
        """Raise unless tokens are torch.long ids in [0, vocab_size) of shape (batch, T), 1 <= T <= context, or
        (num_runs, batch, T) too if stacked. Introduced in chapter 5 (language models)."""
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"TinyGPT expects a torch.Tensor of token ids, got {type(tokens).__name__}")
        if tokens.dtype != torch.long:
            raise TypeError(f"TinyGPT expects integer token ids (torch.long), got dtype {tokens.dtype}")
        if tokens.ndim not in ((2, 3) if stacked else (2,)) or not 1 <= tokens.shape[-1] <= self.context:
            shapes = "(batch, T) or (num_runs, batch, T)" if stacked else "(batch, T)"
            raise ValueError(f"TinyGPT expects token ids of shape {shapes} with 1 <= T <= context = {self.context}, "
                             f"got {tuple(tokens.shape)}")
        if tokens.numel() and not _under_vmap(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"TinyGPT expects token ids in [0, vocab_size = {self.vocab_size}), got values from "
                             f"{tokens.min().item()} to {tokens.max().item()}")

    def forward(self, tokens):
        """Logits (batch, T, vocab_size) of token ids (batch, T), T at most the context."""
        self.check_tokens(tokens)
        h = self.tok(tokens) + self.pos.weight[:tokens.shape[-1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))

    def forward_stacked(self, params, tokens):
        """Logits (num_runs, batch, T, vocab_size) of many runs at once, one batched matrix product per layer.

        Introduced in chapter 5 (language models). `params` are stacked parameters {name: (num_runs, ...)}
        (torch.func.stack_module_state); tokens (num_runs, batch, T), each run its own, or (batch, T) for every
        run. The same function as `forward` run by run, up to float rounding; this module's own parameters are
        not used.
        """
        R = len(params["tok.weight"])
        self.check_tokens(tokens, stacked=True)
        if tokens.ndim == 2:
            tokens = tokens.expand(R, *tokens.shape)
        if tokens.shape[0] != R:
            raise ValueError(f"tokens (num_runs, batch, T) must have one row per run, {R} in all, got shape "
                             f"{tuple(tokens.shape)}")
        n, T = tokens.shape[1:]
        V, C, H = self.vocab_size, self.width, self.num_heads
        rows = tokens + V * torch.arange(R).view(R, 1, 1)  # run r's tokens index its block of the stacked table
        h = F.embedding(rows.view(R, n * T), params["tok.weight"].reshape(R * V, C))  # (runs, n T, width)
        h = (h.view(R, n, T, C) + params["pos.weight"][:, None, :T]).view(R, n * T, C)
        for i in range(self.num_layers):
            b = f"blocks.{i}."
            qkv = _linear(params, b + "qkv", _layer_norm(params, b + "ln1", h))
            q, k, v = qkv.view(R * n, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (runs n, heads, T, C // heads)
            h = h + _linear(params, b + "proj", att.transpose(1, 2).reshape(R, n * T, C))
            mlp = F.gelu(_linear(params, b + "fc", _layer_norm(params, b + "ln2", h)))
            h = h + _linear(params, b + "out", mlp)
        return _linear(params, "head", _layer_norm(params, "ln", h), bias=False).view(R, n, T, V)


def _under_vmap(tensor):
    """Whether tensor is wrapped by a torch.func transform (vmap), where its values cannot be read."""
    return torch._C._functorch.is_functorch_wrapped_tensor(tensor)
