"""``mmbalance compare --config GRID.yaml``: methods x seeds (x one hyper-parameter) on one dataset.

A grid file::

    experiment: mfeat_default.yaml     # the base experiment (a path or a built-in config name)
    overrides: ["--train.epochs=20"]   # applied to every run (optional)
    methods:                           # label -> method options, or {name: ..., options: ...}
      joint: {}
      aim: {start_epoch: 5, latent_dim: 64}
      OGM-GE strong: {name: ogm_ge, options: {alpha: 0.8}}
    seeds: [0, 1, 2]
    unimodal: true                     # also unimodal-only runs per modality (Fig. 1 reference)
    sweep: {key: method.options.start_epoch, values: [2, 5, 10], methods: [aim]}   # optional
    output_dir: compare/mfeat
    workers: 2                         # parallel runs (processes)

Every run lives in ``<output_dir>/runs/<label>[/<key>=<value>]/s<seed>``. Finished runs (a
``summary.json``) are skipped, interrupted ones resumed from their last checkpoint, so a grid
can be killed and restarted at any time. Each run selects its epoch on validation and reports
test at that epoch; after training, a linear probe per modality is fitted on its frozen
features (:mod:`mmbalance.reporting.evaluation`). The table aggregates test accuracy /
macro-F1 (mean ± sample std), each modality's probe accuracy, training time and training FLOPs
per sample; where the grid has ``joint``, every method's paired difference with it (per seed,
95% t-interval); where it also has unimodal runs, the imbalance certificate
(:mod:`mmbalance.reporting.certificate`). Written as ``results.md``, ``results.csv`` and
``results.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmbalance.config import MethodConfig, parse_yaml
from mmbalance.errors import ConfigError, MMBalanceError
from mmbalance.reporting.certificate import certificate_markdown, imbalance_certificate
from mmbalance.reporting.stats import format_interval, mean_std, paired_interval


@dataclass
class GridConfig:
    """A parsed grid file."""

    experiment: str
    methods: dict[str, dict[str, Any]]  # label -> {"name", "options"}
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: list[str] = field(default_factory=list)
    unimodal: bool = False
    sweep: dict[str, Any] | None = None
    output_dir: str = "compare"
    workers: int = 1
    base_dir: Path = Path()
    raw: dict[str, Any] = field(default_factory=dict)  # as given, written to grid.yaml


@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    label: str
    method: str
    seed: int
    overrides: tuple[str, ...]
    run_dir: Path
    sweep_value: Any = None
    sweep_key: str | None = None

    @property
    def name(self) -> str:
        """How the run is named on its progress line: label, sweep value, seed."""
        value = (
            "" if self.sweep_key is None else f" [{self.sweep_key}={json.dumps(self.sweep_value)}]"
        )
        return f"{self.label}{value} seed {self.seed}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")


def load_grid(path: str | Path) -> GridConfig:
    """Read and check a grid file; errors name the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"compare: grid file {str(path)!r} not found")
    raw = parse_yaml(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{str(path)!r}: expected a mapping at the top level")
    return grid_from_dict(raw, path.parent, str(path))


def grid_from_dict(raw: dict[str, Any], base_dir: Path, source: str = "grid") -> GridConfig:
    """Check a grid given as a mapping (a parsed grid file, or built by ``imbalance``);
    errors name ``source`` and the field."""
    path = source
    known = {"experiment", "methods", "seeds", "overrides", "unimodal", "sweep", "output_dir"}
    unknown = set(raw) - known - {"workers"}
    if unknown:
        raise ConfigError(
            f"{str(path)!r}: unknown field(s) {sorted(unknown)}; allowed {sorted(known)}"
        )
    if "experiment" not in raw or "methods" not in raw:
        raise ConfigError(f"{str(path)!r}: 'experiment' and 'methods' are required")
    from mmbalance.methods import METHODS

    methods: dict[str, dict[str, Any]] = {}
    if not isinstance(raw["methods"], dict) or not raw["methods"]:
        raise ConfigError(f"{str(path)!r}: methods: expected a non-empty mapping label -> options")
    for label, spec in raw["methods"].items():
        spec = spec or {}
        if "name" in spec or "options" in spec:
            name, options = spec.get("name", label), spec.get("options") or {}
        else:
            name, options = label, spec
        if name not in METHODS:
            raise ConfigError(
                f"{str(path)!r}: methods.{label}: unknown method {name!r}; "
                f"expected one of {', '.join(METHODS)}"
            )
        # the same check a config's method section gets (MethodConfig.validate): a typo in a
        # grid's options is refused before any run starts, naming the label
        MethodConfig(name=name, options=dict(options)).validate(f"{path}: methods.{label}")
        methods[str(label)] = {"name": name, "options": dict(options)}
    seeds = raw.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{str(path)!r}: seeds: expected a list of integers; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        # one run would be counted twice: a zero spread and an interval it has not earned
        raise ConfigError(f"{str(path)!r}: seeds: got {seeds!r}; each seed at most once")
    folders: dict[str, str] = {}
    for label in methods:
        other = folders.setdefault(_slug(label), label)
        if other != label:
            raise ConfigError(
                f"{str(path)!r}: methods: labels {other!r} and {label!r} would share the run "
                f"folder runs/{_slug(label)}; rename one"
            )
    sweep = raw.get("sweep")
    if sweep is not None and (
        not isinstance(sweep, dict) or "key" not in sweep or not sweep.get("values")
    ):
        raise ConfigError(f"{str(path)!r}: sweep: expected {{key: a.b.c, values: [...]}}")
    if sweep is not None:
        extra = sorted(set(sweep) - {"key", "values", "methods"})
        if extra:
            raise ConfigError(
                f"{str(path)!r}: sweep: unknown field(s) {extra}; allowed ['key', 'methods', "
                "'values']"
            )
        if not isinstance(sweep["key"], str) or not sweep["key"].strip("."):
            raise ConfigError(f"{str(path)!r}: sweep.key: got {sweep['key']!r}; expected a.b.c")
        named = sweep.get("methods") or []
        if not isinstance(named, list):
            raise ConfigError(f"{str(path)!r}: sweep.methods: expected a list of method labels")
        unknown_labels = [m for m in named if m not in methods]
        if unknown_labels:
            raise ConfigError(
                f"{str(path)!r}: sweep.methods: {unknown_labels} are not labels of the grid; "
                f"its labels: {', '.join(methods)}"
            )
    workers = int(raw.get("workers", 1))
    if workers < 1:
        raise ConfigError(f"{str(path)!r}: workers: expected >= 1; got {workers}")
    base_dir = Path(base_dir)
    return GridConfig(
        experiment=str(raw["experiment"]),
        methods=methods,
        seeds=seeds,
        overrides=[str(o) for o in raw.get("overrides") or []],
        unimodal=bool(raw.get("unimodal", False)),
        sweep=sweep,
        output_dir=str(raw.get("output_dir", "compare")),
        workers=workers,
        base_dir=base_dir,
        raw=dict(raw),
    )


def _experiment_path(grid: GridConfig) -> Path:
    from mmbalance.config import resolve_config

    return resolve_config(grid.experiment, grid.base_dir)


def _method_overrides(name: str, options: dict[str, Any]) -> list[str]:
    # --method.options={} first: options of the base config's method do not leak into others
    out = [f"--method.name={name}", "--method.options={}"]
    return out + [f"--method.options.{k}={json.dumps(v)}" for k, v in options.items()]


def plan(grid: GridConfig, out: Path, modalities: list[str]) -> list[Run]:
    """Every run of the grid, in a stable order."""
    runs: list[Run] = []
    cells: list[tuple[str, str, list[str], Any]] = []
    for label, spec in grid.methods.items():
        base = _method_overrides(spec["name"], spec["options"])
        sweep = grid.sweep
        if sweep and (not sweep.get("methods") or label in sweep["methods"]):
            for value in sweep["values"]:
                extra = [*base, f"--{sweep['key']}={json.dumps(value)}"]
                cells.append((label, spec["name"], extra, value))
        else:
            cells.append((label, spec["name"], base, None))
    if grid.unimodal:
        for m in modalities:
            cells.append(
                (f"unimodal {m}", "unimodal", _method_overrides("unimodal", {"modality": m}), None)
            )
    for label, method, overrides, value in cells:
        folder = out / "runs" / _slug(label)
        if value is not None:
            folder = folder / _slug(f"{grid.sweep['key'].split('.')[-1]}={value}")  # type: ignore[index]
        for seed in grid.seeds:
            ov = (*grid.overrides, *overrides, f"--seed={seed}", "--train.progress=never")
            # absolute: records and reports stay valid from any working directory
            key = grid.sweep["key"] if value is not None and grid.sweep else None
            runs.append(Run(label, method, seed, ov, (folder / f"s{seed}").resolve(), value, key))
    return runs


def check_cells(grid: GridConfig, runs: list[Run], experiment: str) -> None:
    """Load every distinct cell's config (one per label and sweep value) before any run
    starts: a misspelt sweep key or a value its field refuses stops the grid here, naming the
    cell, instead of failing every swept run one by one."""
    from mmbalance.config import load_config

    seen: set[tuple[str, Any]] = set()
    for run in runs:
        cell = (run.label, json.dumps(run.sweep_value))
        if cell in seen:
            continue
        seen.add(cell)
        try:
            load_config(experiment, list(run.overrides))
        except ConfigError as err:
            where = (
                run.label if run.sweep_value is None else f"{run.label}, {_sweep_text(grid, run)}"
            )
            raise ConfigError(f"compare: {where}: {err}") from err


def _differences(new: Any, old: Any, where: str = "") -> list[str]:
    """Dotted paths at which two config dicts differ, with both values."""
    if isinstance(new, dict) and isinstance(old, dict):
        out: list[str] = []
        for k in list(new) + [k for k in old if k not in new]:
            out += _differences(new.get(k), old.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if new == old else [f"{where}: {old!r} there, {new!r} now"]


def check_stored_runs(runs: list[Run], experiment: str) -> None:
    """Refuse to reuse a run folder that holds a run of another configuration: a finished or
    resumable run is kept as it is, so a grid whose label now means other options would
    otherwise report the old run under the new options. (The encoders are compared as the
    grid writes them; a run's config.yaml fills in their defaults when the model is built.)"""
    from mmbalance.config import load_config

    stale: list[str] = []
    for run in runs:
        path = run.run_dir / "config.yaml"
        if not path.is_file():
            continue
        stored = yaml.safe_load(path.read_text()) or {}
        planned = load_config(experiment, list(run.overrides)).to_dict()
        for cfg in (stored, planned):
            cfg.get("model", {}).pop("encoders", None)
        diff = _differences(planned, stored)
        if diff:
            stale.append(f"{run.run_dir}: {'; '.join(diff[:3])}")
    if stale:
        raise ConfigError(
            f"compare: {len(stale)} run folder(s) hold a run of another configuration than the "
            "grid now asks for (a finished run is reused as it is): "
            + " | ".join(stale[:5])
            + (f" | ... and {len(stale) - 5} more" if len(stale) > 5 else "")
            + ". Delete those folders to re-train them, or give the grid another output_dir"
        )


def _sweep_text(grid: GridConfig, run: Run) -> str:
    """``start_epoch=5`` for a swept run, ``""`` otherwise."""
    if run.sweep_value is None or grid.sweep is None:
        return ""
    return f"{grid.sweep['key']}={json.dumps(run.sweep_value)}"


def run_one(job: tuple[Run, str, int]) -> dict[str, Any]:
    """Train (or resume, or skip) one run and probe it; returns its record for the table."""
    import torch

    from mmbalance.config import load_config
    from mmbalance.experiment import resume_experiment, run_experiment
    from mmbalance.reporting.cost import flops_or_none
    from mmbalance.reporting.evaluation import evaluate_run

    run, experiment, threads = job
    torch.set_num_threads(threads)
    logging.getLogger("mmbalance").setLevel(logging.WARNING)  # one line per run, not per epoch
    summary = run.run_dir / "summary.json"
    record_file = run.run_dir / "compare_record.json"
    failed = {
        "label": run.label,
        "seed": run.seed,
        "sweep_value": run.sweep_value,
        "run_dir": str(run.run_dir),
    }
    if not summary.is_file():
        t0 = time.perf_counter()
        try:
            if (run.run_dir / "checkpoints" / "last.pt").is_file():
                resume_experiment(run.run_dir)
            else:
                shutil.rmtree(run.run_dir, ignore_errors=True)  # started but nothing to keep
                run_experiment(load_config(experiment, list(run.overrides)), run.run_dir)
        except MMBalanceError as err:
            # one run's documented failure (a NaN loss, a refused config) is reported in the
            # table; the rest of the grid still runs. Not cached: a rerun tries it again.
            print(f"  {run.name}: FAILED: {err}", flush=True)
            return {**failed, "failed": str(err)}
        except Exception as err:  # a bug in one run must not stop an unattended grid
            trace = run.run_dir / "error.log"
            run.run_dir.mkdir(parents=True, exist_ok=True)
            trace.write_text(traceback.format_exc())
            print(
                f"  {run.name}: FAILED (unexpected {type(err).__name__}: "
                f"{err}; traceback in {trace})",
                flush=True,
            )
            return {**failed, "failed": f"unexpected {type(err).__name__}: {err} (see {trace})"}
        print(f"  {run.name}: {time.perf_counter() - t0:.0f}s", flush=True)
    if record_file.is_file():
        return dict(json.loads(record_file.read_text()))
    result = json.loads(summary.read_text())
    config = load_config(experiment, list(run.overrides))
    meta = json.loads((run.run_dir / "meta.json").read_text())
    curve_key = "val_r2" if "val_r2" in result["val"] else "val_acc"
    rows = [
        json.loads(line)
        for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    record = {
        "label": run.label,
        "method": run.method,
        "seed": run.seed,
        "sweep_value": run.sweep_value,
        "run_dir": str(run.run_dir),
        "best_epoch": result["best_epoch"],
        "epochs": result["epochs"],
        "seconds": result["seconds"],
        "val": result["val"],
        "test": result["test"],
        "evaluation": evaluate_run(run.run_dir),
        "flops_per_sample": flops_or_none(config),
        "train_samples": meta["data"]["sizes"]["train"],
        # per epoch, for convergence (the epoch / time / FLOPs at which a level is reached)
        "curve": {
            # val_acc, or a regression's val_r2 (None where undefined)
            curve_key: [r.get(curve_key) for r in rows],
            "time_epoch": [r.get("time_epoch") for r in rows],
        },
        # which code trained it (experiment.code_fingerprint): tables say which rows the
        # current code produced
        "git_commit": meta.get("git_commit"),
        "code_sha256": meta.get("code_sha256"),
    }
    record_file.write_text(json.dumps(record, indent=1))
    return record


# (primary, secondary) metric of a task's tables: accuracy and macro-F1 for classes; R^2 and
# MAE for a regression. Keys follow: row["test_r2"], row["probe_r2_<m>"], vs_joint["test_r2"].
METRICS = {"classification": ("acc", "f1"), "regression": ("r2", "mae")}
# column titles and the scale of their cells (R^2 in points: x 100, as accuracy is)
TITLES = {
    "acc": ("test acc (%)", 100.0),
    "f1": ("test macro-F1 (%)", 100.0),
    "r2": ("test R² (x100)", 100.0),
    "mae": ("test MAE", 1.0),
}


def records_task(records: list[dict[str, Any]]) -> str:
    """``regression`` when the records' runs regress (their test metrics hold R^2)."""
    done = [r for r in records if "failed" not in r]
    return "regression" if any("test_r2" in r["test"] for r in done) else "classification"


def _value(record: dict[str, Any], key: str) -> float | None:
    value = record["test"].get(key)
    return None if value is None else float(value)


def _probe(record: dict[str, Any], m: str, metric: str = "acc") -> float | None:
    probe = record.get("evaluation", {}).get("probe", {}).get(m)
    value = None if probe is None else probe.get(f"test_{metric}")
    return None if value is None else float(value)


def _mean_std_defined(values: list[float | None]) -> tuple[float, float] | None:
    kept = [v for v in values if v is not None]
    return mean_std(kept) if kept else None


def aggregate(records: list[dict[str, Any]], modalities: list[str]) -> list[dict[str, Any]]:
    """One row per (label, sweep value): mean and sample std over seeds, and where the grid
    has ``joint`` runs the paired difference with them (``vs_joint``). The metrics are the
    task's (``METRICS``): accuracy / macro-F1, or R^2 / MAE for a regression (an undefined R^2
    of a seed is left out of its mean)."""
    primary, secondary = METRICS[records_task(records)]
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in records:
        if "failed" in r:
            continue
        groups.setdefault((r["label"], json.dumps(r["sweep_value"])), []).append(r)
    joint = {r["seed"]: r for r in groups.get(("joint", "null"), [])}
    rows = []
    for (label, value), rs in groups.items():
        row: dict[str, Any] = {
            "method": label,
            "sweep_value": json.loads(value),
            "seeds": len(rs),
            "metric": primary,
            "metric2": secondary,
        }
        for key in (primary, secondary):
            row[f"test_{key}"] = _mean_std_defined([_value(r, f"test_{key}") for r in rs])
        for m in modalities:
            row[f"test_{primary}_{m}"] = _mean_std_defined(
                [_value(r, f"test_{primary}_{m}") for r in rs]
            )
            row[f"probe_{primary}_{m}"] = _mean_std_defined([_probe(r, m, primary) for r in rs])
        row["seconds"] = mean_std([r["seconds"] for r in rs])
        flops = [r["flops_per_sample"] for r in rs if r["flops_per_sample"] is not None]
        row["flops_per_sample"] = flops[0] if flops else None
        paired = [(r, joint[r["seed"]]) for r in rs if r["seed"] in joint]
        if paired and label != "joint" and not label.startswith("unimodal "):
            diffs: dict[str, Any] = {}
            pairs = [
                (_value(a, f"test_{primary}"), _value(b, f"test_{primary}")) for a, b in paired
            ]
            if all(x is not None and y is not None for x, y in pairs):
                diffs[f"test_{primary}"] = paired_interval(
                    [x for x, _ in pairs],  # type: ignore[misc]
                    [y for _, y in pairs],  # type: ignore[misc]
                )
            for m in modalities:
                pair_probes = [(_probe(a, m, primary), _probe(b, m, primary)) for a, b in paired]
                both = [(x, y) for x, y in pair_probes if x is not None and y is not None]
                if len(both) == len(pair_probes):
                    diffs[f"probe_{primary}_{m}"] = paired_interval(
                        [x for x, _ in both], [y for _, y in both]
                    )
            row["vs_joint"] = diffs
        rows.append(row)
    return rows


def _fmt(cell: Any, scale: float = 100.0) -> str:
    if cell is None:
        return "n/a"
    mean, std = cell
    digits = 2 if scale != 1.0 else 3
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _flops(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f} M" if value < 1e9 else f"{value / 1e9:.2f} G"


def _modality_cell(row: dict[str, Any], m: str) -> str:
    # the post-hoc probe where there is one; the online unimodal head otherwise
    metric = row.get("metric", "acc")
    cell = row.get(f"probe_{metric}_{m}")
    return _fmt(cell if cell is not None else row.get(f"test_{metric}_{m}"))


def _probe_title(metric: str) -> str:
    return "probe acc (%)" if metric == "acc" else "probe R² (x100)"


def markdown_table(rows: list[dict[str, Any]], modalities: list[str], sweep_key: str | None) -> str:
    primary = rows[0].get("metric", "acc") if rows else "acc"
    secondary = rows[0].get("metric2", "f1") if rows else "f1"
    head = (
        ["method"]
        + ([sweep_key] if sweep_key else [])
        + ["seeds", TITLES[primary][0], TITLES[secondary][0]]
    )
    head += [f"{m} {_probe_title(primary)}" for m in modalities]
    head += ["train time (s)", "train FLOPs / sample"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        value = "-" if r["sweep_value"] is None else str(r["sweep_value"])
        cells = [r["method"]] + ([value] if sweep_key else []) + [str(r["seeds"])]
        cells += [
            _fmt(r[f"test_{primary}"], TITLES[primary][1]),
            _fmt(r[f"test_{secondary}"], TITLES[secondary][1]),
        ]
        cells += [_modality_cell(r, m) for m in modalities]
        seconds = "{:.1f} ± {:.1f}".format(*r["seconds"])
        cells += [seconds, _flops(r["flops_per_sample"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(rows: list[dict[str, Any]], modalities: list[str], sweep_key: str | None) -> str:
    """Each method minus joint training, paired by seed: mean [95% CI] in points (of
    accuracy, or of R^2 x 100)."""
    paired = [r for r in rows if "vs_joint" in r]
    if not paired:
        return ""
    primary = paired[0].get("metric", "acc")
    name = "test acc" if primary == "acc" else "test R² (x100)"
    head = ["method"] + ([sweep_key] if sweep_key else []) + ["seeds", f"{name} - joint"]
    head += [f"{m} probe - joint" for m in modalities]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in paired:
        value = "-" if r["sweep_value"] is None else str(r["sweep_value"])
        d = r["vs_joint"]
        main = d.get(f"test_{primary}")
        cells = [r["method"]] + ([value] if sweep_key else []) + [str(main["n"] if main else 0)]
        cells.append(format_interval(main) if main else "n/a (undefined)")
        cells += [
            format_interval(d[f"probe_{primary}_{m}"]) if f"probe_{primary}_{m}" in d else "n/a"
            for m in modalities
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, Any]], modalities: list[str]) -> None:
    primary = rows[0].get("metric", "acc") if rows else "acc"
    secondary = rows[0].get("metric2", "f1") if rows else "f1"
    keys = [
        f"test_{primary}",
        f"test_{secondary}",
        *[f"test_{primary}_{m}" for m in modalities],
        *[f"probe_{primary}_{m}" for m in modalities],
        "seconds",
    ]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["method", "sweep_value", "seeds"]
            + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
            + [
                "flops_per_sample",
                f"vs_joint_test_{primary}",
                "vs_joint_low",
                "vs_joint_high",
            ]
        )
        for r in rows:
            values = []
            for k in keys:
                values += list(r[k]) if r.get(k) is not None else ["", ""]
            vs = r.get("vs_joint", {}).get(f"test_{primary}")
            writer.writerow(
                [
                    r["method"],
                    "" if r["sweep_value"] is None else r["sweep_value"],
                    r["seeds"],
                    *values,
                    "" if r["flops_per_sample"] is None else r["flops_per_sample"],
                    *([vs["mean"], vs["low"], vs["high"]] if vs else ["", "", ""]),
                ]
            )


def summarize(
    grid: GridConfig,
    records: list[dict[str, Any]],
    modalities: list[str],
    certificate: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The grid's tables (Markdown) and results (JSON-ready) from its runs' records: means over
    seeds, paired differences with joint training and, with joint and unimodal runs, the
    imbalance certificate (``certificate``: one already computed from the same joint and
    unimodal runs, for records whose run folders are elsewhere). Records of a partly finished
    grid give partial tables (each row names its seed count)."""
    rows = aggregate(records, modalities)
    sweep_key = grid.sweep["key"] if grid.sweep else None
    table = markdown_table(rows, modalities, sweep_key)
    failed = [r for r in records if "failed" in r]
    if failed:
        table += f"\n{len(failed)} run(s) failed (left out of the means; rerun to retry):\n\n"
        table += "".join(
            f"- {r['label']}{_sweep_suffix(grid, r)} seed {r['seed']}: {r['failed']}\n"
            for r in failed
        )
    text = (
        f"Test metrics at the epoch selected on validation; mean ± sample std over seeds "
        f"{grid.seeds}. Experiment: `{grid.experiment}`. Per-modality columns: linear probes "
        f"on the frozen encoder features at that epoch (unimodal rows: the modality alone).\n\n"
        f"{table}"
    )
    paired = paired_table(rows, modalities, sweep_key)
    if paired:
        text += f"\nPaired by seed with joint training, mean [95% CI], points:\n\n{paired}"
    cert = certificate or imbalance_certificate(records, modalities)
    if cert is not None:
        text += "\n" + certificate_markdown(cert, grid.experiment)
    payload = {
        "grid": grid.raw,
        "experiment": grid.experiment,
        "modalities": modalities,
        "sweep_key": sweep_key,
        "rows": rows,
        "runs": records,
        "certificate": cert,
    }
    return text, payload


def _sweep_suffix(grid: GridConfig, record: dict[str, Any]) -> str:
    if grid.sweep is None or record.get("sweep_value") is None:
        return ""
    return f" [{grid.sweep['key']}={json.dumps(record['sweep_value'])}]"


def failed_runs(out_dir: str | Path) -> list[dict[str, Any]]:
    """The failed runs' records in a compare folder's ``results.json``."""
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        return []
    return [r for r in json.loads(path.read_text())["runs"] if "failed" in r]


def finished_records(grid: GridConfig, out: str | Path | None = None) -> list[dict[str, Any]]:
    """The records of the grid's runs that have finished and been probed (no training)."""
    out_dir = Path(out or grid.output_dir)
    modalities = ["_"]  # plan() only needs them for unimodal runs, which grid.unimodal adds
    if grid.unimodal:
        from mmbalance.config import load_config
        from mmbalance.data import build_data

        base = load_config(str(_experiment_path(grid)), list(grid.overrides))
        modalities = list(base.data.modalities or build_data(base.data).modalities)
    records = []
    for run in plan(grid, out_dir, modalities):
        path = run.run_dir / "compare_record.json"
        if path.is_file():
            records.append(dict(json.loads(path.read_text())))
    return records


def compare(
    grid: str | Path | GridConfig, workers: int | None = None, out: str | Path | None = None
) -> Path:
    """Run (or finish) the grid and write the tables; returns the output folder."""
    from mmbalance.config import load_config
    from mmbalance.data import build_data

    if not isinstance(grid, GridConfig):
        grid = load_grid(grid)
    workers = workers or grid.workers
    experiment = str(_experiment_path(grid))
    out_dir = Path(out or grid.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = load_config(experiment, list(grid.overrides))
    # builds (and, for a generated benchmark, writes) the data once, before the workers start
    modalities = build_data(base.data).modalities
    if base.data.modalities:
        modalities = list(base.data.modalities)
    runs = plan(grid, out_dir, modalities)
    check_cells(grid, runs, experiment)
    check_stored_runs(runs, experiment)
    (out_dir / "grid.yaml").write_text(yaml.safe_dump(grid.raw, sort_keys=False))
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [(r, experiment, threads) for r in runs]
    done = sum((r.run_dir / "summary.json").is_file() for r in runs)
    print(f"compare: {len(runs)} runs ({done} already finished) -> {out_dir}", flush=True)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            records = list(pool.map(run_one, jobs))
    else:
        records = [run_one(j) for j in jobs]
    text, payload = summarize(grid, records, modalities)
    (out_dir / "results.md").write_text(text)
    write_csv(out_dir / "results.csv", payload["rows"], modalities)
    (out_dir / "results.json").write_text(json.dumps(payload, indent=1))
    print(text)
    return out_dir
