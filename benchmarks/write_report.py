"""Render ``BENCHMARKS.md`` from the JSON results the benchmark scripts wrote.

python benchmarks/write_report.py
"""

from __future__ import annotations

import json
from typing import Any

from common import RESULTS, ROOT

from mmbalance.methods import METHODS
from mmbalance.reporting.stats import format_interval, paired_interval

OUT = ROOT.parent / "BENCHMARKS.md"


def _split(defaults: dict[str, Any]) -> str:
    """AIM's ``split_ce`` default as a sentence (absent: before the option existed, i.e. 0)."""
    value = defaults.get("split_ce", 0.0)
    return "unset (1.0 on the concat fusion)" if value is None else str(value)


def _machine(m: dict[str, str]) -> str:
    return (
        f"{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), Python "
        f"{m['python']}, torch {m['torch']}, mmbalance {m['mmbalance']} @ {m['git_commit']}"
    )


SUITE = ["digits_vec", "digits_seq", "digits_av", "regress_av"]
PAPER = "aim paper (PAM every step)"  # the paper's method in the suite grids
BASELINES = {
    "ogm", "ogm_ge", "opm", "opm_ogm", "pmr", "agm", "gblending", "greedy", "mla",
    "diag_relearn", "mmpareto", "inforeg",
}  # fmt: skip


def _paired(
    runs: list[dict[str, Any]], label: str, key: Any, other: str = "joint"
) -> list[tuple[float, float]]:
    """(label's value, other's value) per seed both have, for ``key(record)``."""
    mine = {r["seed"]: key(r) for r in runs if r["label"] == label and "failed" not in r}
    them = {r["seed"]: key(r) for r in runs if r["label"] == other and "failed" not in r}
    return [(mine[s], them[s]) for s in sorted(mine) if s in them]


def _metric(data: dict[str, Any]) -> str:
    """The suite file's primary metric: ``acc``, or ``r2`` for the regression benchmark."""
    rows = data.get("rows") or [{}]
    return str(rows[0].get("metric", "acc"))


def _probe(m: str, metric: str = "acc") -> Any:
    return lambda r: r["evaluation"]["probe"][m][f"test_{metric}"]


def _ci(pairs: list[tuple[float, float]]) -> dict[str, float]:
    return paired_interval([a for a, _ in pairs], [b for _, b in pairs])


