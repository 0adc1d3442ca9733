"""Command line: ``mmbalance train | eval | plot | validate | prepare | compare | imbalance |
report | diagnose | list``.

``mmbalance train`` with no arguments runs the built-in experiment (the imbalance suite's vector
benchmark, ``digits_vec.yaml``: AIM, joint training and each modality alone) and prints each
modality's accuracy inside the fused models beside its accuracy alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from mmbalance.config import (
    check_data_options,
    load_config,
    resolve_config,
    shipped_config,
    shipped_names,
)
from mmbalance.errors import ConfigError, MMBalanceError

DEFAULT_CONFIG = "digits_vec.yaml"
# A Hydra-style override: a dotted key, '=', a value (``optim.lr=1e-3``).
_OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")


def _cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.experiment import result_table, resume_experiment, run_experiment

    if args.print_config:
        path = (
            Path(args.resume) / "config.yaml"
            if args.resume
            else resolve_config(args.config or DEFAULT_CONFIG)
        )
        config = load_config(path, overrides)
        check_data_options(config)  # what training checks before it builds the data
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    if args.resume:
        result = resume_experiment(args.resume, overrides)
    elif not args.config:
        return _default_job(args, overrides, shipped_config(DEFAULT_CONFIG))
    else:
        path = resolve_config(args.config)
        config = load_config(path, overrides)
        if config.train.compare_with_joint:
            return _default_job(args, overrides, path)
        result = run_experiment(config, args.out)
    from mmbalance import distributed as dist

    if not dist.is_main():
        return 0  # rank 0 prints the results
    print(result_table(result, _tested_modalities(result)))
    print(f"results: {result.run_dir} (metrics.csv, metrics.jsonl, summary.json, checkpoints/)")
    return 0


def _tested_modalities(result: object) -> list[str]:
    test = result.test  # type: ignore[attr-defined]
    key = "test_r2_" if "test_r2" in test else "test_acc_"  # a regression's, or accuracy
    return sorted({k[len(key) :] for k in test if k.startswith(key)})


def _default_job(args: argparse.Namespace, overrides: list[str], path: Path) -> int:
    """The built-in experiment (no --config: the imbalance suite's vector benchmark,
    digits_vec), or a config with ``train.compare_with_joint``: its method (AIM), joint
    training and each modality trained alone, same data, seed and optimiser; then each
    modality inside the fused models (a linear probe on its encoder's features,
    ``reporting.evaluation``) beside it alone: the imbalance, and what the method does.
    Accuracy for classes; R^2 and MAE for a regression."""
    from mmbalance.experiment import new_run_dir, result_table, run_experiment
    from mmbalance.reporting.evaluation import evaluate_run

    config = load_config(path, overrides)
    if not args.config:
        print(f"no --config given: running the built-in experiment {path.name}", flush=True)
    modalities = list(config.data.modalities or []) or None
    jobs: dict[str, list[str]] = {config.method.name: []}
    if config.method.name != "joint":
        jobs["joint"] = ["--method.name=joint", "--method.options={}"]
    results: dict[str, Any] = {}
    total = len(jobs)
    for i, (label, extra) in enumerate(jobs.items(), 1):
        cfg = load_config(path, [*overrides, *extra])
        out = (args.out if i == 1 else f"{args.out}-{label}") if args.out else new_run_dir(cfg)
        print(f"[{i}/{total + 2}] {label} on {cfg.data.name}", flush=True)
        results[label] = run_experiment(cfg, out)
    main_run = results[config.method.name]
    modalities = modalities or _tested_modalities(main_run)
    for j, m in enumerate(modalities, total + 1):
        cfg = load_config(
            path,
            [
                *overrides,
                "--method.name=unimodal",
                "--method.options={}",
                f"--method.options.modality={m}",
            ],
        )
        out = f"{args.out}-{m}-alone" if args.out else new_run_dir(cfg)
        print(f"[{j}/{total + len(modalities)}] {m} trained alone", flush=True)
        results[f"{m} alone"] = run_experiment(cfg, out)
    print(result_table(main_run, _tested_modalities(main_run)))
    print()
    probes = {k: evaluate_run(r.run_dir)["probe"] for k, r in results.items() if " alone" not in k}
    print(imbalance_table(results, probes, modalities))
    for label, r in results.items():
        print(f"{label}: {r.run_dir}")
    print(f"figures: mmbalance plot {main_run.run_dir}")
    return 0


def imbalance_table(
    results: dict[str, Any], probes: dict[str, dict[str, Any]], modalities: list[str]
) -> str:
    """Test accuracy (%) of the fused models and, per modality, its probe inside each fused
    model beside the modality trained alone; for a regression the same in R^2, then MAE and
    Pearson r (lower MAE is better)."""
    fused = [k for k in results if k in probes]
    first = next(iter(results.values())).test
    regression = "test_r2" in first
    metrics = [("r2", "R^2", 1.0, 3), ("mae", "MAE", 1.0, 3), ("corr", "Pearson r", 1.0, 3)]
    if not regression:
        metrics = [("acc", "accuracy (%)", 100.0, 1)]
    lines: list[str] = []
    for key, title, scale, digits in metrics:

        def cell(value: Any, scale: float = scale, digits: int = digits) -> str:
            return f"{'undefined':>10s}" if value is None else f"{scale * value:10.{digits}f}"

        lines += [
            f"test {title}, checkpoints selected on validation",
            f"{'':30s}" + "".join(f"{k:>10s}" for k in fused) + f"{'alone':>10s}",
            f"{'fused':30s}"
            + "".join(cell(results[k].test.get(f"test_{key}")) for k in fused)
            + f"{'':>10s}",
        ]
        for m in modalities:
            alone = results.get(f"{m} alone")
            last = cell(alone.test.get(f"test_{key}")) if alone is not None else f"{'-':>10s}"
            lines.append(
                f"{m + ' (probe inside model)':30s}"
                + "".join(cell(probes[k][m].get(f"test_{key}")) for k in fused)
                + last
            )
        lines.append("")
    lines.append(
        "A modality far below its 'alone' column is starved inside that model (docs/benchmarks.md)."
    )
    return "\n".join(lines)


def _cmd_eval(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.experiment import build_experiment, load_run_config
    from mmbalance.training.trainer import Trainer

    config = load_run_config(args.run_dir)
    data, model, method = build_experiment(config)
    trainer = Trainer(model, method, data, config, args.run_dir)
    trainer.load_weights(Path(args.run_dir) / "checkpoints" / f"{args.checkpoint}.pt")
    metrics = {}
    for split in args.splits:
        metrics.update(trainer.evaluate_split(split))
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_validate(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.data.validate import validate_data

    config = load_config(resolve_config(args.config), overrides)
    report = validate_data(config.data)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_prepare(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.data.prepare.generate import generate, generated_names
    from mmbalance.data.prepare.videos import prepare

    if args.dataset in generated_names():  # the imbalance suite: written from nothing
        out = generate(args.dataset, args.out, seed=args.seed)
        manifest = json.loads((out / "MANIFEST.json").read_text())
        print(f"wrote {out}: {manifest['sizes']} ({manifest['seconds']} s)")
        return 0
    if not args.src:
        raise ConfigError(f"prepare {args.dataset}: --src (the folder of raw videos) is required")
    result = prepare(
        args.dataset,
        args.src,
        args.out,
        fps=args.fps,
        backend=args.backend,
        spectrogram=args.spectrogram,
        test_fraction=args.test_fraction,
        seed=args.seed,
        workers=args.workers,
        progress=sys.stderr.isatty(),
    )
    sizes = ", ".join(f"{k} {v}" for k, v in result.clips.items())
    print(f"wrote {result.out}: {sizes} clips")
    for note in result.notes:
        print(f"  {note}")
    if result.failed:
        print(f"{len(result.failed)} video(s) failed, listed in {result.out}/prepare_failures.tsv:")
        for name, reason in result.failed[:20]:
            print(f"  - {name}: {reason}")
        return 1
    return 0


def _cmd_compare(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.reporting.compare import compare, failed_runs

    out = compare(resolve_config(args.config), workers=args.workers, out=args.out)
    print(f"tables: {out / 'results.md'}, {out / 'results.csv'}; page: mmbalance report {out}")
    failed = failed_runs(out)
    if failed:
        print(
            f"mmbalance: error: {len(failed)} run(s) failed (listed under the table); rerun "
            "the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_imbalance(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.reporting.compare import compare, grid_from_dict

    path = resolve_config(args.config)
    out = Path(args.out or Path("imbalance") / Path(args.config).stem)
    grid = grid_from_dict(
        {
            "experiment": str(path.resolve()),
            "overrides": overrides,
            "methods": {"joint": {}},
            "seeds": args.seeds,
            "unimodal": True,
            "output_dir": str(out),
            "workers": args.workers,
        },
        Path.cwd(),
        f"imbalance {args.config}",
    )
    folder = compare(grid)
    results = json.loads((folder / "results.json").read_text())
    cert = results["certificate"]
    from mmbalance.reporting.certificate import certificate_markdown

    text = certificate_markdown(cert, args.config)
    (folder / "certificate.md").write_text(text)
    (folder / "certificate.json").write_text(json.dumps(cert, indent=1))
    print(f"certificate: {folder / 'certificate.md'}")
    return 0 if cert["passed"] else 1


def _cmd_report(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.reporting.report import build_report

    print(build_report(args.folder))
    return 0


def _cmd_diagnose(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.reporting.diagnose import diagnose, format_report

    result = diagnose(args.run_dir, args.checkpoint, args.limit)
    print(format_report(result))
    print(f"figure: {Path(args.run_dir) / 'diagnose.png'}; numbers: diagnose.json")
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
        "configs": {n: _config_summary(n) for n in shipped_names()},
    }
    width = max(len(name) for entries in sections.values() for name in entries)
    for title, entries in sections.items():
        print(f"{title}:")
        for name, text in entries.items():
            print(f"  {name:{width}s}  {text}")
    return 0


def _cmd_plot(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmbalance.reporting.plots import plot_run

    references = {}
    for item in args.unimodal or []:
        if "=" not in item:
            raise SystemExit(f"--unimodal {item!r}: expected MODALITY=RUN_DIR")
        m, path = item.split("=", 1)
        references[m] = Path(path)
    for path in plot_run(args.run_dir, args.out, references):
        print(path)
    return 0


def _config_summary(name: str) -> str:
    """The first comment line of a shipped config."""
    for line in shipped_config(name).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmbalance",
        description="Balanced multimodal learning: train, evaluate and compare methods.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help=(
            "train from a YAML config (default: the built-in experiment, digits_vec: AIM vs "
            "joint vs each modality alone)"
        ),
        description="Extra arguments override the config: --section.key=value or "
        "section.key=value, e.g. optim.lr=0.01",
    )
    train.add_argument("--config", help="experiment YAML file (or a shipped config's name)")
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (every default filled in, overrides applied) and exit",
    )
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
    pl = sub.add_parser("plot", help="figures of a run (paper Figs. 1, 4, 5, 6 where logged)")
    pl.add_argument("run_dir")
    pl.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    pl.add_argument(
        "--unimodal",
        nargs="+",
        metavar="MODALITY=RUN_DIR",
        help="unimodal-only runs to draw as references in Fig. 1",
    )
    pl.set_defaults(func=_cmd_plot)
    va = sub.add_parser(
        "validate",
        help="check a dataset before training (missing/unreadable files, labels, splits)",
        description="Extra --section.key=value arguments override the config, "
        "e.g. --data.options.root=DIR",
    )
    va.add_argument("config", help="experiment YAML (its data section is checked)")
    va.set_defaults(func=_cmd_validate)
    pr = sub.add_parser(
        "prepare",
        help="raw videos -> 1-fps JPEG frames, WAV audio and list files in the loader layout; "
        "or write one of the imbalance suite's generated datasets (digits_*)",
    )
    pr.add_argument(
        "dataset",
        choices=[
            "cremad",
            "kinetics_sounds",
            "ucf101",
            "digits_av",
            "digits_seq",
            "digits_vec",
            "regress_av",
        ],
    )
    pr.add_argument("--src", help="folder of the raw videos (not for the digits_* sets)")
    pr.add_argument("--out", required=True, help="folder to write the dataset layout to")
    pr.add_argument("--fps", type=float, default=1.0, help="frames per second kept (default 1)")
    pr.add_argument("--backend", choices=["auto", "ffmpeg", "pyav"], default="auto")
    pr.add_argument(
        "--spectrogram",
        choices=["stft", "fbank"],
        help="also compute spectrograms (cached for training; Kinetics-Sounds default fbank)",
    )
    pr.add_argument("--test-fraction", type=float, default=0.1, help="when no split is given")
    pr.add_argument(
        "--seed", type=int, default=0, help="seed of that split (digits_*: of the whole set)"
    )
    pr.add_argument("--workers", type=int, default=1, help="parallel decoding processes")
    pr.set_defaults(func=_cmd_prepare)
    co = sub.add_parser(
        "compare",
        help="a grid of methods x seeds (x one hyper-parameter): resumable, tables in MD and CSV",
    )
    co.add_argument("--config", required=True, help="grid YAML (see docs/compare.md)")
    co.add_argument("--workers", type=int, help="parallel runs (default: the grid's workers)")
    co.add_argument("--out", help="output folder (default: the grid's output_dir)")
    co.set_defaults(func=_cmd_compare)
    im = sub.add_parser(
        "imbalance",
        help="does joint training starve a modality? joint + unimodal runs -> a certificate",
        description="Trains joint training and every modality alone for each seed (a resumable "
        "compare grid), probes each modality inside the joint model and prints the imbalance "
        "certificate (docs/benchmarks.md). Exit status 1 when the benchmark fails the criterion. "
        "Extra --section.key=value arguments override the config.",
    )
    im.add_argument("config", help="experiment YAML (a file or a shipped config name)")
    im.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    im.add_argument("--workers", type=int, default=1, help="parallel runs")
    im.add_argument("--out", help="output folder (default: imbalance/<config name>)")
    im.set_defaults(func=_cmd_imbalance)
    rp = sub.add_parser("report", help="a self-contained HTML page of a compare or run folder")
    rp.add_argument("folder")
    rp.set_defaults(func=_cmd_report)
    dg = sub.add_parser(
        "diagnose", help="imbalance of a trained model per modality and per depth (any method)"
    )
    dg.add_argument("run_dir")
    dg.add_argument("--checkpoint", choices=["best", "last"], default="best")
    dg.add_argument("--limit", type=int, default=2000, help="samples per split used at most")
    dg.set_defaults(func=_cmd_diagnose)
    ls = sub.add_parser("list", help="list methods, datasets, encoders and fusions")
    ls.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides: --section.key=value, or Hydra's section.key=value
    extra = [a if a.startswith("--") or not _OVERRIDE.match(a) else f"--{a}" for a in extra]
    unknown = [a for a in extra if not (a.startswith("--") and "=" in a)]
    if unknown or (extra and args.command not in ("train", "validate", "imbalance")):
        parser.error(f"unrecognised arguments: {' '.join(unknown or extra)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from mmbalance import distributed as dist

    try:
        return int(args.func(args, extra))
    except MMBalanceError as err:
        print(f"mmbalance: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # output piped into a reader that stopped early (`| head`): end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        dist.shutdown()


if __name__ == "__main__":
    sys.exit(main())
