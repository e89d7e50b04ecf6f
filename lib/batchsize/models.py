"""Small models for MNIST-1D: an MLP and a 1-D CNN, without batch norm (unless asked) so per-example gradients exist."""
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