def acceptance(data: dict[str, Any]) -> list[str]:
    """The AIM issue's acceptance criteria, recomputed from the runs (points, paired by seed)."""
    runs, cert = data["runs"], data["certificate"]
    metric = _metric(data)
    unit = "pts" if metric == "acc" else "pts of R² x 100"
    one = "pt" if metric == "acc" else "pt of R² x 100"
    name = "accuracy" if metric == "acc" else "R²"
    fused = _paired(runs, "aim", lambda r: r["test"][f"test_{metric}"])
    if not fused or cert is None:
        return []
    starved = cert["starved"]
    gaps = {m: v["gap"]["mean"] for m, v in cert["modalities"].items()}
    dominant = max(gaps, key=lambda m: gaps[m])
    d_fused = _ci(fused)
    d_starved = _ci(_paired(runs, "aim", _probe(starved, metric)))
    d_dom = _ci(_paired(runs, "aim", _probe(dominant, metric)))
    worst = min(100 * (a - b) for a, b in fused)
    rows = {r["method"]: r for r in data["rows"]}
    best = max(
        (k for k in rows if k in BASELINES and rows[k].get(f"test_{metric}")),
        key=lambda k: rows[k][f"test_{metric}"][0],
        default=None,
    )

    def ok(flag: bool) -> str:
        return "**pass**" if flag else "**FAIL**"

    lines = [
        f"AIM (defaults) against joint training, {len(fused)} seeds paired:",
        "",
        "| criterion | measured | |",
        "|---|---|---|",
        f"| fused {name} >= joint + 2 {unit}, interval above 0 | {format_interval(d_fused)} | "
        f"{ok(d_fused['mean'] >= 0.02 and d_fused['low'] > 0)} |",
        f"| starved modality ({starved}) probe >= joint + 5 {unit} | "
        f"{format_interval(d_starved)} | {ok(d_starved['mean'] >= 0.05)} |",
        f"| dominant modality ({dominant}) probe >= joint - 1 {one} | {format_interval(d_dom)} | "
        f"{ok(d_dom['mean'] >= -0.01)} |",
        f"| no seed more than 1 {one} below joint (fused) | worst seed {worst:+.2f} | "
        f"{ok(worst >= -1.0)} |",
    ]
    if best is not None:
        aim_acc, best_acc = rows["aim"][f"test_{metric}"][0], rows[best][f"test_{metric}"][0]
        vs_best = _ci(_paired(runs, "aim", lambda r: r["test"][f"test_{metric}"], other=best))
        lines.append(
            f"| AIM >= the best baseline measured ({best}, {100 * best_acc:.2f}) | "
            f"{100 * aim_acc:.2f}; AIM - {best} paired {format_interval(vs_best)} | "
            f"{ok(aim_acc >= best_acc)} |"
        )
    if PAPER in rows:
        paper = _ci(_paired(runs, "aim", lambda r: r["test"][f"test_{metric}"], other=PAPER))
        lines.append(
            f"| (for the record) the default against the paper's method ({PAPER}, "
            f"{100 * rows[PAPER][f'test_{metric}'][0]:.2f}) | AIM - paper paired "
            f"{format_interval(paper)} | |"
        )
    if best is not None:  # features or head? the same probe on both models' frozen features
        probe = _paired(
            runs,
            "aim",
            lambda r: (r["evaluation"].get("fused_probe") or {}).get(f"test_{metric}"),
            other=best,
        )
        probe = [p for p in probe if None not in p]
        if len(probe) >= 2:
            means = [100 * sum(p[i] for p in probe) / len(probe) for i in (0, 1)]
            extra_probe = (
                f"Against {best}, on the features: one linear probe on every modality's frozen "
                f"features together reads {means[0]:.2f} on AIM's and {means[1]:.2f} on "
                f"{best}'s (test, AIM - {best} paired {format_interval(_ci(probe))})"
            )
            aim_behind = rows["aim"][f"test_{metric}"][0] < rows[best][f"test_{metric}"][0]
            if aim_behind and means[0] >= means[1]:
                extra_probe += (
                    f": AIM's encoders hold at least as much as {best}'s; what AIM lacks is "
                    "in its trained head's use of them."
                )
            elif aim_behind:
                extra_probe += f": {best}'s encoders hold more; AIM's gap is in the features."
            else:
                extra_probe += "."
        else:
            extra_probe = ""
    val = _paired(runs, "aim", lambda r: r["val"][f"val_{metric}"])
    mean_val = {k: 100 * sum(p[i] for p in val) / len(val) for k, i in (("aim", 0), ("joint", 1))}
    lines += [
        "",
        f"Validation {name} at the selected epoch (what the choice of AIM's defaults saw): "
        f"AIM {mean_val['aim']:.2f}, joint {mean_val['joint']:.2f}, AIM - joint paired "
        f"{format_interval(_ci(val))}.",
    ]
    if best is not None and extra_probe:
        lines += ["", extra_probe]
    parts = []  # what each part of the default brings, paired by seed (test accuracy)
    for label, what in (
        ("aim w/o L_mod", "AIM's modulation (`L_mod`) on top of `split_ce`"),
        ("aim w/o split CE", "`split_ce` on top of AIM's modulation"),
        ("aim split CE", "leaving the split term out (a regression's default)"),
    ):
        pairs = _paired(runs, "aim", lambda r: r["test"][f"test_{metric}"], other=label)
        if len(pairs) >= 2:
            parts.append(f"{what}: AIM − {label} {format_interval(_ci(pairs))}")
    if parts:
        lines += [
            "",
            f"What each part of the default adds (fused test {name}, paired): "
            + "; ".join(parts)
            + ".",
        ]
    return [*lines, ""]


