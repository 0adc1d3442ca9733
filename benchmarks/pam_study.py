"""Where does PAM add to AIM? (issue #26; ``docs/aim-investigation.md``, step 9)

Each condition of ``benchmarks/pam_study/conditions.yaml`` is a ``mmbalance compare`` grid
(resumable) of joint training, AIM with PAM on every step (the paper) and AIM w/o PAM, plus the
variants a condition names, on seeds 0-2. The table pairs them by seed on the **validation**
split (accuracy at the validation-selected epoch): PAM's effect is ``PAM - w/o PAM``; the test
columns and the probes are printed for the record, never used to choose. For every run with
PAM it reads, at the last epoch (``metrics.csv``), what the auxiliary blocks are: ``s - s~``
(original minus auxiliary block score, Eq. 9, mean over depths), and the decoupler's health
(``aux_cos``: cosine of theta_b with W; ``aux_norm``: ||theta_b|| / ||W||; ``mask_std``;
``mask_lead``: the mask's mean over the leading half of the latent directions).

    python benchmarks/pam_study.py --workers 2
    python benchmarks/pam_study.py --only digits_av "digits_av, 45 epochs"
    python benchmarks/pam_study.py --no-run          # tabulate what has finished
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine

from mmbalance.config import parse_yaml
from mmbalance.reporting.compare import _slug, compare, finished_records, grid_from_dict
from mmbalance.reporting.stats import format_interval, paired_interval

CONDITIONS = ROOT / "pam_study" / "conditions.yaml"
REFERENCE = "aim w/o PAM"
HEALTH = ("aux_cos", "aux_comp_cos", "aux_norm", "mask_std", "mask_lead")


def grids(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each condition's grid, as the mapping a grid file holds."""
    out = {}
    for name, cond in spec["conditions"].items():
        methods = dict(spec["labels"])
        for extra in cond.get("extra", []):
            methods[extra] = spec["extra_labels"][extra]
        out[name] = {
            "experiment": cond["experiment"],
            "overrides": cond.get("overrides", []),
            "methods": methods,
            "seeds": spec["seeds"],
            "unimodal": bool(cond.get("unimodal", False)),
            "output_dir": str(ROOT / "runs" / "pam_study" / _slug(name)),
        }
    return out


