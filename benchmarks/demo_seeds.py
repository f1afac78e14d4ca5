"""``ssl-cyto demo`` over several pretraining seeds, every one scored on the seed-0 test split.

For each method and seed: ``ssl-cyto demo --data DATA --method M --seed S --minutes MIN`` (one run at a
time, so each has the machine to itself), then ``ssl-cyto probe EMB --fast --seed 0
--no-near-duplicates`` so every seed is scored on the same seed-0 ``holdout20`` test cells (the demo's
own probe uses the demo's seed for its split). The small artefacts (report, learning curve, gallery,
UMAP, the seed-0 probe report) are copied to ``RESULTS/<method>/seed_<S>/``; ``RESULTS/seeds.json``
and ``RESULTS/seeds.md`` hold the linear and kNN-20 balanced accuracies, the paired differences to the
colour histogram and to random weights with their 95 % bootstrap intervals, per seed and averaged::

    python benchmarks/demo_seeds.py --data ../shared/data/pbc_subset --methods simclr dino \\
        --seeds 0 1 2 --minutes 10 --results results/pbc

A recipe change is compared with the runs of the recipe before it, seed by seed on the same test cells:
``--compare-to OLD_WORK`` (the ``--work`` folder of the earlier runs, e.g. made from a checkout before
the change) adds ``--baseline previous=OLD_WORK/<method>_s<seed>/emb`` to each probe, so every row gets
the paired difference to the previous recipe with its bootstrap interval; ``--label`` names the rows
(default: the method). Rows of other labels or seeds already in ``RESULTS/seeds.json`` are kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ssl_cyto.formats.embeddings import is_embedding_folder
from ssl_cyto.formats.provenance import hardware_summary

ARGV = sys.argv[1:]
KEEP = ["report.md", "learning_curve.png", "gallery.png", "stages.json", "umap"]
MODELS = {"colour": "colour histogram", "random": "random weights"}
PREVIOUS = "previous"


def run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def one(args: argparse.Namespace, method: str, seed: int) -> dict:
    work = Path(args.work) / f"{method}_s{seed}"
    if work.exists():
        shutil.rmtree(work)
    t0 = time.time()
    demo = ["ssl-cyto", "demo", "--data", args.data, "--method", method, "--seed", str(seed)]
    demo += ["--minutes", f"{args.minutes:g}", "--out", str(work)]
    run(demo)
    wall = time.time() - t0
    probe_out = work / "probe_seed0"
    probe_cmd = ["ssl-cyto", "probe", str(work / "emb"), "--fast", "--seed", "0", "--no-near-duplicates"]
    previous = Path(args.compare_to) / f"{method}_s{seed}" / "emb" if args.compare_to else None
    if previous is not None:
        if not is_embedding_folder(previous):
            raise SystemExit(
                f"--compare-to: no embedding folder at {previous}; run the earlier recipe there first"
            )
        probe_cmd += ["--baseline", f"{PREVIOUS}={previous}"]
    run([*probe_cmd, "--out", str(probe_out)])
    label = args.label or method
    dest = Path(args.results) / label / f"seed_{seed}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in KEEP:
        src = work / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy2(src, dest / name)
    shutil.copytree(probe_out, dest / "probe_seed0")
    probe = json.loads((probe_out / "probe.json").read_text())
    task_name, task = next(iter(probe["tasks"].items()))
    main = probe["main_model"]
    row: dict = {"method": label, "seed": seed, "task": task_name, "demo_seconds": round(wall, 1)}
    row["command"] = " ".join(demo)
    row["made_by"] = "python benchmarks/demo_seeds.py " + " ".join(ARGV)
    row["hardware"] = hardware_summary()
    models = {**MODELS, PREVIOUS: PREVIOUS} if previous is not None else MODELS
    for clf in ("linear", "knn20"):
        row[clf] = task["metrics"][main][clf]["balanced_accuracy"]
        for key, model in models.items():
            name = next(m for m in task["vs_baselines"] if m.startswith(model))
            row[f"{clf}_minus_{key}"] = task["vs_baselines"][name][clf]["balanced_accuracy"]
            row[f"{clf}_{key}"] = task["metrics"][name][clf]["balanced_accuracy"]
    return row


def fmt(d: dict, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(d['estimate'])} [{f.format(d['low'])}, {f.format(d['high'])}]"


def render(rows: list[dict], header: str) -> str:
    lines = [header, ""]
    lines += [
        "Made by "
        + ", then ".join(f"`{m}`" for m in dict.fromkeys(r["made_by"] for r in rows))
        + " (each row: `"
        + rows[0]["command"].split(" --method")[0]
        + " --method M --seed S ...`, then `ssl-cyto probe EMB --fast --seed 0 --no-near-duplicates`),",
        "one run at a time, on "
        + "; then ".join(dict.fromkeys(r["hardware"] for r in rows))
        + "; data: `"
        + rows[0]["command"].split("--data ")[1].split(" ")[0]
        + "`. Balanced accuracy, 95 % bootstrap intervals.",
        "",
    ]
    lines += [
        "| method | seed | linear bal. acc. | minus colour | minus random | kNN-20 bal. acc. | kNN-20 minus colour |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['seed']} | {fmt(r['linear'])} | {fmt(r['linear_minus_colour'], True)} "
            f"| {fmt(r['linear_minus_random'], True)} | {fmt(r['knn20'])} | {fmt(r['knn20_minus_colour'], True)} |"
        )
    lines.append("")
    paired = [r for r in rows if "knn20_minus_previous" in r]
    if paired:
        lines += [
            "Paired with the previous recipe's run of the same seed (`--compare-to`), same test cells:",
            "",
            "| method | seed | linear minus previous | kNN-20 minus previous |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['method']} | {r['seed']} | {fmt(r['linear_minus_previous'], True)} "
            f"| {fmt(r['knn20_minus_previous'], True)} |"
            for r in paired
        ]
        lines.append("")
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        mean = sum(r["linear_minus_colour"]["estimate"] for r in mine) / len(mine)
        above = sum(r["linear_minus_colour"]["low"] > 0 for r in mine)
        contains = sum(r["linear_minus_colour"]["high"] >= 0 for r in mine)
        lines.append(
            f"- **{method}**: mean linear bal. acc. minus colour histogram over {len(mine)} seeds "
            f"{mean:+.3f}; interval above 0 in {above} of {len(mine)} seeds, containing or above 0 in "
            f"{contains} of {len(mine)}; colour histogram itself "
            f"{mine[0]['linear_colour']['estimate']:.3f} (the same cells and split every seed)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/pbc_subset")
    p.add_argument("--methods", nargs="+", default=["simclr", "dino"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--results", default="results/pbc")
    p.add_argument("--work", default="runs/demo_seeds", help="the demos' full output folders")
    p.add_argument("--header", default="# Demo over pretraining seeds, seed-0 test split")
    p.add_argument(
        "--compare-to", default=None, help="--work folder of the previous recipe's runs (paired rows)"
    )
    p.add_argument(
        "--label", default=None, help="name of these rows (default: the method); one method with it"
    )
    args = p.parse_args()
    if args.label and len(args.methods) != 1:
        p.error("--label names the rows of one method: give one --methods")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads((out / "seeds.json").read_text()) if (out / "seeds.json").exists() else []
    for method in args.methods:
        for seed in args.seeds:
            row = one(args, method, seed)
            rows = [r for r in rows if (r["method"], r["seed"]) != (row["method"], seed)] + [row]
            (out / "seeds.json").write_text(json.dumps(rows, indent=2))
            (out / "seeds.md").write_text(render(rows, args.header))


if __name__ == "__main__":
    main()