def suite_section(name: str, data: dict[str, Any]) -> list[str]:
    seeds = sorted({r["seed"] for r in data["runs"]})
    labels = list(data["grid"]["methods"])
    done = {r["method"] for r in data["rows"]}
    # a label the benchmark cannot run (a capability: Greedy's MMTM pairs two modalities)
    refused = {}
    mods = len(data.get("modalities") or [])
    for label, spec in data["grid"]["methods"].items():
        cls = METHODS.get(spec.get("name") or label)
        limit = cls.max_modalities if cls is not None else None
        if label not in done and limit is not None and mods > limit:
            refused[label] = (
                f"method {spec.get('name') or label!r} supports at most {limit} modalities; "
                f"this benchmark has {mods}"
            )
    missing = [k for k in labels if k not in done and k not in refused]
    lines = [
        f"### {name} (`src/mmbalance/configs/{name}.yaml`)",
        "",
        f"Grid `{data['grid_file']}`; command `{data['command']}` "
        "(then `python benchmarks/write_report.py`).",
        f"Machine: {_machine(data['machine'])}. Seeds: {', '.join(map(str, seeds))} "
        "(the `seeds` column says how many each row has).",
        "",
    ]
    if data.get("stored_labels"):
        lines += [
            "Measured earlier, on the same machine type, by the code at "
            f"`{data['stored_commit']}` (these methods' training code has not changed since; "
            "the runs' records are carried in the results file): "
            + ", ".join(data["stored_labels"])
            + ". Every other row was run by the commit above.",
            "",
        ]
    if missing:
        lines += [
            f"Not yet measured (the grid resumes where it stopped): {', '.join(missing)}.",
            "",
        ]
    for label, why in refused.items():
        lines += [f"Cannot run on this benchmark: {label} ({why}).", ""]
    text = (RESULTS / f"suite_{name}.md").read_text()
    lines += [text.strip(), ""]
    lines += acceptance(data)
    diags = data.get("method_diagnostics") or {}
    if any(diags.values()):
        lines += [
            "What the baselines' own coefficients did (`method_*` columns of metrics.csv, mean "
            "over seeds at the first epoch, 1/4, 1/2, 3/4 and the last epoch of the run):",
            "",
        ]
        for label, cols in diags.items():
            if cols:
                cells = "; ".join(
                    f"{k} " + " → ".join(f"{v:.2f}" for v in vals) for k, vals in cols.items()
                )
                lines.append(f"- {label}: {cells}")
        lines.append("")
    return lines


COST_NAMES = {
    "joint": "joint training",
    "aim_wo_pam": "AIM w/o PAM (prototype scores, DAM, split CE)",
    "aim_pam_every_8": "AIM, PAM on one step in 8",
    "aim_pam_every_4": "AIM, PAM on one step in 4",
    "aim_pam_every_2": "AIM, PAM on one step in 2",
    "aim_no_pdm": "AIM, PAM every step, no decoupler training in phase 2",
    "aim_pam_every_1": "AIM, PAM every step (the paper's method; batch fractions 0.5 / 0.25)",
    "aim_literal_batches": "AIM, PAM every step, every pass on the whole batch (literal)",
}


