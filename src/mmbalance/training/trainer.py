"""The training loop. Read :meth:`Trainer.train_step` to see where every method hook acts.

Model selection uses the validation split only; the test split is evaluated (for curves and
the final report) and never selected on. Each epoch ends with an atomic checkpoint holding the
model, optimiser, scheduler, method state and every RNG, so ``resume`` continues bit-for-bit
(CPU, deterministic mode).
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmbalance import distributed as dist
from mmbalance.config import ExperimentConfig
from mmbalance.data.base import DataSplits
from mmbalance.data.loading import (
    SKIP_LOG,
    make_loader,
    read_skip_log,
    to_device,
)
from mmbalance.errors import CheckpointError, ConfigError, NonFiniteLossError
from mmbalance.methods.base import Method, TrainState
from mmbalance.models.multimodal import MultimodalModel
from mmbalance.tasks import HIGHER_IS_BETTER, is_defined, task_from
from mmbalance.training.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    load_latest,
    remove_stale_temporaries,
    save_atomic,
)
from mmbalance.training.evaluate import evaluate
from mmbalance.training.logger import MetricsLogger
from mmbalance.training.optim import build_optimizer, build_scheduler
from mmbalance.training.seeding import rng_state, set_rng_state

log = logging.getLogger("mmbalance")

UNIMODAL_HEADS_TERM = "unimodal_heads"


@dataclass
class RunResult:
    """What :meth:`Trainer.fit` returns (also written to ``summary.json``)."""

    run_dir: str
    best_epoch: int  # 0-based epoch selected on validation
    val: dict[str, float]
    test: dict[str, float]
    epochs: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains ``model`` with ``method`` on ``data`` as ``config`` says, writing to ``run_dir``."""

    def __init__(
        self,
        model: MultimodalModel,
        method: Method,
        data: DataSplits,
        config: ExperimentConfig,
        run_dir: str | Path,
    ) -> None:
        self.config = config
        self.device = torch.device(config.train.device)
        self.model = model.to(self.device)
        self.method = method
        self.data = data
        # classes or numbers (data.task), with the loss and metrics that go with them
        self.task = task_from(data.task, config.train.loss, data.score_range)
        method.task = self.task
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = self.run_dir / "checkpoints"
        method.check(model, model.fusion.name)
        # The method is an nn.Module: the modules it makes in build() (e.g. G-Blending's
        # per-modality classifiers) train with the model's optimiser; those it makes in setup()
        # train with optimisers of its own (AIM's decoupler). Both are in its state_dict.
        method.build(model)
        method.to(self.device)
        self.trainable = [*model.parameters(), *method.parameters()]
        self.optimizer = build_optimizer(self.trainable, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.optim, config.train.epochs)
        method.setup(model, self.optimizer)
        method.to(self.device)
        self.epoch = 0  # epochs completed
        self.step = 0
        self.best: dict[str, Any] | None = None  # {"epoch", "score"}
        self._fit_started = False  # on_fit_start has run (run_steps)
        self.main = dist.is_main()  # rank 0 (or the only process) logs and writes checkpoints
        self.distributed = dist.is_distributed()
        self.logger = MetricsLogger(self.run_dir, config.train.tensorboard, write=self.main)
        if self.main:
            remove_stale_temporaries(self.ckpt_dir)
        self._open_skip_log()
        self.eval_loaders = {
            split: self._loader(getattr(data, split), train=False)
            for split in ("train", "val", "test")
        }

    # -- data -------------------------------------------------------------------------------
    def _open_skip_log(self) -> None:
        """Point skipping datasets at ``<run>/skipped_files.tsv``; list the clips dropped while
        the dataset was built (missing files with ``skip_missing``) there first."""
        path = self.run_dir / SKIP_LOG
        skipping = [
            s
            for s in ("train", "val", "test")
            if getattr(getattr(self.data, s), "on_corrupt", "error") == "skip"
        ]
        if skipping and self.distributed:
            # a rank that drops a whole batch would leave the others waiting in an all-reduce
            raise ConfigError(
                "data.options.on_corrupt: 'skip' runs in a single process only; under torchrun "
                "run `mmbalance validate` first and fix or remove the files it lists"
            )
        if self.main and not path.exists() and self.data.info.get("skipped"):
            # "<clip>: <reason>" entries; whitespace squeezed so each stays one TSV row
            rows = [" ".join(s.split()) for s in self.data.info["skipped"]]
            path.write_text("".join(f"listing\t{r.split(':', 1)[0]}\t{r}\n" for r in rows))
        for split in ("train", "val", "test"):
            dataset = getattr(self.data, split)
            if hasattr(dataset, "skip_log"):
                dataset.skip_log = path

    def _loader(self, dataset: Any, train: bool, epoch: int = 0) -> DataLoader:
        cfg = self.config
        return make_loader(
            dataset,
            cfg.data,
            train,
            epoch,
            seed=cfg.seed,
            pin_memory=cfg.train.device.startswith("cuda"),
        )

    def _show_progress(self) -> bool:
        mode = self.config.train.progress
        return mode == "always" or (mode == "auto" and sys.stderr.isatty())

    # -- the public stepping API (tests, cost measurement, benchmarks) ----------------------
    def state(
        self, epoch: int = 0, step_in_epoch: int = 0, steps: int = 1, pass_name: str | None = None
    ) -> TrainState:
        """The :class:`TrainState` a method's hooks receive at that point of training."""
        return self._state(epoch, step_in_epoch, steps, pass_name)

    def train_loader(self, epoch: int = 0) -> DataLoader:
        """The training split's loader of ``epoch`` (the order ``fit`` uses)."""
        return self._loader(self.data.train, train=True, epoch=epoch)

    def run_steps(self, max_steps: int, epoch: int = 0) -> list[dict[str, float]]:
        """``max_steps`` training steps of ``epoch`` exactly as :meth:`fit` takes them (every
        hook: ``on_fit_start`` on first use, ``on_epoch_start``, then per batch the method's
        passes with forward, loss, backward, gradient averaging, ``on_after_backward``,
        clipping, the optimiser step and ``on_step_end``), without evaluation, logging or
        checkpoints. Returns each step's loss terms (floats)."""
        if not self._fit_started:
            self.method.on_fit_start(self._state(epoch, 0, 1))
            self._fit_started = True
        loader = self.train_loader(epoch)
        steps = len(loader)
        self.model.train()
        self.method.on_epoch_start(self._state(epoch, 0, steps))
        out: list[dict[str, float]] = []
        for i, raw in enumerate(loader):
            if i >= max_steps:
                break
            batch = to_device(raw, self.device)
            _, terms, method_loss = self.train_step(batch, epoch, i, steps)
            out.append({**{k: float(v) for k, v in terms.items()}, "loss": float(method_loss)})
        return out

    # -- one epoch --------------------------------------------------------------------------
    def _state(
        self, epoch: int, step_in_epoch: int, steps: int, pass_name: str | None = None
    ) -> TrainState:
        return TrainState(
            epoch=epoch,
            num_epochs=self.config.train.epochs,
            step=self.step,
            step_in_epoch=step_in_epoch,
            steps_per_epoch=steps,
            model=self.model,
            optimizer=self.optimizer,
            device=self.device,
            loaders={"train": self.eval_loaders["train"], "val": self.eval_loaders["val"]},
            run_dir=self.run_dir,
            pass_name=pass_name,
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split; returns mean loss terms and train accuracy."""
        model, method = self.model, self.method
        loader = self._loader(self.data.train, train=True, epoch=epoch)
        steps = len(loader)
        model.train()
        method.on_epoch_start(self._state(epoch, 0, steps))
        sums: dict[str, float] = {}
        correct, seen = 0.0, 0  # correct predictions; a regression's summed absolute error
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.config.train.epochs}",
            disable=not self._show_progress(),
            leave=False,
            dynamic_ncols=True,
        )
        for i, raw in enumerate(bar):
            batch = to_device(raw, self.device)
            logits, terms, method_loss = self.train_step(batch, epoch, i, steps)
            n = batch["label"].shape[0]
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
            sums["loss"] = sums.get("loss", 0.0) + float(method_loss.detach()) * n
            if self.task.regression:
                err = self.task.point(logits).float() - batch["label"].float()
                correct += float(err.abs().reshape(n, -1).mean(1).sum())
            else:
                correct += int((logits.argmax(1) == batch["label"]).sum())
            seen += n
            bar.set_postfix(loss=f"{float(method_loss.detach()):.4f}", refresh=False)
        bar.close()
        if self.distributed:  # epoch totals over every rank's shard
            keys = sorted(sums)
            values = [correct, seen, *(sums[k] for k in keys)]
            packed = dist.reduce_sum(torch.tensor(values, dtype=torch.float64, device=self.device))
            correct, seen = float(packed[0]), int(packed[1])
            sums = {k: float(v) for k, v in zip(keys, packed[2:], strict=True)}
        metrics = {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}
        metrics["train_mae" if self.task.regression else "train_acc"] = correct / max(seen, 1)
        method.on_train_epoch_end(self._state(epoch, steps, steps))
        return metrics

    def train_step(
        self, batch: dict[str, Any], epoch: int, i: int, steps: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """One batch: an optimisation step for each pass the method asks for (``Method.passes``;
        one for most methods, one per modality for MLA's alternating updates).

        Returns the passes' summed logits (for training accuracy), their loss terms and the
        method's loss, all detached.
        """
        model, method = self.model, self.method
        logits: torch.Tensor | None = None
        all_terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=self.device)
        for pass_name in method.passes(model):
            state = self._state(epoch, i, steps, pass_name)
            with torch.autocast(
                self.device.type, torch.bfloat16, enabled=self.config.train.precision == "bf16"
            ):
                output = method.forward(model, batch, state)
                terms = dict(method.loss(output, batch, state))
            method_loss = torch.stack([t.reshape(()) for t in terms.values()]).sum()
            loss = method_loss
            if output.unimodal_logits is not None:
                # Heads read detached features: this term trains the heads and nothing else,
                # so it is logged apart from the method's loss.
                heads = [
                    self.task.criterion(lg, batch["label"])
                    for lg in output.unimodal_logits.values()
                ]
                terms[UNIMODAL_HEADS_TERM] = functools.reduce(operator.add, heads)
                loss = method_loss + terms[UNIMODAL_HEADS_TERM]
            if not torch.isfinite(loss):
                self._fail_non_finite(epoch, i, terms)
            self.optimizer.zero_grad(set_to_none=True)
            method.zero_grad(set_to_none=True)  # the modules it trains with its own optimisers
            loss.backward()
            if self.distributed:  # the global batch's gradient, before any method hook reads it
                dist.average_gradients([*model.parameters(), *method.parameters()])
            method.on_after_backward(model, state)
            if self.config.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.config.optim.grad_clip)
            self.optimizer.step()
            method.on_step_end(state)
            step_logits = output.logits.detach()
            logits = step_logits if logits is None else logits + step_logits
            for k, v in terms.items():
                all_terms[k] = all_terms.get(k, 0.0) + v.detach()
            total = total + method_loss.detach()
        self.step += 1
        assert logits is not None, "Method.passes returned no pass"
        return logits, all_terms, total

    def _fail_non_finite(self, epoch: int, step: int, terms: dict[str, torch.Tensor]) -> None:
        values = {k: float(v.detach()) for k, v in terms.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        last = self.ckpt_dir / "last.pt"
        kept = (
            f"the last good checkpoint {str(last)!r} (after epoch {self.epoch}) is kept"
            if last.is_file()
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, batch {step + 1}: term(s) {bad} "
            f"(values {values}); {kept}. Lower optim.lr or set optim.grad_clip."
        )

    # -- selection and checkpoints ----------------------------------------------------------
    @property
    def select_metric(self) -> str:
        """``train.select_metric`` (``auto``: val_acc, or val_r2 for a regression)."""
        key = self.config.train.select_metric
        if key == "auto":
            return "val_r2" if self.task.regression else "val_acc"
        return key

    def _score(self, metrics: dict[str, Any]) -> float:
        key = self.select_metric
        value = metrics[key]
        if not is_defined(value):
            raise ConfigError(
                f"train.select_metric: {key} is undefined at epoch {metrics['epoch'] + 1} (the "
                "validation targets or the predictions are constant); select on val_mae or "
                "val_loss"
            )
        return float(value) if HIGHER_IS_BETTER[key.removeprefix("val_")] else -float(value)

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs (tensors and plain data only)."""
        return {
            "format": FORMAT_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "method": self.method.state_dict(),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state["scheduler"] is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint does not match this run's model/optimiser: {err}"
            ) from err
        self.method.load_state_dict(state["method"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        set_rng_state(state["rng"])

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from ``path`` (default: this run's ``checkpoints/last.pt``)."""
        path = Path(path) if path is not None else self.ckpt_dir / "last.pt"
        # a damaged last.pt falls back to last.prev.pt (one epoch earlier), with a warning
        state, path = load_latest(path)
        self.load_state_dict(state)
        self.logger.truncate(self.epoch)
        log.info("resumed from %s after epoch %d", path, self.epoch)

    def load_weights(self, path: str | Path) -> None:
        """Model weights and method state of a ``best.pt`` / ``last.pt`` (for evaluation)."""
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        if state.get("method") is not None:
            self.method.load_state_dict(state["method"])

    def evaluate_split(self, split: str) -> dict[str, Any]:
        """Metrics on ``val`` or ``test`` with the method's own prediction (``Method.predict``)."""
        return evaluate(
            self.model,
            self.eval_loaders[split],
            self.data.num_classes,
            self.device,
            split,
            predict=self.method.predict,
            task=self.task,
        )

    # -- the run ----------------------------------------------------------------------------
    def fit(self) -> RunResult:
        """Train for the remaining epochs, select on validation, report test at that epoch."""
        cfg = self.config.train
        start = time.perf_counter()
        self.method.on_fit_start(self._state(self.epoch, 0, 0))
        for epoch in range(self.epoch, cfg.epochs):
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            row: dict[str, Any] = {"epoch": epoch}
            row.update(self.train_epoch(epoch))
            row.update(self.evaluate_split("val"))
            if cfg.test_every_epoch:
                row.update(self.evaluate_split("test"))
            row.update(
                {
                    f"method_{k}": v
                    for k, v in self.method.on_epoch_end(self._state(epoch, 0, 0)).items()
                }
            )
            if self.scheduler is not None:
                self.scheduler.step()
            row["lr"] = lr
            row["time_epoch"] = time.perf_counter() - t0
            self.epoch = epoch + 1
            score = self._score(row)
            if self.distributed:  # every rank must still hold the same model and method state
                states = {"model": self.model.state_dict(), "method": self.method.state_dict()}
                dist.check_identical(states)
            if self.best is None or score > self.best["score"]:
                self.best = {"epoch": epoch, "score": score}
                if self.main:
                    # the method's state too: some methods predict with modules of their own
                    best = {
                        "format": FORMAT_VERSION,
                        "epoch": epoch,
                        "model": self.model.state_dict(),
                        "method": self.method.state_dict(),
                    }
                    save_atomic(best, self.ckpt_dir / "best.pt", keep_previous=False)
            self.logger.log(row)
            if self.main:
                save_atomic(self.state_dict(), self.ckpt_dir / "last.pt")
            log.info(_epoch_line(row, cfg.epochs, self.model.modalities, self.task.primary))
        self.logger.close()
        dist.barrier()  # rank 0's last checkpoint is on disk before anyone reads best.pt
        skipped = read_skip_log(self.run_dir)
        if skipped:
            log.warning(
                "%d sample(s) were skipped (missing or corrupt files); listed in %s",
                len(skipped),
                self.run_dir / SKIP_LOG,
            )
        return self._result(time.perf_counter() - start)

    def _result(self, seconds: float) -> RunResult:
        assert self.best is not None
        rows = self.logger.rows
        best_row = next(r for r in rows if r["epoch"] == self.best["epoch"])
        val = {k: v for k, v in best_row.items() if k.startswith("val_")}
        if self.config.train.test_every_epoch:
            test = {k: v for k, v in best_row.items() if k.startswith("test_")}
        else:
            self.load_weights(self.ckpt_dir / "best.pt")
            test = self.evaluate_split("test")
        return RunResult(
            str(self.run_dir), self.best["epoch"], val, test, self.epoch, seconds, rows
        )


def load_checkpoint_model(path: str | Path) -> dict[str, Any]:
    """The model weights of a ``best.pt`` or ``last.pt`` checkpoint."""
    state = load_checkpoint(path)
    return state["model"]


def _epoch_line(
    row: dict[str, Any], epochs: int, modalities: list[str], metric: str = "acc"
) -> str:
    """One epoch's log line: the task's primary metric (accuracy, or R^2), fused and per
    modality."""

    def fmt(value: Any, digits: int) -> str:
        return "undefined" if not is_defined(value) else f"{value:.{digits}f}"

    per_mod = " ".join(
        f"{m}={fmt(row[f'val_{metric}_{m}'], 3)}" for m in modalities if f"val_{metric}_{m}" in row
    )
    test = f" test_{metric}={fmt(row[f'test_{metric}'], 4)}" if f"test_{metric}" in row else ""
    extra = f" val_mae={fmt(row['val_mae'], 4)}" if metric == "r2" else ""
    return (
        f"epoch {row['epoch'] + 1}/{epochs} loss={row['train_loss']:.4f} "
        f"val_{metric}={fmt(row[f'val_{metric}'], 4)}{extra}{test} [{per_mod}] "
        f"{row['time_epoch']:.1f}s"
    )
