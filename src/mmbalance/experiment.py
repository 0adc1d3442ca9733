"""Experiments from configs: build data, model and method; make the run folder; train; resume.

A run folder holds everything needed to reproduce and audit the run::

    config.yaml     resolved config (every default written out)
    meta.json       seed, library / torch / python versions, git commit, command, data splits
    metrics.jsonl   one row per epoch (metrics.csv and tensorboard/ mirror it)
    checkpoints/    last.pt (full state, every epoch), best.pt (weights of the val-best epoch)
    summary.json    best epoch (validation), its val and test metrics
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from mmbalance import distributed as dist
from mmbalance.config import ExperimentConfig, load_config
from mmbalance.data.base import DataSplits
from mmbalance.data.registry import build_data
from mmbalance.errors import CheckpointError, ConfigError
from mmbalance.methods import create_method
from mmbalance.methods.base import Method
from mmbalance.models.builder import build_model
from mmbalance.models.input_norm import fit_input_norms
from mmbalance.models.multimodal import MultimodalModel
from mmbalance.tasks import is_defined, task_from
from mmbalance.training.checkpoint import write_text_atomic
from mmbalance.training.seeding import seed_everything
from mmbalance.training.trainer import RunResult, Trainer
from mmbalance.version import __version__

log = logging.getLogger("mmbalance")


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding ``path``, with ``-dirty`` if modified."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True, timeout=5
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def code_fingerprint() -> str:
    """SHA-256 of the installed package's Python sources (relative path and bytes of every
    ``.py`` file, in path order): two runs with the same fingerprint were trained by the same
    code, committed or not, whatever else in the checkout differed. Results tables compare it
    with the current code's to say which rows the landed code produced."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_experiment(config: ExperimentConfig) -> tuple[DataSplits, MultimodalModel, Method]:
    """Seed, then build the data, the method and the model the config describes.

    Seeding comes first so model initialisation is a function of ``config.seed`` alone.
    """
    seed_everything(config.seed, config.train.deterministic)
    data = build_data(config.data)
    model, method = build_model_and_method(config, data)
    return data, model, method


def build_model_and_method(
    config: ExperimentConfig, data: DataSplits, method: Method | None = None
) -> tuple[MultimodalModel, Method]:
    """The method (built from ``config.method`` unless given), and the model for the
    modalities it trains (seed first for a fixed init)."""
    if config.train.device != "cpu" and not _device_available(config.train.device):
        raise ConfigError(f"train.device: got {config.train.device!r}; it is not available here")
    if method is None:
        method = create_method(config.method.name, config.method.options)
    modalities = method.select_modalities(data.modalities)
    shapes = {m: data.shapes[m] for m in modalities}
    model = build_model(config.model, shapes, data.num_classes, data.modalities, data.task)
    fit_input_norms(model, data.train)  # encoders with normalize: data (timm)
    method.task = task_from(data.task, config.train.loss, data.score_range)
    method.check(model, model.fusion.name)  # refused before any run folder is made
    _check_batch_norm_batch(config, model)
    return model, method


def _check_batch_norm_batch(config: ExperimentConfig, model: MultimodalModel) -> None:
    """BatchNorm needs two samples per channel in training: a per-process batch of one fails
    at the first step with a shape error that names neither the option nor the layer."""
    per_process = config.data.batch_size // max(dist.world_size(), 1)
    if per_process >= 2:
        return
    norms = [
        name
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)
    ]
    if norms:
        raise ConfigError(
            f"data.batch_size: {config.data.batch_size} gives {per_process} sample per process "
            f"per step; the model's BatchNorm layers (e.g. {norms[0]}) need at least 2. Raise "
            "the batch size, or build the encoders without BatchNorm (mlp: norm: none)"
        )


def _device_available(device: str) -> bool:
    if device.startswith("cuda"):
        return torch.cuda.is_available()
    if device.startswith("mps"):
        return torch.backends.mps.is_available()
    return True