def cost_section(data: dict[str, Any], title: str) -> list[str]:
    if "mean_step_seconds" not in data:  # written by an earlier aim_cost.py: not comparable
        return [
            f"### {title}",
            "",
            f"Not measured with the current `benchmarks/aim_cost.py` yet: run "
            f"`{data.get('command', 'python benchmarks/aim_cost.py')}`.",
            "",
        ]
    c = data["config"]
    mean = data["mean_step_seconds"]
    ratio = data["time_ratio_vs_joint"]
    flops = data["flops_per_sample"]
    mem = data["peak_step_bytes"]
    default = data.get("default_variant")
    lines = [
        f"### {title}",
        "",
        f"Command: `{data['command']}`.",
        f"Machine: {_machine(data['machine'])}.",
        f"Model: two ResNet18 encoders (width {c['width']}), audio {c['audio']}, visual "
        f"{c['visual']}, {c['classes']} classes, batch {c['batch']}, decoupler latent "
        f"{c['latent']} ({data['decoupler_parameters']:,} decoupler parameters; model "
        f"{data['model_parameters']:,}). Same initial weights, same batches, same process, "
        "steps interleaved; time and FLOPs are the mean per step over whole cycles of "
        "`pam_every` (the first step excluded as warm-up), FLOPs from "
        "`torch.utils.flop_counter` over whole training steps (forward, backward, method hooks) "
        "per sample; peak memory: the high-water mark of CPU tensor allocations during the most "
        f"expensive step of each variant. **Bold**: AIM's default (`{default}`).",
        "",
        "| variant | step time (s) | time vs joint | GFLOP / sample | FLOPs vs joint "
        "| peak step memory (MiB) | memory vs joint |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in COST_NAMES.items():
        if key not in mean:
            continue
        cells = (
            f"{mean[key]:.2f} | {ratio[key]:.2f}x | {flops[key] / 1e9:.2f} | "
            f"{data['flops_ratio_vs_joint'][key]:.2f}x | {mem[key] / 2**20:.0f} | "
            f"{data['memory_ratio_vs_joint'][key]:.2f}x"
        )
        name = f"**{label}**" if key == default else label
        lines.append(f"| {name} | {cells} |")
    b = data["breakdown_seconds_pam_every_step"]
    total = mean["aim_pam_every_1"] - mean["joint"]
    lines += [
        "",
        "Where the paper's method's extra time goes (differences of the variants above):",
        "",
        "| part | extra seconds per step | share of the extra time |",
        "|---|---|---|",
    ]
    for key, label in (
        ("prototypes_scores_split_ce", "prototype scores of every block (Eqs. 9-10), split CE"),
        ("auxiliary_blocks", "auxiliary blocks: decoupling (Eq. 7) + forward/backward (11-13)"),
        ("decoupler_training_pdm", "decoupler training: complementary blocks + L_re (Eq. 8)"),
    ):
        lines.append(f"| {label} | {b[key]:.2f} | {100 * b[key] / total:.0f}% |")
    lines.append("")
    return lines


def convergence_section() -> list[str]:
    """Fig. 8 as a table per benchmark, and the figures (benchmarks/convergence.py)."""
    import convergence

    lines = [
        "## Convergence: epochs, time and FLOPs to a level (the paper's Fig. 8)",
        "",
        "From the suite's runs (their per-epoch validation accuracy; `benchmarks/convergence.py`): "
        "for each method, when validation accuracy first reaches joint training's best "
        "validation accuracy of the same seed (and in how many seeds it does), and 99% of the "
        "method's own peak; cumulative training FLOPs are epochs x training samples x the "
        "steady-state FLOPs per sample, shown relative to what joint training spends to reach "
        "99% of its own peak; wall time sums the epochs (training and evaluation, 2 runs at a "
        "time on 2 cores). Means over the seeds that reach the level.",
        "",
    ]
    for name in SUITE:
        path = RESULTS / f"suite_{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        if not any(r.get("curve") for r in data["runs"]):
            continue
        table = convergence.benchmark_convergence(data)
        labels = [k for k in data["grid"]["methods"] if k in table]
        lines += [convergence.markdown(name, table, labels)]
        shown = [
            k for k in ("joint", "aim", PAPER, "inforeg", "mla", "pmr", "mmpareto") if k in table
        ]
        out = RESULTS / "figures" / f"convergence_{name}.png"
        convergence.figure(name, data, shown, out)
        lines += [f"Figure: `{out.relative_to(ROOT.parent)}`.", ""]
    return lines


def file_section(name: str, title: str, intro: str) -> list[str]:
    """A section made of a results Markdown file written by its own script."""
    path = RESULTS / name
    if not path.is_file():
        return []
    return [f"## {title}", "", intro, "", path.read_text().strip(), ""]


def loader_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Data loading: the spectrogram cache",
        "",
        f"Command: `{data['command']}`.",
        f"Machine: {_machine(data['machine'])}; one loader process, 1 torch thread.",
        f"A CREMA-D-layout folder of {data['clips']} clips shaped like the release (2.5 s 16 kHz "
        "WAVs, 480x360 JPEG frames); one pass over the training split through the real dataset "
        "(training transforms, one 224x224 frame). Samples per second, mean ± std over "
        f"{data['repeats']} passes. *cache cold* is the first epoch with `cache_dir` set "
        "(computes and writes every spectrogram), *cache warm* every later epoch.",
        "",
        "| recipe | modalities | no cache | cache cold | cache warm | warm vs no cache |",
        "|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        cells = [
            f"{row[k]['mean']:.0f} ± {row[k]['std']:.0f}"
            for k in ("no cache", "cache cold", "cache warm")
        ]
        gain = row["cache warm"]["mean"] / row["no cache"]["mean"]
        lines.append(
            f"| {row['recipe']} | {' + '.join(row['modalities'])} | {' | '.join(cells)} "
            f"| {gain:.1f}x |"
        )
    lines.append("")
    return lines


