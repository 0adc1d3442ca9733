"""DDP: 2 gloo processes train like 1 process with the same global batch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from dist_helpers import diverge, reductions
from torch.utils.data import DataLoader

from mmbalance.data.loading import ShardedEpochSampler


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharded_order_is_the_single_process_order() -> None:
    n = 37
    single = list(ShardedEpochSampler(n, 3, 5))
    assert sorted(single) == list(range(n)) and single == list(ShardedEpochSampler(n, 3, 5))
    assert single != list(ShardedEpochSampler(n, 3, 6))  # a new order every epoch
    loader = DataLoader(list(range(n)), batch_size=8, sampler=ShardedEpochSampler(n, 3, 5))
    iter(loader)  # an iterator made and dropped (as progress bars do) changes nothing
    assert [i for b in loader for i in b.tolist()] == single
    shards = [list(ShardedEpochSampler(n, 3, 5, r, 2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 19  # padded with the first index
    for k in range(4):  # per-rank batch 4: global batch 8, the same samples
        assert sorted(shards[0][4 * k : 4 * k + 4] + shards[1][4 * k : 4 * k + 4]) == sorted(
            single[8 * k : 8 * k + 8]
        )


def test_reductions_and_the_divergence_check(tmp_path: Path) -> None:
    out = str(tmp_path / "r")
    mp.spawn(reductions, args=(2, _port(), out), nprocs=2)
    for rank in (0, 1):
        values = [float(v) for v in Path(f"{out}.{rank}").read_text().split(",")]
        # sum of [1,2] and [2,4]; their mean; the mean gradient; the input left unchanged
        assert values[:6] == [3, 6, 1.5, 3, 3, 6]
        assert values[6:] == [1.0 * (rank + 1), 2.0 * (rank + 1)]
    out = str(tmp_path / "d")
    mp.spawn(diverge, args=(2, _port(), out), nprocs=2)
    for rank in (0, 1):
        text = Path(f"{out}.{rank}").read_text()
        assert "state differs between ranks: ['method.p']" in text


def _arrays(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 128), ("val", 32), ("test", 32)):
        y = rng.integers(0, 3, n)
        d = root / split
        d.mkdir(parents=True)
        np.save(d / "labels.npy", y)
        np.save(d / "a.npy", (rng.standard_normal((n, 12)) + y[:, None]).astype(np.float32))
        np.save(d / "b.npy", (rng.standard_normal((n, 10)) + 0.3 * y[:, None]).astype(np.float32))
    return root


def _config(tmp_path: Path, method: dict) -> Path:
    cfg = {
        "seed": 0,
        "data": {
            "name": "arrays",
            "options": {"root": str(_arrays(tmp_path / "data"))},
            "batch_size": 32,
        },
        # LayerNorm: BatchNorm statistics are per rank under DDP (as in torch's own DDP)
        "model": {"encoder": {"type": "mlp", "hidden": [16, 16], "norm": "layer"}},
        "method": method,
        "optim": {"name": "sgd", "lr": 0.05, "scheduler": "none"},
        "train": {"epochs": 3, "progress": "never", "tensorboard": False},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(cfg: Path, out: Path, procs: int) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "mmbalance.cli"]
    if procs > 1:
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={procs}",
            f"--master_port={_port()}",
            "-m",
            "mmbalance.cli",
        ]
    return subprocess.run(
        [*launch, "train", "--config", str(cfg), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "method",
    [
        {"name": "joint"},
        {"name": "aim", "options": {"latent_dim": 8, "start_epoch": 1, "dap_steps": 1}},
    ],
    ids=["joint", "aim"],
)
def test_two_gloo_processes_match_one_process(tmp_path: Path, method: dict) -> None:
    cfg = _config(tmp_path, method)
    one = _train(cfg, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train(cfg, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads((tmp_path / "two/meta.json").read_text())["world_size"] == 2
    assert json.loads((tmp_path / "one/meta.json").read_text())["world_size"] == 1
    rows1 = [json.loads(x) for x in (tmp_path / "one/metrics.jsonl").read_text().splitlines()]
    rows2 = [json.loads(x) for x in (tmp_path / "two/metrics.jsonl").read_text().splitlines()]
    assert len(rows1) == len(rows2) == 3
    # Stated tolerance: 1e-5 relative on every logged number (losses, accuracies, AIM's
    # s / alpha / rho). Only the summation order differs (two half-batch sums vs one).
    for r1, r2 in zip(rows1, rows2, strict=True):
        keys = [k for k in r1 if k not in ("time_epoch",) and isinstance(r1[k], float)]
        assert set(keys) <= set(r2)
        for k in keys:
            assert r2[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-6), k
    w1 = torch.load(tmp_path / "one/checkpoints/last.pt", weights_only=True)["model"]
    w2 = torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)["model"]
    for name in w1:
        assert torch.allclose(w1[name], w2[name], rtol=1e-5, atol=1e-6), name
    if method["name"] == "aim":
        assert rows2[-1]["method_phase"] == 2.0 and "method_alpha_d1" in rows2[-1]


def test_every_method_keeps_ranks_identical_under_ddp(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={_port()}",
            str(Path(__file__).parent / "ddp_all_methods.py"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    from mmbalance.methods import METHODS

    assert set(report) == set(METHODS)
    failed = {k: v["error"] for k, v in report.items() if not v["ok"]}
    assert not failed, failed
    assert all(v["world"] == 2 for v in report.values())


def test_a_killed_two_process_run_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    import os
    import signal
    import time

    cfg = _config(tmp_path, {"name": "aim", "options": {"latent_dim": 8, "start_epoch": 1}})
    text = cfg.read_text().replace("epochs: 3", "epochs: 5")
    cfg.write_text(text)
    reference = _train(cfg, tmp_path / "reference", 2)
    assert reference.returncode == 0, reference.stderr[-3000:]
    run = tmp_path / "killed"
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_port()}",
        "-m",
        "mmbalance.cli",
    ]
    proc = subprocess.Popen(
        [*launch, "train", "--config", str(cfg), "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        metrics.is_file() and len(metrics.read_text().splitlines()) >= 2
    ):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, mid-run
    proc.wait()
    done = len(metrics.read_text().splitlines())
    assert 2 <= done < 5, "the kill should land mid-run"
    resumed = subprocess.run(
        [*launch, "train", "--resume", str(run)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def rows(d: Path) -> list[dict]:
        out = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "time_epoch"} for r in out]

    assert rows(run) == rows(tmp_path / "reference")
