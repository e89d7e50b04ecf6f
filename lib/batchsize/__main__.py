"""Command line of the book's library: `python -m batchsize advise|lab ...`.

`advise --model mlp|cnn|MODULE:FUNCTION` (chapter 6) runs `advise.advise` on one of the book's models with
MNIST-1D (generated offline), or on a reader's own: FUNCTION() in MODULE (an importable module or a .py file)
returns (model, data) or (model, data, loss_fn), as `advise.advise` takes them. It prints the recommendation; --json
prints the numbers as JSON, --figure saves `advise.plot_advice`'s figure. Every failure is one line on stderr and a
non-zero exit: 2 for bad arguments (checked before measuring, output paths included), 3 when the advisor cannot
advise, 1 for any other error. `lab [PATH] [--notebook]` opens the lessons in JupyterLab or Notebook 7 with the
book's front-end defaults.
"""
import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

MODELS = ("mlp", "cnn")


def _parser():
    parser = argparse.ArgumentParser(prog="python -m batchsize", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("advise", help="recommend a batch size and a learning rate for a model and its data")
    p.add_argument("--model", default="mlp", help="mlp or cnn (the book's, on MNIST-1D; default: mlp), or "
                   "MODULE:FUNCTION, FUNCTION() returning (model, data) or (model, data, loss_fn)")
    p.add_argument("--time-budget", type=float, default=30.0, help="seconds to spend measuring (default: 30)")
    p.add_argument("--ref-batch-size", type=int, default=32, help="batch size of the probe and the short run")
    p.add_argument("--lr", type=float, default=None, help="learning rate tuned at --ref-batch-size (default: probe)")
    p.add_argument("--memory-budget", type=int, default=None, help="act as if the device held this many bytes")
    p.add_argument("--device", default=None, help="'cpu', 'cuda', ... (default: a GPU when there is one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, help="save the evidence figure to this file (e.g. advice.png)")
    p.add_argument("--json", action="store_true", help="print the recommendation and evidence as JSON")
    lab = commands.add_parser("lab", help="open the lessons in JupyterLab (or Notebook 7) as the book expects")
    lab.add_argument("path", nargs="?", default=None,
                     help="folder or notebook to open (default: chapters/ when it is here, else this folder)")
    lab.add_argument("--notebook", action="store_true", help="Notebook 7 instead of JupyterLab")
    lab.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="after --: passed on to jupyter")
    return parser


# Defaults for JupyterLab and Notebook 7 (a reader's own settings still win): every cell is drawn when a notebook
# opens. With the default windowing jupyterlab-myst evaluates the {eval} expressions only of the cells it has
# drawn, and a chapter run with Run All would show the numbers of the cells below the screen as code.
LAB_SETTINGS = Path(__file__).with_name("jupyterlab")


def lab_command(path=None, notebook=False, jupyter_args=()):
    """The `jupyter lab` (or `jupyter notebook`) command line that opens `path` with the book's defaults."""
    if path is None:
        path = "chapters" if Path("chapters").is_dir() else "."
    if not Path(path).exists():
        raise ValueError(f"nothing to open at {path!r}: give a folder or a notebook that exists")
    if not (LAB_SETTINGS / "overrides.json").is_file():
        raise FileNotFoundError(f"the front-end defaults are missing from the package: {LAB_SETTINGS}")
    args = [a for a in jupyter_args if a != "--"]
    return [sys.executable, "-m", "jupyter", "notebook" if notebook else "lab",
            f"--LabApp.app_settings_dir={LAB_SETTINGS}", f"--JupyterNotebookApp.app_settings_dir={LAB_SETTINGS}",
            *args, str(path)]


class UsageError(ValueError):
    """A bad argument of the command line, found before any measurement."""


def load_user_model(spec):
    """(model, data, loss_fn) from "MODULE:FUNCTION": FUNCTION() in an importable module or a .py file returns
    (model, data) or (model, data, loss_fn). Introduced in chapter 6 (choosing a batch size)."""
    module_name, sep, function_name = spec.rpartition(":")
    if not sep or not module_name or not function_name:
        raise UsageError(f"--model must be one of {', '.join(MODELS)} or MODULE:FUNCTION (FUNCTION() returning "
                         f"(model, data) or (model, data, loss_fn)), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            if not Path(module_name).is_file():
                raise UsageError(f"--model: no file {module_name!r}")
            file_spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            module = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--model: cannot import {module_name!r} ({error})") from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UsageError(f"--model: {module_name!r} has no function {function_name!r}")
    out = function()
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise UsageError(f"--model: {function_name}() must return (model, data) or (model, data, loss_fn), got "
                         f"{type(out).__name__}" + (f" of {len(out)}" if isinstance(out, tuple) else ""))
    return out if len(out) == 3 else (*out, None)


def _check_figure_path(path):
    """Raise UsageError unless a figure can be saved at path: its folder exists and matplotlib knows its format."""
    if path is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UsageError(f"--figure: the folder {str(folder)!r} does not exist")
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if Path(path).suffix.lstrip(".").lower() not in formats:
        raise UsageError(f"--figure: {path!r} needs one of the extensions {', '.join(sorted(formats))}")


def _advice_json(name, advice):
    """The recommendation and its evidence as a JSON string."""
    return json.dumps({
        "model": name, "batch_size": advice.batch_size, "batch_range": list(advice.batch_range), "lr": advice.lr,
        "warmup_steps": advice.warmup_steps, "ref_batch_size": advice.ref_batch_size, "ref_lr": advice.ref_lr,
        "lr_cap": advice.lr_cap, "max_fit": advice.max_fit, "knee": advice.knee, "b_noise": advice.b_noise,
        "b_noise_interval": list(advice.b_noise_interval), "noise_method": advice.noise_method,
        "noise_steps": advice.noise_steps.tolist(), "b_simple": advice.b_simple.tolist(),
        "throughput": advice.throughput.as_dict(), "seconds": advice.seconds, "notes": advice.notes}, indent=1)


def _advise(args):
    """The advise command: checks, measurement, output; returns the exit status."""
    from . import data, hardware, models
    from .advise import CannotAdvise, advise, plot_advice

    try:
        _check_figure_path(args.figure)
        if args.model in MODELS:
            model, examples, loss_fn = {"mlp": models.MLP, "cnn": models.CNN1D}[args.model], data.load_mnist1d(), None
        else:
            model, examples, loss_fn = load_user_model(args.model)
        advice = advise(model, examples, loss_fn=loss_fn, time_budget_s=args.time_budget,
                        ref_batch_size=args.ref_batch_size, lr=args.lr,
                        device=hardware.default_device() if args.device is None else args.device,
                        memory_budget_bytes=args.memory_budget, seed=args.seed)
    except (UsageError, TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CannotAdvise as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except Exception as error:  # noqa: BLE001 -- the command line reports every failure in one line
        print(f"error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
        return 1
    print(_advice_json(args.model, advice) if args.json else advice.summary())
    if args.figure:
        import matplotlib.pyplot as plt

        plot_advice(advice)
        plt.gcf().tight_layout()
        try:
            plt.savefig(args.figure)
        except OSError as error:
            print(f"error: --figure: cannot write {args.figure!r} ({error})", file=sys.stderr)
            return 1
    return 0


def main(argv=None):
    """Entry point of `python -m batchsize`. Introduced in chapter 6 (choosing a batch size)."""
    args = _parser().parse_args(argv)
    if args.command == "lab":
        try:
            command = lab_command(args.path, args.notebook, args.jupyter_args)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return subprocess.call(command)
    return _advise(args)


if __name__ == "__main__":
    sys.exit(main())