def code_section() -> list[str]:
    """Which code trained the suite's rows: the commits and code fingerprints their runs
    recorded, against the current code's (experiment.code_fingerprint)."""
    from mmbalance.experiment import code_fingerprint

    now = code_fingerprint()
    lines = ["## Which code produced these numbers", ""]
    sources: list[tuple[str, list[dict[str, Any]]]] = []
    for name in SUITE:
        path = RESULTS / f"suite_{name}.json"
        if path.is_file():
            sources.append((name, json.loads(path.read_text())["runs"]))
    timm = RESULTS / "timm_av.json"
    if timm.is_file():
        for key, grid in json.loads(timm.read_text())["grids"].items():
            if "runs" in grid:
                sources.append((f"digits_av_{key}", grid["runs"]))
    for name, runs in sources:
        prints = {r.get("code_sha256") for r in runs if "failed" not in r}
        commits = sorted({r["git_commit"][:7] for r in runs if r.get("git_commit")})
        trained = (
            f"trained at {', '.join(commits)}"
            if commits
            else "trained before runs recorded their commit"
        )
        if prints == {now}:
            verdict = "their code fingerprint is the current code's."
        else:
            verdict = (
                f"the package's sources differ from the current code's (fingerprint {now[:12]})"
            )
            check = RESULTS / f"reproduce_check_{name}.json"
            rec = json.loads(check.read_text()) if check.is_file() else None
            if rec and rec["code_sha256"] == now:
                same = [k for k, v in rec["identical"].items() if v]
                verdict += (
                    f"; `{rec['command']}` re-trained seed {rec['seed']} of {len(rec['identical'])}"
                    f" labels with the current code: {len(same)} identical in every logged "
                    "number"
                    + (
                        f", differing: {', '.join(k for k in rec['identical'] if k not in same)}."
                        if len(same) < len(rec["identical"])
                        else "."
                    )
                )
            else:
                verdict += (
                    "; `benchmarks/reproduce_check.py` re-trains a seed and compares every "
                    "logged number."
                )
        lines.append(f"- {name}: {len(runs)} runs, {trained}; {verdict}")
    return [*lines, ""]


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Every number below was produced by the scripts in `benchmarks/` on the machine named "
        "with it; re-run them to check. `python benchmarks/run_all.py` runs everything and "
        "rewrites this file. The accuracy benchmarks use CPU-sized models on the generated "
        "imbalance suite; "
        "they do not reproduce the paper's full-size CREMA-D / Kinetics-Sounds / UCF-101 "
        "numbers (those need the datasets and a GPU: "
        "`src/mmbalance/configs/cremad_aim_resnet18.yaml`). AIM's default has PAM off "
        f"(docs/aim.md); the suite rows `aim` are the default, `{PAPER}` the paper's method.",
        "",
    ]
    suite = [n for n in SUITE if (RESULTS / f"suite_{n}.json").is_file()]
    if suite:
        lines += [
            "## Accuracy: every method on the imbalance suite",
            "",
            "The benchmarks of `docs/benchmarks.md` (and the regression benchmark of "
            "docs/regression.md), on which joint training starves a modality (each section's "
            "certificate says by how much). Each run selects its epoch on the validation split; "
            "numbers are test accuracy (%) at that epoch (R² x 100 for the regression), mean ± "
            "sample std over seeds; per-modality columns are linear probes on the frozen "
            "encoder features of the multimodal model (ridge probes for the regression; "
            "unimodal rows: the modality trained alone). Paired differences with joint "
            "training are per seed, with a 95% t-interval. Cost per sample: training FLOPs per "
            "sample and wall time per run (2 runs at a time, one core each). Greedy's encoders "
            "exchange information through MMTM before pooling, so its probes read features "
            "that already carry the other modality.",
            "",
        ]
        for n in suite:
            lines += suite_section(n, json.loads((RESULTS / f"suite_{n}.json").read_text()))
    lines += code_section()
    speed = RESULTS / "suite_speed.json"
    if speed.is_file():
        data = json.loads(speed.read_text())
        lines += [
            "## Speed of the suite",
            "",
            f"Command: `{data['command']}`. Machine: {_machine(data['machine'])}; one run at a "
            "time with every core, data already generated.",
            "",
            "| run | wall time (s) |",
            "|---|---|",
            *(f"| {k} | {v:.1f} |" for k, v in data["wall_seconds"].items()),
            "",
        ]
    lines += convergence_section()
    lines += file_section(
        "pam_study.md",
        "Where does PAM add? (the PAM study, validation)",
        "`benchmarks/pam_study.py`, conditions `benchmarks/pam_study/conditions.yaml`; "
        "docs/aim-investigation.md step 9 reads it.",
    )
    for name, title in (
        ("aim_cost.json", "at CREMA-D shapes"),
        ("aim_cost_suite.json", "at the suite's digits_av shapes"),
    ):
        cost = RESULTS / name
        if cost.is_file():
            if name == "aim_cost.json":
                lines += ["## Cost: AIM relative to joint training", ""]
            lines += cost_section(json.loads(cost.read_text()), title)
    lines += file_section(
        "timm_av.md",
        "AIM on other architectures: timm backbones on digits_av",
        "`benchmarks/timm_av.py` (grids `benchmarks/timm/grid_av_{cnn,vit}.yaml`; timm needs a "
        "torchvision built for the installed torch, docs/encoders.md: these runs used the torch "
        "named below).",
    )
    lines += file_section(
        "regression_tuning.md",
        "AIM's regression form (validation)",
        "`benchmarks/aim_tuning.py --grids regression --benchmarks reg`; docs/regression.md "
        "reads it. Accuracy columns are R² x 100 for this benchmark.",
    )
    figures = RESULTS / "aim_figures.json"
    if figures.is_file():
        data = json.loads(figures.read_text())
        name = data["benchmark"]
        lines += [
            "## The paper's analyses on the suite",
            "",
            f"Command: `{data['command']}`. Seeds {', '.join(map(str, data['seeds']))} "
            "(curves and bars are means over them).",
            "",
            f"- Fig. 5a, `results/figures/fig5a_{name}.png` (the paper's method, PAM on): "
            "last-epoch scores of the original blocks (s) and the auxiliary blocks (s~), per "
            "depth: "
            + "; ".join(
                f"{m}: s "
                + "/".join(f"{x:.2f}" for x in v["s"])
                + ", s~ "
                + "/".join(f"{x:.2f}" for x in v["saux"])
                for m, v in data["fig5a"].items()
            )
            + ".",
            f"- Fig. 6, `results/figures/fig6_{name}.png`: alpha_d (Eq. 14) at the last epoch, "
            "AIM (the default) vs joint training (AIM with lambda_mod 0 and split_ce 0, which "
            "logs alpha without modulating): "
            + "; ".join(
                f"{d}: {v['aim'][-1]:.3f} vs {v['joint'][-1]:.3f}" for d, v in data["fig6"].items()
            )
            + ".",
        ]
        if data.get("fig7"):
            f7 = data["fig7"]
            lines.append(
                "- Fig. 7, `results/figures/fig7_digits_vec.png`: fused test accuracy against E: "
                + ", ".join(f"E={e}: {m:.2f}" for e, m in zip(f7["E"], f7["aim_mean"], strict=True))
                + f" (joint {f7['joint']:.2f})."
            )
        lines.append("")
    sens = RESULTS / "aim_sensitivity.json"
    if sens.is_file():
        data = json.loads(sens.read_text())
        lines += [
            "## AIM's sensitivity (digits_vec)",
            "",
            f"Command: `{data['command']}`. Machine: {_machine(data['machine'])}. One option "
            "at a time, the others at their defaults; seeds "
            f"{', '.join(map(str, data['seeds']))}; test accuracy at the validation-selected "
            "epoch. "
            + (
                "AIM's other options at the defaults of that commit (`lambda_mod` "
                f"{d['lambda_mod']}, `dap_auto_scale` {d['dap_auto_scale']}, `start_epoch` "
                f"{d['start_epoch']}, `latent_dim` {d['latent_dim']}, `dam_normalize` "
                f"{str(d['dam_normalize']).lower()}, `split_ce` {_split(d)}, `pam` "
                f"{str(d.get('pam', True)).lower()})."
                if (d := data.get("aim_defaults"))
                else "The defaults were those of that commit."
            ),
            "",
            (RESULTS / "aim_sensitivity.md").read_text().strip(),
            "",
        ]
    for grids, title, step in (
        ("aim", "AIM's options on validation (tuning grids, archived)", "7"),
        ("aim_head", "What trains the head in phase 2 (tuning grids, archived)", "8"),
    ):
        tuning = RESULTS / f"{grids}_tuning.json"
        if not tuning.is_file():
            continue
        data = json.loads(tuning.read_text())
        text = (RESULTS / f"{grids}_tuning.md").read_text()
        body = text[text.index("### ") :].strip()  # the tables; the intro is said here
        lines += [
            f"## {title}",
            "",
            f"Measured at `{data['machine']['git_commit']}` with options since removed "
            "(`benchmarks/tuning/archive/README.md` says how to re-run them). Command: "
            f"`{data['command']}`. Machine: {_machine(data['machine'])}. Seeds 0, 1, 2, "
            "validation accuracy at the validation-selected epoch (the choice), test beside it "
            f"for the record; docs/aim-investigation.md step {step} reads it.",
            "",
            body,
            "",
        ]
    loader = RESULTS / "loader_throughput.json"
    if loader.is_file():
        lines += loader_section(json.loads(loader.read_text()))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
