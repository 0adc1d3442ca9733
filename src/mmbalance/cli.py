"""Command line: ``mmbalance train | eval | list``.

``mmbalance train`` with no arguments runs the built-in experiment (UCI mfeat, a strong and a
weak view) and prints where the results are.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import resources
from pathlib import Path

from mmbalance.config import load_config
from mmbalance.errors import MMBalanceError

DEFAULT_CONFIG = "mfeat_default.yaml"


def builtin_config(name: str) -> Path:
    """Path of a config shipped inside the package (``mmbalance/configs``)."""
    return Path(str(resources.files("mmbalance") / "configs" / name))


def _cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.experiment import result_table, resume_experiment, run_experiment

    if args.resume:
        result = resume_experiment(args.resume, overrides)
    else:
        path = Path(args.config) if args.config else builtin_config(DEFAULT_CONFIG)
        if not args.config:
            print(f"no --config given: running the built-in experiment {path.name}", flush=True)
        config = load_config(path, overrides)
        result = run_experiment(config, args.out)
    modalities = sorted({k[len("test_acc_") :] for k in result.test if k.startswith("test_acc_")})
    print(result_table(result, modalities))
    print(f"results: {result.run_dir} (metrics.csv, metrics.jsonl, summary.json, checkpoints/)")
    return 0


def _cmd_eval(args: argparse.Namespace, overrides: list[str]) -> int:
    import torch

    from mmbalance.experiment import build_experiment, load_run_config
    from mmbalance.training.evaluate import evaluate
    from mmbalance.training.trainer import load_checkpoint_model, make_loader

    config = load_run_config(args.run_dir)
    data, model, _ = build_experiment(config)
    ckpt = Path(args.run_dir) / "checkpoints" / f"{args.checkpoint}.pt"
    device = torch.device(config.train.device)
    model.load_state_dict(load_checkpoint_model(ckpt))
    model.to(device)
    metrics = {}
    for split in args.splits:
        loader = make_loader(getattr(data, split), config, train=False)
        metrics.update(evaluate(model, loader, data.num_classes, device, split))
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_list(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.data.registry import DATASETS
    from mmbalance.methods import METHODS
    from mmbalance.models.builder import ENCODERS
    from mmbalance.models.fusion import FUSIONS

    sections = {
        "methods": {n: c.description for n, c in METHODS.items()},
        "datasets": {n: e.description for n, e in DATASETS.items()},
        "encoders": {
            "auto": "picked from the sample shape",
            **{n: e.description for n, e in ENCODERS.items()},
        },
        "fusions": {n: (c.__doc__ or "").strip().splitlines()[0] for n, c in FUSIONS.items()},
    }
    for title, entries in sections.items():
        print(f"{title}:")
        for name, text in entries.items():
            print(f"  {name:12s} {text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmbalance",
        description="Balanced multimodal learning: train, evaluate and compare methods.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train from a YAML config (default: the built-in mfeat experiment)",
        description="Extra --section.key=value arguments override the config, e.g. --optim.lr=0.01",
    )
    train.add_argument("--config", help="experiment YAML file")
    train.add_argument(
        "--out", help="run folder (default: <output_dir>/<name>-<method>-s<seed>-<time>)"
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.set_defaults(func=_cmd_train)
    ev = sub.add_parser("eval", help="evaluate a run folder's checkpoint on val/test")
    ev.add_argument("run_dir")
    ev.add_argument("--checkpoint", choices=["best", "last"], default="best")
    ev.add_argument("--splits", nargs="+", choices=["val", "test"], default=["val", "test"])
    ev.set_defaults(func=_cmd_eval)
    ls = sub.add_parser("list", help="list methods, datasets, encoders and fusions")
    ls.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if not (a.startswith("--") and "=" in a)]
    if unknown or (extra and args.command != "train"):
        parser.error(f"unrecognised arguments: {' '.join(unknown or extra)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return int(args.func(args, extra))
    except MMBalanceError as err:
        print(f"mmbalance: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
