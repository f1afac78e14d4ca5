"""Recipe selection at a CPU budget, scored on a validation part of the probe's training cells.

One invocation = one recipe (a method's demo config plus ``--set`` overrides) x one or more
pretraining seeds, each trained for ``--train-seconds`` of wall time, exported and embedded; the score
is the probe's classifiers (fast linear probe: z-scored, C = 0.1; weighted cosine kNN-20) on a
*validation* part: the training cells of the probe's seed-0 ``holdout20`` split, cut again 80/20 by
the same seeded stratified split (seed 1). The probe's test cells are never looked at, so a recipe
chosen here can be reported once on the seed-0 test split (``ssl-cyto demo`` + ``ssl-cyto probe
--seed 0``). The colour-histogram floor is scored on the same validation part.

Each run appends one JSON line (recipe, overrides, seed, steps, images/s, validation metrics, the
colour floor's) to ``OUT/recipes.jsonl``; ``--table`` prints them as a markdown table::

    python benchmarks/recipes.py --data ../shared/data/pbc_subset --out runs/recipes \\
        --method simclr --name base --seeds 0 --train-seconds 240
    python benchmarks/recipes.py --out runs/recipes --name s4_48 --method simclr \\
        --set model.init_args.input_size=48 --set 'model.init_args.backbone_kwargs={width: 32, depth: 4, stem_stride: 4}'
    python benchmarks/recipes.py --out runs/recipes --table

The cells are scanned and packed once per ``OUT`` (as the demo packs them: shorter side 80 px).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from ssl_cyto.data.packing import pack
from ssl_cyto.data.scanning import scan
from ssl_cyto.data.sources import detect_source
from ssl_cyto.demo.budget import max_time
from ssl_cyto.embedding.runner import embed
from ssl_cyto.evaluation.baselines import compute_baseline
from ssl_cyto.evaluation.classifiers import knn_neighbours, linear_probe, standardise_features
from ssl_cyto.evaluation.metrics import accuracy, balanced_accuracy
from ssl_cyto.evaluation.protocol import TEMPERATURE
from ssl_cyto.evaluation.splits import labelled, load_embeddings, make_split
from ssl_cyto.formats.catalog import write_catalog
from ssl_cyto.models.knn import weighted_vote
from ssl_cyto.tasks.registry import demo_config
from ssl_cyto.training.export import export_checkpoint
from ssl_cyto.training.fit import run_fit

PACK_SIZE = 80


def prepare(data: str, out: Path, workers: int) -> Path:
    """Scan and pack ``data`` into ``out/shards`` once; returns the shard folder."""
    shards = out / "shards"
    if (shards / "index.json").exists():
        return shards
    out.mkdir(parents=True, exist_ok=True)
    catalog = scan([(detect_source(data), str(Path(data).resolve()))])
    write_catalog(catalog, out / "catalog.parquet")
    pack(out / "catalog.parquet", shards, shard_size=500, workers=workers, image_size=PACK_SIZE, seed=0)
    return shards


def validation_parts(cells) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (fit, validation) inside the training cells of the seed-0 holdout20 split."""
    lab = cells[labelled(cells)].copy()
    split = make_split(lab, "holdout20", seed=0)
    train_ids = set(split.loc[split["split"] == "train", "cell_id"])
    train = lab[lab["cell_id"].isin(train_ids)]
    inner = make_split(train, "holdout20", seed=1)
    role = dict(zip(inner["cell_id"], inner["split"], strict=True))
    pos = {cid: i for i, cid in enumerate(cells["cell_id"])}
    fit = np.array([pos[c] for c in train["cell_id"] if role[c] == "train"])
    val = np.array([pos[c] for c in train["cell_id"] if role[c] == "test"])
    return fit, val