def last_epoch_diagnostics(run_dir: str) -> dict[str, float]:
    """``s - s~`` per modality (mean over depths) and the decoupler's health, last epoch."""
    with (Path(run_dir) / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    last = rows[-1]
    gaps: dict[str, list[float]] = {}
    for key, value in last.items():
        if key.startswith("method_s_") and value not in ("", None):
            m, _depth = key[len("method_s_") :].rsplit("_d", 1)
            aux = last.get(key.replace("method_s_", "method_saux_"))
            if aux not in ("", None):
                gaps.setdefault(m, []).append(float(value) - float(aux))
    out = {f"s_minus_saux_{m}": statistics.fmean(v) for m, v in gaps.items()}
    for k in HEALTH:
        v = last.get(f"method_{k}")
        if v not in ("", None):
            out[k] = float(v)
    return out


def table(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per label: mean validation / test accuracy, probes, seconds; paired differences with
    w/o PAM and with joint; PAM's diagnostics."""
    by_label: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        by_label.setdefault(r["label"], {})[int(r["seed"])] = r
    modalities = sorted(next(iter(records))["evaluation"]["probe"])

    def metric(r: dict[str, Any], key: str) -> float:
        if key == "val":
            return float(r["val"]["val_acc"])
        if key == "test":
            return float(r["test"]["test_acc"])
        return float(r["evaluation"]["probe"][key]["test_acc"])

    out: dict[str, Any] = {"modalities": modalities, "labels": {}}
    for label, seeds in by_label.items():
        entry: dict[str, Any] = {"seeds": sorted(seeds)}
        for key in ("val", "test", *modalities):
            entry[key] = statistics.fmean(metric(r, key) for r in seeds.values())
        entry["seconds"] = statistics.fmean(float(r["seconds"]) for r in seeds.values())
        for ref_label, tag in ((REFERENCE, "vs_wo_pam"), ("joint", "vs_joint")):
            ref = by_label.get(ref_label, {})
            paired = sorted(s for s in seeds if s in ref)
            if label == ref_label or len(paired) < 2:
                continue
            for key in ("val", "test", *modalities):
                entry[f"{key}_{tag}"] = paired_interval(
                    [metric(seeds[s], key) for s in paired], [metric(ref[s], key) for s in paired]
                )
        if label.startswith("aim PAM"):
            diags = [last_epoch_diagnostics(r["run_dir"]) for r in seeds.values()]
            entry["diagnostics"] = {
                k: statistics.fmean(d[k] for d in diags)
                for k in diags[0]
                if all(k in d for d in diags)
            }
        out["labels"][label] = entry
    return out


def markdown(name: str, t: dict[str, Any]) -> str:
    mods = t["modalities"]
    lines = [
        f"### {name}",
        "",
        "| configuration | seeds | **val acc** | **val − w/o PAM** | val − joint | test acc | "
        + " | ".join(f"{m} probe − w/o PAM" for m in mods)
        + " | s − s~ | aux_cos | aux_norm | mask_std | mask_lead | time (s) |",
        "|" + "---|" * (11 + len(mods)),
    ]
    for label, e in t["labels"].items():

        def diff(key: str, entry: dict[str, Any] = e) -> str:
            d = entry.get(key)
            return format_interval(d) if d else ""

        d = e.get("diagnostics", {})
        gap = [v for k, v in d.items() if k.startswith("s_minus_saux_")]
        cells = [
            label,
            str(len(e["seeds"])),
            f"{100 * e['val']:.2f}",
            diff("val_vs_wo_pam"),
            diff("val_vs_joint"),
            f"{100 * e['test']:.2f}",
            *(diff(f"{m}_vs_wo_pam") for m in mods),
            f"{statistics.fmean(gap):.3f}" if gap else "",
            *(f"{d[k]:.2f}" if k in d else "" for k in ("aux_cos", "aux_norm", "mask_std")),
            f"{d['mask_lead']:.2f}" if "mask_lead" in d else "",
            f"{e['seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="these conditions (names in the file)")
    parser.add_argument("--no-run", action="store_true", help="tabulate finished runs only")
    args = parser.parse_args()
    spec = parse_yaml(CONDITIONS.read_text())
    all_grids = grids(spec)
    unknown = [n for n in args.only or [] if n not in all_grids]
    if unknown:
        raise SystemExit(f"--only {unknown}: not a condition of {CONDITIONS}")
    path = RESULTS / "pam_study.json"
    payload: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    payload.setdefault("conditions", {})
    for name, raw in all_grids.items():
        if args.only and name not in args.only:
            continue
        grid = grid_from_dict(raw, ROOT, f"{CONDITIONS}: {name}")
        if not args.no_run:
            print(f"== {name}", flush=True)
            compare(grid, workers=args.workers)
        records = [r for r in finished_records(grid) if "failed" not in r]
        if records:
            payload["conditions"][name] = table(name, records)
    payload["machine"] = machine()
    payload["command"] = "python benchmarks/pam_study.py --workers 2"
    order = [n for n in all_grids if n in payload["conditions"]]
    intro = (
        "PAM's effect on AIM, condition by condition: AIM with PAM on every step (the paper) "
        "against AIM w/o PAM, same everything else, on the **validation** split (accuracy at "
        "the validation-selected epoch, mean over seeds 0-2; differences paired by seed, mean "
        "[95% CI], points); test accuracy and test probes for the record. Diagnostics of the "
        "PAM runs at the last epoch: s − s~ (original minus auxiliary block score, Eq. 9, mean "
        "over depths and modalities), aux_cos (cosine of theta_b with W), aux_norm "
        "(||theta_b|| / ||W||), mask_std, mask_lead (mean mask over the leading half of the "
        "latent directions). Conditions: `benchmarks/pam_study/conditions.yaml`.\n\n"
        f"`{payload['command']}` — {payload['machine']['cpu']}, "
        f"{payload['machine']['cores']} cores, torch {payload['machine']['torch']}, "
        f"mmbalance @ {payload['machine']['git_commit']}\n\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    body = "\n".join(markdown(n, payload["conditions"][n]) for n in order)
    (RESULTS / "pam_study.md").write_text(intro + body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
