"""Cost of AIM relative to joint training: step time, peak memory, FLOPs per sample.

Every variant trains a copy of one model (same initial weights) on the same batches in the same
process; steps alternate between the variants so drift (thermal, other load) hits all alike.
Time and FLOPs are per step averaged over whole cycles of ``pam_every`` (a variant that runs
PAM's passes on one step in k costs their mean), over ``--steps`` steps after one warm-up step
(make it a multiple of every k measured). The time breakdown of the every-step method (the
paper's) comes from ablated variants measured the same way:

- prototypes and scores (Eqs. 9-10 on the original blocks), split CE: ``w/o PAM`` minus joint;
- auxiliary blocks and their decoupling (Eqs. 7, 11-13): PAM every step without ``L_pdm``
  minus ``w/o PAM``;
- decoupler training (``L_pdm``: complementary passes, Eq. 8): PAM every step minus the same
  without ``L_pdm``.

Peak memory is the high-water mark of CPU tensor allocations during one step (torch profiler,
``profile_memory``), on top of what was allocated before the step. Writes
``benchmarks/results/aim_cost.json``.

    python benchmarks/aim_cost.py --width 1.0 --batch 64 --steps 8
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Any

import torch
from common import RESULTS, machine
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from mmbalance.config import ExperimentConfig
from mmbalance.data.loading import to_device
from mmbalance.experiment import build_experiment
from mmbalance.methods import create_method
from mmbalance.methods.aim.method import AIMOptions
from mmbalance.training.trainer import Trainer


def config(
    width: float, batch: int, latent: int, audio: list[int], visual: list[int]
) -> ExperimentConfig:
    """The field's CREMA-D shape (OGM-GE: audio 1x257x188 spectrogram, 1 visual frame)."""
    return ExperimentConfig.from_dict(
        {
            "data": {
                "name": "synthetic",
                "options": {
                    "num_classes": 6,
                    "num_samples": 4 * batch,
                    "modalities": {
                        "audio": {"shape": audio, "strength": 1.0},
                        "visual": {"shape": visual, "strength": 2.0},
                    },
                },
                "batch_size": batch,
                "val_fraction": 0.1,
                "test_fraction": 0.1,
            },
            "model": {"encoder": {"type": "resnet18", "width": width}},
            "method": {"name": "aim", "options": {}},
            "train": {"progress": "never", "tensorboard": False},
        }
    )


VARIANTS: dict[str, dict[str, Any] | None] = {
    "joint": None,
    "aim_wo_pam": {"pam": False},
    "aim_pam_every_8": {"pam": True, "pam_every": 8},
    "aim_pam_every_4": {"pam": True, "pam_every": 4},
    "aim_pam_every_2": {"pam": True, "pam_every": 2},
    "aim_no_pdm": {"pam": True, "pam_every": 1, "pdm_during_modulation": False},
    # the paper's PAM on every step; auxiliary pass on half the batch, L_pdm on a quarter
    "aim_pam_every_1": {"pam": True, "pam_every": 1},
    "aim_literal_batches": {
        "pam": True,
        "pam_every": 1,
        "aux_batch_fraction": 1.0,
        "pdm_batch_fraction": 1.0,
    },
}


def default_variant() -> str:
    """The variant that is AIM's default (``method: {name: aim}``)."""
    defaults = AIMOptions()
    if not defaults.pam:
        return "aim_wo_pam"
    return f"aim_pam_every_{defaults.pam_every}"


def make_trainers(cfg: ExperimentConfig, latent: int, tmp: str) -> dict[str, Trainer]:
    data, model, _ = build_experiment(cfg)
    trainers = {}
    for name, opts in VARIANTS.items():
        method = (
            create_method("joint")
            if opts is None
            else create_method(
                "aim", {"latent_dim": latent, "start_epoch": 0, "dap_steps": 0, **opts}
            )
        )
        t = Trainer(copy.deepcopy(model), method, data, cfg, f"{tmp}/{name}")
        method.on_fit_start(t.state(0, 0, 1))
        trainers[name] = t
    return trainers


def peak_bytes(fn) -> int:
    """High-water mark of CPU allocations made while ``fn`` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cur = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--latent", type=int, default=512)
    parser.add_argument("--audio", type=int, nargs="+", default=[1, 257, 188])
    parser.add_argument("--visual", type=int, nargs="+", default=[3, 1, 224, 224])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "aim_cost.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = config(args.width, args.batch, args.latent, args.audio, args.visual)
    trainers = make_trainers(cfg, args.latent, "/tmp/mmbalance-aim-cost")
    loader = next(iter(trainers.values()))._loader(trainers["joint"].data.train, train=True)
    distinct = [to_device(b, torch.device("cpu")) for b in loader]
    batches = [distinct[i % len(distinct)] for i in range(args.steps + 1)]

    def step(name: str, batch: dict[str, Any]) -> None:
        trainers[name].train_step(batch, epoch=0, i=0, steps=1)

    times: dict[str, list[float]] = {n: [] for n in trainers}
    flops: dict[str, float] = {n: 0.0 for n in trainers}
    for i, batch in enumerate(batches):
        for name in trainers:  # interleaved: every variant on the same batch
            if i == 0:  # the first step warms up allocators and kernels, and is not counted
                step(name, batch)
                continue
            counter = FlopCounterMode(display=False)
            t0 = time.perf_counter()
            with counter:
                step(name, batch)
            times[name].append(time.perf_counter() - t0)
            flops[name] += counter.get_total_flops() / args.batch / args.steps
    # peak memory of the most expensive step of each variant (a PAM step where there is one:
    # every trainer is now at step steps + 1, and a fresh cycle starts at a multiple of k)
    memory = {}
    for name, t in trainers.items():
        cycle = t.method.cost_cycle()
        while t.step % cycle:
            step(name, batches[0])
        memory[name] = peak_bytes(lambda name=name: step(name, batches[0]))
    # the mean step over whole cycles (a median would hide the steps that run PAM's passes)
    mean = {n: statistics.fmean(v) for n, v in times.items()}
    j = mean["joint"]
    result = {
        "command": "python benchmarks/aim_cost.py "
        + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out"
        ),
        "machine": machine(),
        "config": {
            "width": args.width,
            "batch": args.batch,
            "latent": args.latent,
            "audio": args.audio,
            "visual": args.visual,
            "classes": 6,
        },
        "default_variant": default_variant(),
        "step_seconds": times,
        "mean_step_seconds": mean,
        "time_ratio_vs_joint": {n: v / j for n, v in mean.items()},
        "breakdown_seconds_pam_every_step": {
            "prototypes_scores_split_ce": mean["aim_wo_pam"] - j,
            "auxiliary_blocks": mean["aim_no_pdm"] - mean["aim_wo_pam"],
            "decoupler_training_pdm": mean["aim_pam_every_1"] - mean["aim_no_pdm"],
        },
        "flops_per_sample": flops,
        "flops_ratio_vs_joint": {n: v / flops["joint"] for n, v in flops.items()},
        "peak_step_bytes": memory,
        "memory_ratio_vs_joint": {n: v / memory["joint"] for n, v in memory.items()},
        "decoupler_parameters": trainers["aim_pam_every_1"].method.decoupler.size,
        "model_parameters": sum(p.numel() for p in trainers["joint"].model.parameters()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "default_variant",
                    "mean_step_seconds",
                    "time_ratio_vs_joint",
                    "breakdown_seconds_pam_every_step",
                    "flops_ratio_vs_joint",
                    "memory_ratio_vs_joint",
                )
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
