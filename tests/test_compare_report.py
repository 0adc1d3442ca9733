"""``compare`` (grid, resume, tables), ``report`` (HTML in a real browser), ``diagnose``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mmbalance.errors import ConfigError
from mmbalance.reporting.compare import aggregate, finished_records, load_grid, summarize
from mmbalance.reporting.diagnose import prototype_scores

GRID = {
    "experiment": "mfeat_default.yaml",
    "overrides": ["--train.epochs=3", "--data.modalities=[fac,mor]"],
    # the paper's AIM (PAM on): every figure of the paper can be drawn from its runs
    "methods": {"joint": {}, "aim": {"start_epoch": 1, "latent_dim": 8, "pam": True}},
    "seeds": [0, 1],
    "unimodal": True,
    "sweep": {"key": "method.options.start_epoch", "values": [1, 2], "methods": ["aim"]},
    "output_dir": "out",
    "workers": 1,
}


def _grid(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID, **changes}))
    return path


def _cli(args: list[str], cwd: Path, log: Path | None = None) -> subprocess.Popen:
    """The CLI in a subprocess; its output piped back, or written to ``log`` for a process
    nobody reads while it runs (a full pipe would block it)."""
    out = log.open("w") if log is not None else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "mmbalance.cli", *args],
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_grid_file_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"methods\.fast: unknown method 'nope'"):
        load_grid(_grid(tmp_path, methods={"fast": {"name": "nope"}}))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['seed'\]"):
        load_grid(_grid(tmp_path, seed=3))
    with pytest.raises(ConfigError, match=r"seeds: expected a list of integers"):
        load_grid(_grid(tmp_path, seeds="0,1"))


def test_aggregate_is_mean_and_sample_std_over_seeds() -> None:
    def run(label: str, seed: int, acc: float, seconds: float, probe: float) -> dict:
        return {
            "label": label,
            "seed": seed,
            "sweep_value": None,
            "seconds": seconds,
            "flops_per_sample": 10.0,
            "test": {"test_acc": acc, "test_f1": acc - 0.1, "test_acc_x": acc / 2},
            "evaluation": {"probe": {"x": {"test_acc": probe}}},
        }

    runs = [run("joint", 0, 0.8, 2.0, 0.5), run("joint", 1, 0.6, 4.0, 0.3)]
    runs += [run("m", 0, 0.9, 1.0, 0.6), run("m", 1, 0.65, 1.0, 0.5)]
    row, other = aggregate(runs, ["x", "y"])
    root2 = 2**0.5  # sample std of two values: |a - b| / sqrt(2)
    assert row["test_acc"] == pytest.approx((0.7, 0.2 / root2))
    assert row["test_f1"] == pytest.approx((0.6, 0.2 / root2))
    assert row["test_acc_x"] == pytest.approx((0.35, 0.1 / root2))
    assert row["probe_acc_x"] == pytest.approx((0.4, 0.2 / root2))
    assert row["test_acc_y"] is None and row["seconds"] == pytest.approx((3.0, 2.0 / root2))
    assert "vs_joint" not in row
    # m - joint per seed: acc +0.10, +0.05 (mean 0.075, sd 0.05/sqrt 2); t(0.975, df 1) = 12.706
    diff = other["vs_joint"]["test_acc"]
    half = 12.706 * (0.05 / root2) / root2
    assert diff["mean"] == pytest.approx(0.075) and diff["n"] == 2
    assert (diff["low"], diff["high"]) == pytest.approx((0.075 - half, 0.075 + half))
    assert other["vs_joint"]["probe_acc_x"]["mean"] == pytest.approx(0.15)


def test_compare_killed_midway_resumes_to_the_same_table(tmp_path: Path) -> None:
    grid = _grid(tmp_path)
    proc = _cli(["compare", "--config", str(grid)], tmp_path, log=tmp_path / "first.log")
    runs = tmp_path / "out" / "runs"
    deadline = time.time() + 900  # generous: a loaded machine trains slowly
    while time.time() < deadline and len(list(runs.glob("*/**/summary.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent: p.stat().st_mtime_ns for p in runs.glob("*/**/summary.json")}
    log = (tmp_path / "first.log").read_text()
    assert 3 <= len(finished) < 10, f"the kill should land mid-grid; the grid said:\n{log}"
    proc = _cli(["compare", "--config", str(grid)], tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"{len(finished)} already finished" in out or "already finished" in out
    for run_dir, stamp in finished.items():  # finished runs were not trained again
        assert (run_dir / "summary.json").stat().st_mtime_ns == stamp
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results["runs"]) == 10  # joint 2 + aim 2 values x 2 seeds + 2 unimodal x 2
    # the finished runs' records, read back without training, give the same tables
    records = finished_records(load_grid(grid), tmp_path / "out")
    assert records == results["runs"]
    text, payload = summarize(load_grid(grid), records, results["modalities"])
    assert text == (tmp_path / "out" / "results.md").read_text()
    # records whose unimodal run folders are elsewhere (a results file carried to another
    # machine) give the same tables when their certificate is carried with them
    assert payload["certificate"] is not None
    alone = sorted(runs.glob("unimodal*"))
    for folder in alone:
        folder.rename(folder.with_name("moved_" + folder.name))
    with pytest.raises(ConfigError, match="does not exist"):
        summarize(load_grid(grid), records, results["modalities"])
    again, _ = summarize(load_grid(grid), records, results["modalities"], payload["certificate"])
    assert again == text
    for folder in alone:
        folder.with_name("moved_" + folder.name).rename(folder)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| aim | 2 | 2 |" in table and "| unimodal mor | - | 2 |" in table
    # every cell of the table is the mean over the seeds' own summaries
    joint = [r for r in results["runs"] if r["label"] == "joint"]
    accs = [
        json.loads(Path(r["run_dir"], "summary.json").read_text())["test"]["test_acc"]
        for r in joint
    ]
    row = next(r for r in results["rows"] if r["method"] == "joint")
    assert row["test_acc"][0] == pytest.approx(sum(accs) / 2)
    csv_head = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert csv_head.startswith("method,sweep_value,seeds,test_acc_mean,test_acc_std")
    # AIM with PAM costs more than twice joint training's FLOPs per step (its auxiliary and
    # complementary passes; the default, PAM off, is held to 1.3x: tests/test_cost.py)
    aim = next(r for r in results["rows"] if r["method"] == "aim")
    assert aim["flops_per_sample"] > 2 * row["flops_per_sample"] > 0

    # the report: every figure of the paper the grid can draw, inlined in one page
    report = _cli(["report", "out"], tmp_path)
    page_path = tmp_path / report.communicate(timeout=120)[0].strip().splitlines()[-1]
    page = page_path.read_text()
    assert page.count('<img src="data:image/png;base64,') >= 7
    for fig in ("Fig. 1", "Fig. 4", "Fig. 5", "Fig. 6", "Fig. 7", "Fig. 8", "<table>"):
        assert fig in page
    assert 'src="http' not in page and 'src="file' not in page  # self-contained
    # each of the comparison's three tables under its own heading, with its own header row
    for title in ("Results", "Paired differences with joint training", "Imbalance certificate"):
        assert f"<h3>{title}</h3>" in page
    assert page.count("<table>") == page.count("<thead>") == 3
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium here: the page was checked as HTML only")
    dump = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chrome'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page_path.as_uri() + "#",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    # The page's own script, run by the browser, counts the figures that decoded.
    assert dump.returncode == 0, dump.stderr[-2000:]
    images = page.count("<img")
    assert f'data-images-loaded="{images}/{images}"' in dump.stdout
    # as the browser parsed it: three tables, each a header row in its <thead> (the paired
    # table's and the certificate's header cells are <th>, not data rows) under its heading
    dom = dump.stdout
    assert dom.count("<table>") == dom.count("<thead>") == 3
    for title, first_header in (
        ("Results", "method"),
        ("Paired differences with joint training", "method"),
        ("Imbalance certificate", "modality"),
    ):
        section = dom.split(f"<h3>{title}</h3>", 1)[1]
        table = section[section.index("<table>") : section.index("</table>")]
        assert table.startswith(f"<table><thead><tr><th>{first_header}</th>"), table[:200]


def test_prototype_score_by_hand() -> None:
    train = torch.tensor([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]])
    y = torch.tensor([0, 0, 1, 1])
    val = torch.tensor([[1.0, 1.0], [4.0, 1.0]])
    s, acc = prototype_scores(train, y, val, torch.tensor([0, 1]), 2)
    # prototypes (0, 1) and (4, 1); distances [1, 3] and [4, 0]
    p0 = torch.softmax(torch.tensor([-1.0, -3.0]), 0)[0]
    p1 = torch.softmax(torch.tensor([-4.0, 0.0]), 0)[1]
    assert s == pytest.approx(float((p0 + p1) / 2), abs=1e-4) and acc == 1.0


def test_diagnose_a_trained_run(tmp_path: Path, capsys) -> None:
    from conftest import tiny_config

    from mmbalance.cli import main
    from mmbalance.experiment import run_experiment

    result = run_experiment(tiny_config(tmp_path, train={"epochs": 4}), tmp_path / "run")
    assert main(["diagnose", result.run_dir]) == 0
    out = capsys.readouterr().out
    assert "weakest modality at the last depth: b" in out  # b is the weak synthetic modality
    assert (tmp_path / "run" / "diagnose.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "run" / "diagnose.json").read_text())
    a, b = saved["modalities"]["a"][-1], saved["modalities"]["b"][-1]
    assert a["probe_acc"] > b["probe_acc"]
    cv = abs(a["probe_acc"] - b["probe_acc"]) / (a["probe_acc"] + b["probe_acc"])
    assert saved["alpha_probe_acc"][-1] == pytest.approx(cv, abs=1e-5)  # CV of two values


def test_a_grid_with_a_bad_method_option_is_refused_before_any_run(tmp_path: Path) -> None:
    from mmbalance.errors import ConfigError
    from mmbalance.reporting.compare import compare

    grid = _grid(
        tmp_path,
        methods={"joint": {}, "broken": {"name": "ogm", "options": {"alpha": "high"}}},
        seeds=[0],
    )
    with pytest.raises(ConfigError, match=r"methods\.broken\.options\.alpha: got 'high'"):
        compare(grid, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failing_run_is_reported_and_the_grid_goes_on(tmp_path: Path) -> None:
    from mmbalance.reporting.compare import compare
    from mmbalance.reporting.report import build_report

    grid = _grid(
        tmp_path,
        # valid options, but a modality the data does not have: fails when the run is built
        methods={"joint": {}, "broken": {"name": "unimodal", "options": {"modality": "nope"}}},
        seeds=[0],
        unimodal=False,
        sweep=None,
        overrides=["--train.epochs=2", "--data.modalities=[fac,mor]"],
    )
    out = compare(grid, out=tmp_path / "out")
    table = (out / "results.md").read_text()
    assert "| joint |" in table and "| broken |" not in table
    assert "1 run(s) failed" in table and "broken seed 0:" in table and "'nope'" in table
    assert "Fig. 8" in build_report(out).read_text()


def test_an_unexpected_error_in_one_run_does_not_stop_the_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in one run (not a documented MMBalanceError) is recorded as that run's failure
    with its traceback in the run folder; an unattended grid goes on with the others."""
    import mmbalance.experiment
    from mmbalance.reporting.compare import Run, run_one

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug in a method")

    monkeypatch.setattr(mmbalance.experiment, "run_experiment", broken)
    run = Run("joint", "joint", 0, (), tmp_path / "runs" / "joint" / "s0")
    from mmbalance.config import shipped_config

    record = run_one((run, str(shipped_config("mfeat_default.yaml")), 1))
    assert record["label"] == "joint" and record["seed"] == 0
    assert "unexpected TypeError: a bug in a method" in record["failed"]
    trace = (run.run_dir / "error.log").read_text()
    assert "Traceback" in trace and "a bug in a method" in trace


def test_a_run_folder_of_another_configuration_is_not_reused(tmp_path: Path) -> None:
    """A finished run is reused as it is: when the grid's label now asks for other options,
    compare refuses, naming the folder and the field, instead of reporting the old run."""
    from mmbalance.reporting.compare import compare

    small = {
        "methods": {"ogm": {"name": "ogm", "options": {"alpha": 0.5}}},
        "seeds": [0],
        "unimodal": False,
        "sweep": None,
        "overrides": ["--train.epochs=1", "--data.modalities=[fac,mor]"],
    }
    out = compare(_grid(tmp_path, **small), out=tmp_path / "out")
    first = (out / "runs" / "ogm" / "s0" / "summary.json").read_text()
    again = compare(_grid(tmp_path, **small), out=tmp_path / "out")  # same grid: reused
    assert (again / "runs" / "ogm" / "s0" / "summary.json").read_text() == first
    changed = {**small, "methods": {"ogm": {"name": "ogm", "options": {"alpha": 0.8}}}}
    with pytest.raises(ConfigError, match=r"ogm/s0: method\.options\.alpha: 0\.5 there, 0\.8 now"):
        compare(_grid(tmp_path, **changed), out=tmp_path / "out")
