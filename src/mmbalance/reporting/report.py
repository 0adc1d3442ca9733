"""``mmbalance report DIR``: one self-contained HTML page (figures inlined) and its PNGs.

For a ``compare`` folder: the comparison table; per method, per-modality accuracy over
training against the unimodal-only runs (Fig. 1); for AIM runs, per-depth imbalance (Fig. 6),
original vs auxiliary blocks (Fig. 5) and prototype orthogonality (Fig. 4); accuracy against the
swept hyper-parameter (Fig. 7); validation accuracy against training FLOPs (Fig. 8). For a single
run folder: the run's figures and its metrics. PNGs go to ``DIR/report/``, the page to
``DIR/report/index.html``; it references nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmbalance.errors import ConfigError
from mmbalance.reporting.plots import (
    plot_aux_vs_original,
    plot_depth_imbalance,
    plot_modality_accuracy,
    plot_orthogonality,
    primary_metric,
)
from mmbalance.training.logger import read_rows

CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px}"
    "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}"
    "figure{margin:1.5em 0}figcaption{color:#555;font-size:14px}"
    "p.caption{color:#555;font-size:14px;margin:.2em 0 .5em}"
)


# Marks on <body> how many figures the browser decoded ("7/7"): broken images show at a glance
# and a headless browser test can read it from the DOM.
IMAGE_CHECK = (
    "window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.imagesLoaded="
    "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;})"
)


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


# The sections of a compare folder's results.md, by the sentence that opens each: every table
# gets its own heading and header row (one block of rows with three column sets reads as one).
SECTION_TITLES = (
    ("Test metrics", "Results"),
    ("Paired by seed", "Paired differences with joint training"),
    ("Imbalance certificate", "Imbalance certificate"),
)


def _inline(text: str) -> str:
    """Escape, then Markdown's ``**bold**`` and ```code``` spans."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _table_html(rows: list[str]) -> str:
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    cells = [r for r in cells if not all(set(c) <= set("-: ") for c in r)]  # the --- rule
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _markdown_html(text: str) -> str:
    """results.md as HTML: each table under its own ``<h3>`` (from :data:`SECTION_TITLES`, by
    the paragraph that introduces it) with a ``<thead>`` header row; paragraphs and lists as
    such."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        kind = "table" if line.startswith("|") else "list" if line.startswith("- ") else "text"
        if not line.strip():
            blocks.append([])
            continue
        if blocks and blocks[-1] and blocks[-1][0] == kind:
            blocks[-1].append(line)
        else:
            blocks.append([kind, line])
    parts: list[str] = []
    caption = ""
    tables = 0
    for block in (b for b in blocks if b):
        kind, lines = block[0], block[1:]
        if kind == "table":
            tables += 1
            title = next((t for lead, t in SECTION_TITLES if caption.startswith(lead)), None)
            parts.append(f"<h3>{html.escape(title or f'Table {tables}')}</h3>")
            if caption:
                parts.append(f"<p class='caption'>{_inline(caption)}</p>")
            parts.append(_table_html(lines))
            caption = ""
            continue
        if caption:  # a paragraph no table followed
            parts.append(f"<p>{_inline(caption)}</p>")
            caption = ""
        if kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline(x[2:])}</li>" for x in lines) + "</ul>")
        else:
            caption = " ".join(lines)
    if caption:
        parts.append(f"<p>{_inline(caption)}</p>")
    return "".join(parts)


def _try(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
        return True
    except ConfigError:
        return False  # that diagnostic was not logged by this run's method


def _sweep_figure(results: dict[str, Any], out: Path) -> bool:
    rows = [r for r in results["rows"] if r["sweep_value"] is not None]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    metric = rows[0].get("metric", "acc")
    for label in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == label), key=lambda r: r["sweep_value"])
        mine = [r for r in mine if r[f"test_{metric}"] is not None]
        xs = [r["sweep_value"] for r in mine]
        ax.errorbar(
            xs,
            [100 * r[f"test_{metric}"][0] for r in mine],
            yerr=[100 * r[f"test_{metric}"][1] for r in mine],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set(
        xlabel=results["sweep_key"],
        ylabel="test accuracy (%)" if metric == "acc" else "test R² (x100)",
        title="Accuracy vs swept hyper-parameter (Fig. 7)",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def _flops_figure(results: dict[str, Any], out: Path) -> bool:
    """Validation accuracy (mean over seeds) against cumulative training FLOPs (or epochs)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    finished = [r for r in results["runs"] if "failed" not in r]
    use_flops = all(r["flops_per_sample"] for r in finished)
    groups: dict[str, list[dict[str, Any]]] = {}
    short = (results.get("sweep_key") or "").split(".")[-1]
    for r in finished:
        value = r["sweep_value"]
        label = r["label"] if value is None else f"{r['label']} ({short}={value})"
        groups.setdefault(label, []).append(r)
    for label, runs in groups.items():
        curves = [read_rows(Path(r["run_dir"]) / "metrics.jsonl") for r in runs]
        n = min(len(c) for c in curves)
        key = f"val_{primary_metric(curves[0])}"
        acc = [
            100 * statistics.mean(c[e][key] for c in curves)
            if all(c[e].get(key) is not None for c in curves)
            else float("nan")
            for e in range(n)
        ]
        per_epoch = runs[0]["flops_per_sample"] * runs[0]["train_samples"] if use_flops else 1
        ax.plot([per_epoch * (e + 1) for e in range(n)], acc, label=label)
    ax.set(
        xlabel="training FLOPs (steady-state cost per step x steps)" if use_flops else "epoch",
        ylabel=f"validation {'R² (x100)' if key == 'val_r2' else 'accuracy (%)'}",
        title="Accuracy vs training cost (Fig. 8)",
    )
    if use_flops:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def _run_figures(run_dir: Path, out: Path, tag: str, refs: dict[str, Path]) -> list[str]:
    parts = []
    target = out / f"{tag}_modality_accuracy.png"
    plot_modality_accuracy(run_dir, target, refs)
    parts.append(_figure(target, f"{tag}: per-modality validation accuracy (Fig. 1)"))
    for name, fn, caption in (
        ("depth_imbalance", plot_depth_imbalance, "per-depth imbalance alpha_d (Fig. 6)"),
        ("aux_vs_original", plot_aux_vs_original, "original vs auxiliary blocks (Fig. 5)"),
        ("orthogonality", plot_orthogonality, "prototype orthogonality (Fig. 4)"),
    ):
        target = out / f"{tag}_{name}.png"
        if _try(fn, run_dir, target):
            parts.append(_figure(target, f"{tag}: {caption}"))
    return parts