def score(emb_dir: Path) -> dict[str, float]:
    """Fast linear probe and kNN-20 on the validation part (features z-scored on the fit part)."""
    folder = load_embeddings(emb_dir)
    x, cells = folder.vectors, folder.cells
    fit, val = validation_parts(cells)
    classes = sorted(set(cells["label"].iloc[fit]))
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code.get(c, -1) for c in cells["label"]])
    xtr, xva = standardise_features(x[fit], x[val])
    lin, _ = linear_probe(xtr, y[fit], xva, len(classes), fast=True, standardise=False)
    sims, idx = knn_neighbours(xtr, xva, 20)
    knn = np.asarray(weighted_vote(sims, y[fit][idx], len(classes), TEMPERATURE), dtype=np.int64)
    return {
        "linear_bacc": balanced_accuracy(y[val], lin, len(classes)),
        "linear_acc": accuracy(y[val], lin, len(classes)),
        "knn20_bacc": balanced_accuracy(y[val], knn, len(classes)),
        "n_fit": int(len(fit)),
        "n_val": int(len(val)),
    }


def throughput(train_root: Path) -> tuple[int, float | None]:
    """(last global step, median training images/s) from the run's CSV log."""
    steps, rates = 0, []
    for f in glob.glob(str(train_root / "**" / "metrics.csv"), recursive=True):
        with open(f) as fh:
            for row in csv.DictReader(fh):
                if row.get("step"):
                    steps = max(steps, int(float(row["step"])))
                if row.get("throughput/images_per_s"):
                    rates.append(float(row["throughput/images_per_s"]))
    return steps, (float(np.median(rates)) if rates else None)


def run_one(args: argparse.Namespace, shards: Path, seed: int) -> dict:
    run_dir = Path(args.out) / "runs" / f"{args.name}_s{seed}"
    fit_args = ["--config", str(demo_config(args.method)), "--data.data", str(shards)]
    fit_args += ["--data.num_workers", str(args.workers), "--seed_everything", str(seed)]
    fit_args += ["--trainer.default_root_dir", str(run_dir / "train"), "--run.resume", "false"]
    fit_args += ["--trainer.max_time", max_time(args.train_seconds), "--trainer.enable_progress_bar", "false"]
    for item in args.set:
        key, _, value = item.partition("=")
        fit_args += [f"--{key}", value]
    t0 = time.time()
    ckpt = run_fit(fit_args)
    train_s = time.time() - t0
    backbone = export_checkpoint(ckpt, run_dir / "backbone")
    emb = run_dir / "emb"
    embed(str(backbone), str(shards), emb, num_workers=args.workers)
    folder = load_embeddings(emb)
    model_meta, embed_meta = folder.model, folder.embed
    colour = compute_baseline("colour", emb, model_meta, embed_meta, seed=0)
    steps, rate = throughput(run_dir / "train")
    row = {
        "recipe": args.name,
        "method": args.method,
        "set": args.set,
        "seed": seed,
        "train_seconds": round(train_s, 1),
        "steps": steps,
        "images_per_s": rate,
        "val": score(emb),
        "colour_val": score(colour),
        "data": args.data,
        "command": "python benchmarks/recipes.py " + " ".join(sys.argv[1:]),
    }
    if Path(args.out).is_absolute():  # an absolute scratch folder is recorded as $OUT: no machine path
        row["command"] = row["command"].replace(str(args.out), "$OUT")
    with open(Path(args.out) / "recipes.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), file=sys.stderr)
    return row


def table(out: Path) -> str:
    lines = [
        "| recipe | method | seed | steps | img/s | val linear bal. acc. | colour | diff | val kNN-20 bal. acc. |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for raw in (out / "recipes.jsonl").read_text().splitlines():
        r = json.loads(raw)
        v, c = r["val"], r["colour_val"]
        rate = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "-"
        lines.append(
            f"| {r['recipe']} | {r['method']} | {r['seed']} | {r['steps']} | {rate} | {v['linear_bacc']:.3f} "
            f"| {c['linear_bacc']:.3f} | {v['linear_bacc'] - c['linear_bacc']:+.3f} | {v['knn20_bacc']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/pbc_subset", help="image folder (any source layout)")
    p.add_argument("--out", default="runs/recipes")
    p.add_argument("--method", default="simclr")
    p.add_argument("--name", default="base", help="recipe name (for the table)")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE fit override (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--train-seconds", type=float, default=240.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print OUT/recipes.jsonl as a table and exit")
    args = p.parse_args()
    out = Path(args.out)
    if args.table:
        print(table(out))
        return
    shards = prepare(args.data, out, args.workers)
    yaml.safe_load(demo_config(args.method).read_text())  # fail early on a broken config
    for seed in args.seeds:
        run_one(args, shards, seed)


if __name__ == "__main__":
    main()