def check_run_folder(path: str | Path) -> None:
    """Refuse a run folder that cannot take a new run, naming the exact condition: a file at
    the path, a folder that already holds a run, or a place where no folder can be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run folder {str(path)!r} is a file, not a folder; give --out a folder")
    if (path / "checkpoints" / "last.pt").exists():
        raise ConfigError(
            f"run folder {str(path)!r} already holds a run; resume it with --resume "
            "or choose another folder"
        )
    if path.exists():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"run folder {str(path)!r} is not writable")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot make run folder {str(path)!r}: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot make run folder {str(path)!r}: {str(parent)!r} is not writable")


def new_run_dir(config: ExperimentConfig) -> Path:
    """``<output_dir>/<name>-<method>-s<seed>-<timestamp>`` (never an existing folder)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.output_dir) / f"{config.name}-{config.method.name}-s{config.seed}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def write_run_files(
    run_dir: Path,
    config: ExperimentConfig,
    data: DataSplits,
    model: MultimodalModel,
    data_from_config: bool = False,
) -> None:
    """Resolved config and provenance, written before training starts. Each encoder is
    written as built (``auto`` resolved, every default filled in) under ``model.encoders``."""
    resolved = config.to_dict()
    if model.encoder_specs:
        resolved["model"]["encoders"] = {
            **resolved["model"]["encoders"],
            **{m: dict(s) for m, s in model.encoder_specs.items()},
        }
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    meta = {
        "seed": config.seed,
        "world_size": dist.world_size(),  # processes sharing each global batch (torchrun)
        "mmbalance": __version__,
        "torch": torch.__version__,
        # CPU kernels reduce in thread-dependent orders: resuming with another count drifts
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(Path(__file__).resolve().parent) or git_commit(Path.cwd()),
        # the training code itself: a "-dirty" commit says the checkout differed, this says
        # whether the package's sources did (experiment.code_fingerprint)
        "code_sha256": code_fingerprint(),
        "command": sys.argv,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data.info,
        # whether config.data rebuilds these splits (eval / resume / diagnose need it to)
        "data_from_config": data_from_config,
        "num_classes": data.num_classes,
        "modalities": {m: list(s) for m, s in data.shapes.items() if m in model.modalities},
        "parameters": sum(p.numel() for p in model.parameters()),
        "fusion": model.fusion.name,
        "encoder_depths": {m: e.depth for m, e in model.encoders.items()},
    }
    write_text_atomic(run_dir / "meta.json", json.dumps(meta, indent=2))


def write_summary(result: RunResult) -> None:
    summary = {k: v for k, v in asdict(result).items() if k != "history"}
    write_text_atomic(Path(result.run_dir) / "summary.json", json.dumps(summary, indent=2))


def run_experiment(config: ExperimentConfig, run_dir: str | Path | None = None) -> RunResult:
    """Train from scratch in a new (or the given, empty) run folder.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this process joins the group first and trains its
    shard of every global batch (``docs/scale.md``).
    """
    if run_dir is not None:  # before the data is built: a bad --out costs nothing
        check_run_folder(run_dir)
    # Seeded before the data too, as every run always was (train_on seeds again before the
    # model; the suite's data builders draw nothing from the global RNG, so both orders agree).
    seed_everything(config.seed, config.train.deterministic)
    return train_on(config, build_data(config.data), run_dir=run_dir, data_from_config=True)


def train_on(
    config: ExperimentConfig,
    data: DataSplits,
    model: MultimodalModel | None = None,
    method: Method | None = None,
    run_dir: str | Path | None = None,
    data_from_config: bool = False,
) -> RunResult:
    """The one path every training goes through (``mmbalance train``, ``compare``,
    :func:`mmbalance.train`): join the process group under ``torchrun``, seed, build what was
    not given (the method from ``config.method``, the model from ``config.model``), train.

    Seeding comes right before the model is built, so its initialisation is a function of
    ``config.seed`` alone whoever calls. ``data_from_config``: ``data`` is what
    ``config.data`` builds (recorded, so eval and resume know they can rebuild it).
    """
    config.train.device = dist.init_from_env(config.train.device)
    seed_everything(config.seed, config.train.deterministic)
    if model is None:
        model, method = build_model_and_method(config, data, method)
    elif method is None:
        method = create_method(config.method.name, config.method.options)
    return train_built(config, data, model, method, run_dir, data_from_config)


def train_built(
    config: ExperimentConfig,
    data: DataSplits,
    model: MultimodalModel,
    method: Method,
    run_dir: str | Path | None = None,
    data_from_config: bool = False,
) -> RunResult:
    """Make the run folder, write provenance, train, write the summary."""
    # DDP: every rank uses rank 0's folder (a default name holds a timestamp)
    run_path = Path(dist.broadcast_object(str(run_dir or new_run_dir(config))))
    check_run_folder(run_path)
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    fresh = not run_path.exists() or not any(run_path.iterdir())
    try:
        if dist.is_main():
            write_run_files(run_path, config, data, model, data_from_config)
        result = Trainer(model, method, data, config, run_path).fit()
    except Exception:
        # A run that fails before its first epoch is checkpointed (an unreadable file in the
        # first batch, a NaN in epoch 1) leaves no stub a second try would trip over.
        if dist.is_main() and fresh and not (run_path / "checkpoints" / "last.pt").exists():
            shutil.rmtree(run_path, ignore_errors=True)
            log.warning("removed %s: the run failed before its first epoch ended", run_path)
        raise
    if dist.is_main():
        write_summary(result)
    return result


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a run folder was trained with."""
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).exists():
        raise ConfigError(f"run folder {str(run_dir)!r} does not exist")
    if not Path(run_dir).is_dir():
        raise ConfigError(f"{str(run_dir)!r} is a file, not a run folder")
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run folder: {path.name} is missing")
    config = load_config(path)
    # Every caller rebuilds the data from config.data (eval, resume, diagnose, cost). A run
    # trained on splits handed over in memory (mmbalance.train) keeps the default data section,
    # which would rebuild another dataset and fail far from here. (Runs written before the
    # flag existed carry no flag and are trusted, as they were.)
    meta = Path(run_dir) / "meta.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("data_from_config") is False:
            raise ConfigError(
                f"{str(run_dir)!r}: trained on data given in memory (dataset "
                f"{info.get('data', {}).get('dataset')!r}, meta.json), which config.yaml "
                f"cannot rebuild (its data section names {config.data.name!r}); evaluate it "
                "in Python with the same splits, or save the arrays in the arrays layout "
                "(docs/datasets.md) and train from a config"
            )
    return config


def warn_thread_mismatch(run_dir: Path) -> str | None:
    """Warn (and return the warning) when this process runs torch on another number of CPU
    threads than the run was started with: CPU kernels split their reductions by thread, so
    the resumed epochs would drift from an uninterrupted run's in the last digits."""
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    started = meta.get("torch_threads")
    now = torch.get_num_threads()
    if started is None or int(started) == now:
        return None
    text = (
        f"{str(run_dir)!r} was started with {started} torch CPU threads and resumes with {now}: "
        "the resumed epochs will not match an uninterrupted run bit for bit (set "
        f"OMP_NUM_THREADS={started} or torch.set_num_threads({started}) to match)"
    )
    log.warning("%s", text)
    return text