def _compare_body(folder: Path, out: Path) -> list[str]:
    results = json.loads((folder / "results.json").read_text())
    parts = ["<h2>Comparison</h2>", _markdown_html((folder / "results.md").read_text())]
    first: dict[str, dict[str, Any]] = {}
    for r in sorted(results["runs"], key=lambda r: r["seed"]):
        if "failed" not in r:
            first.setdefault(r["label"], r)
    refs = {
        label.removeprefix("unimodal "): Path(r["run_dir"])
        for label, r in first.items()
        if label.startswith("unimodal ")
    }
    if _flops_figure(results, out / "accuracy_vs_flops.png"):
        parts.append(_figure(out / "accuracy_vs_flops.png", "Accuracy vs training cost (Fig. 8)"))
    if _sweep_figure(results, out / "sweep.png"):
        parts.append(_figure(out / "sweep.png", f"Accuracy vs {results['sweep_key']} (Fig. 7)"))
    for label, r in first.items():
        if label.startswith("unimodal "):
            continue
        parts.append(f"<h2>{html.escape(label)} (seed {r['seed']})</h2>")
        tag = "".join(c if c.isalnum() else "_" for c in label)
        parts += _run_figures(Path(r["run_dir"]), out, tag, refs)
    return parts


def _run_body(run_dir: Path, out: Path) -> list[str]:
    summary_file = run_dir / "summary.json"
    parts = []
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        rows = [("best epoch (validation)", summary["best_epoch"] + 1)]
        rows += sorted(summary["val"].items()) + sorted(summary["test"].items())
        parts.append(
            "<h2>Metrics</h2><table>"
            + "".join(
                f"<tr><td>{html.escape(str(k))}</td><td>{v:.4f}</td></tr>"
                if isinstance(v, float)
                else f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>"
                for k, v in rows
            )
            + "</table>"
        )
    return parts + _run_figures(run_dir, out, "run", {})


def build_report(folder: str | Path) -> Path:
    """Write ``folder/report/index.html`` (and PNGs); returns the page's path."""
    folder = Path(folder)
    if (folder / "results.json").is_file():
        kind = "comparison"
        body_fn: Callable[[Path, Path], list[str]] = _compare_body
    elif (folder / "metrics.jsonl").is_file():
        kind, body_fn = "run", _run_body
    else:
        raise ConfigError(
            f"report: {str(folder)!r} is neither a compare folder (results.json) nor a run "
            "folder (metrics.jsonl)"
        )
    out = folder / "report"
    out.mkdir(exist_ok=True)
    body = body_fn(folder, out)
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>mmbalance {kind}: "
        f"{html.escape(folder.name)}</title><style>{CSS}</style></head><body>"
        f"<h1>mmbalance {kind}: {html.escape(folder.name)}</h1>"
        + "".join(body)
        + f"<script>{IMAGE_CHECK}</script></body></html>"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
