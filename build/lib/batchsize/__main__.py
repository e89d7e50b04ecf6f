"""Command line of the book's library: `python -m batchsize advise --model mlp|cnn ...` (chapter 6).

Runs `advise.advise` on one of the book's models with MNIST-1D (generated offline) and prints the recommendation;
--json prints the numbers as JSON, --figure saves `advise.plot_advice`'s figure.
"""
import argparse
import json
import sys

MODELS = ("mlp", "cnn")


def _parser():
    parser = argparse.ArgumentParser(prog="python -m batchsize", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("advise", help="recommend a batch size and a learning rate for a book model on MNIST-1D")
    p.add_argument("--model", choices=MODELS, default="mlp", help="the book's MLP or 1-D CNN (default: mlp)")
    p.add_argument("--time-budget", type=float, default=30.0, help="seconds to spend measuring (default: 30)")
    p.add_argument("--ref-batch-size", type=int, default=32, help="batch size of the probe and the short run")
    p.add_argument("--lr", type=float, default=None, help="learning rate tuned at --ref-batch-size (default: probe)")
    p.add_argument("--memory-budget", type=int, default=None, help="act as if the device held this many bytes")
    p.add_argument("--device", default=None, help="'cpu', 'cuda', ... (default: a GPU when there is one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, help="save the evidence figure to this file (e.g. advice.png)")
    p.add_argument("--json", action="store_true", help="print the recommendation and evidence as JSON")
    return parser


def main(argv=None):
    """Entry point of `python -m batchsize`. Introduced in chapter 6 (choosing a batch size)."""
    args = _parser().parse_args(argv)
    from . import data, models
    from .advise import advise, plot_advice

    make_model = {"mlp": models.MLP, "cnn": models.CNN1D}[args.model]
    try:
        advice = advise(make_model, data.load_mnist1d(), time_budget_s=args.time_budget,
                        ref_batch_size=args.ref_batch_size, lr=args.lr, device=args.device,
                        memory_budget_bytes=args.memory_budget, seed=args.seed)
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({
            "model": args.model, "batch_size": advice.batch_size, "batch_range": list(advice.batch_range),
            "lr": advice.lr, "warmup_steps": advice.warmup_steps, "ref_batch_size": advice.ref_batch_size,
            "ref_lr": advice.ref_lr, "max_fit": advice.max_fit, "knee": advice.knee, "b_noise": advice.b_noise,
            "noise_steps": advice.noise_steps.tolist(), "b_simple": advice.b_simple.tolist(),
            "throughput": advice.throughput.as_dict(), "seconds": advice.seconds, "notes": advice.notes}, indent=1))
    else:
        print(advice.summary())
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plot_advice(advice)
        plt.gcf().tight_layout()
        plt.savefig(args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