def resume_experiment(run_dir: str | Path, overrides: list[str] | None = None) -> RunResult:
    """Continue a run from its ``checkpoints/last.pt`` with its own config.

    ``overrides`` may only raise ``train.epochs`` (to train longer) or change presentation
    (``train.progress``); anything else would make the resumed run a different experiment.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if overrides:
        allowed = {"train.epochs", "train.progress", "train.device"}
        for text in overrides:
            key = text.lstrip("-").split("=", 1)[0]
            if key not in allowed:
                raise ConfigError(
                    f"--resume: cannot override {key!r}; allowed: {', '.join(sorted(allowed))}"
                )
        config = load_config(run_dir / "config.yaml", overrides)
        if dist.is_main():
            write_text_atomic(
                run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
            )
    config.train.device = dist.init_from_env(config.train.device)
    warn_thread_mismatch(run_dir)
    data, model, method = build_experiment(config)
    trainer = Trainer(model, method, data, config, run_dir)
    ckpts = run_dir / "checkpoints"
    if (ckpts / "last.pt").is_file() or (ckpts / "last.prev.pt").is_file():
        trainer.resume()
    else:  # killed before the first epoch ended: nothing to restore, start it again
        done = run_dir / "metrics.jsonl"
        if done.is_file() and len(done.read_text().split("\n", 2)) > 2:
            # two epochs were logged, so a checkpoint was written (an epoch's row is logged
            # just before its last.pt: one row alone may be a kill in between) and both are
            # gone: retraining would silently rewrite the run's history
            raise CheckpointError(
                f"{str(run_dir)!r}: metrics.jsonl has finished epochs but checkpoints/last.pt "
                "and checkpoints/last.prev.pt are both missing, so the run cannot resume; "
                "restore one of them, or start a new run with "
                f"'mmbalance train --config {run_dir / 'config.yaml'}' and another --out"
            )
        log.warning("%s has no checkpoint yet: training it from the first epoch", run_dir)
        trainer.logger.truncate(0)
    result = trainer.fit()
    if dist.is_main():
        write_summary(result)
    return result


def _cell(value: Any, width: int) -> str:
    """A metric right-aligned in ``width``: 4 decimals, or "undefined" (a constant target)."""
    return f"{'undefined':>{width}s}" if not is_defined(value) else f"{value:{width}.4f}"


def result_table(result: RunResult, modalities: list[str]) -> str:
    """A short human-readable summary of a finished run: accuracy and macro-F1, or for a
    regression R^2, MAE and Pearson r (each modality from its unimodal head)."""
    t, v = result.test, result.val
    regression = "test_r2" in t or "test_mae" in t
    names = ("r2", "mae", "corr") if regression else ("acc", "f1")
    heads = (
        ("val R^2", "test R^2", "test MAE", "test r")
        if regression
        else ("val acc", "test acc", "test F1")
    )
    lines = [
        f"best epoch (selected on validation): {result.best_epoch + 1}/{result.epochs}",
        f"{'':12s}" + "".join(f"{h:>10s}" for h in heads),
    ]
    for m in ["", *modalities]:
        suffix = f"_{m}" if m else ""
        if m and f"test_{names[0]}{suffix}" not in t:
            continue
        cells = [v.get(f"val_{names[0]}{suffix}"), t.get(f"test_{names[0]}{suffix}")]
        cells += [t.get(f"test_{n}{suffix}") for n in names[1:]]
        lines.append(f"{m or 'fused':12s}" + "".join(_cell(c, 10) for c in cells))
    return "\n".join(lines)
