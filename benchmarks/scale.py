"""How the pipeline's stages grow with the number of cells: 10k, 50k and 190k.

The cells are made from the real PBC subset (4,800 cells, 8 classes) by perturbed copies under new
names (a random flip / 90-degree turn, a small crop and brightness change, JPEG re-encoded): the
images are real cells and the labels their folder, but copies are not new cells, so **no quality
figure is taken from these runs** - only wall time and peak memory.

Each stage is one ``ssl-cyto`` command in its own subprocess, every option written out; its wall
time, the peak resident memory of its whole process tree (polled from ``/proc`` every 0.2 s) and the
mean 1-minute load average of the machine while it ran are recorded, with the CPU the rest of the
machine used meanwhile (``other work``, in cores; the load average counts the stage itself). A row
with other work above 0.2 cores shared the cores: rerun it (``--stages NAME``). A stage that does not finish within
what is left of ``--budget-minutes`` is killed and reported as "did not finish", never
extrapolated; the later stages of that size are then skipped.

Usage (from the repository root)::

    python benchmarks/scale.py --work /tmp/scale --sizes 10000 50000 190000 --budget-minutes 120
    # rerun only some stages on the pack and embedding already in --work (rows replaced in scale.json)
    python benchmarks/scale.py --work /tmp/scale --sizes 190000 --stages "probe --fast" probe dedup umap
    python benchmarks/scale.py --render            # results/benchmarks/scale.md from scale.json

Stages (:func:`stages`): ``data scan`` (folder source), ``pack`` (80 px JPEG shards, 2 workers; image
hashes computed here), ``embed`` (``tiny_cnn``, seeded random weights, 64 px, 2 workers), ``index
build`` (flat and HNSW), ``probe --fast`` (holdout20, fixed C, 200 bootstrap replicates, no
baselines, near-duplicate check on the stored hashes), ``probe`` in its default mode (C sweep,
label efficiency, 1,000 replicates, both baselines embedded in one pass, near-duplicate check),
``dedup`` and ``umap`` (every cell drawn; fitted on ``--max-points``). One pack and one embedding
per size serve every later stage. ``--cells-dir`` uses an existing image folder instead of the PBC
copies (the slow test runs every stage on generated cells that way).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "benchmarks"
DEFAULT_PBC = REPO.parent / "shared" / "data" / "pbc_subset"
UMAP_MAX_POINTS = 20000
OTHER_MAX = 0.2  # cores of other work above which a row is marked for a rerun


def make_cells(pbc: Path, out: Path, n: int, seed: int = 0) -> Path:
    """``n`` perturbed copies of the PBC cells in an ImageFolder tree ``out/<class>/<name>.jpg``."""
    done = out / ".complete"
    if done.exists() and done.read_text() == f"{n} round-robin":
        return out
    shutil.rmtree(out, ignore_errors=True)
    by_class = [sorted(d.glob("*.jpg")) for d in sorted(pbc.iterdir()) if d.is_dir()]
    # round-robin over the classes, so every size holds every class in the PBC proportions
    sources = [files[i] for i in range(max(map(len, by_class))) for files in by_class if i < len(files)]
    rng = random.Random(seed)
    t0 = time.monotonic()
    for i in range(n):
        src = sources[i % len(sources)]
        img = Image.open(src).convert("RGB")
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        img = img.rotate(90 * rng.randrange(4))
        w, h = img.size
        dx, dy = rng.randrange(0, max(1, w // 20)), rng.randrange(0, max(1, h // 20))
        img = img.crop((dx, dy, w - rng.randrange(0, max(1, w // 20)), h - dy))
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.95, 1.05))
        target = out / src.parent.name / f"copy{i:06d}_{src.stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        img.save(target, quality=90)
        if (i + 1) % 10000 == 0:
            rate = (i + 1) / (time.monotonic() - t0)
            print(f"  made {i + 1}/{n} cells ({rate:.0f}/s, ETA {(n - i - 1) / rate:.0f}s)", flush=True)
    done.write_text(f"{n} round-robin")
    return out


def _tree_rss_kib(root: int) -> int:
    """Resident memory of ``root`` and all its descendants (Linux /proc), KiB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                parents[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        rss[int(d)] = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while being read
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss.get(p, 0) for p in tree)


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores; /proc/stat)."""
    with open("/proc/stat") as fh:
        f = [int(v) for v in fh.readline().split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's ended, waited-for children (their own waited
    descendants, e.g. DataLoader workers, included)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_stage(cmd: list[str], timeout: float, log: Path) -> dict:
    """Run one stage; its wall time, peak tree RSS, mean load average, the other work on the machine
    meanwhile (busy CPU not spent by the stage, in cores) and whether it finished."""
    t0 = time.monotonic()
    busy0, own0 = _busy_cpu_s(), _children_cpu_s()
    loads = [os.getloadavg()[0]]

    def figures(status: str, peak: int) -> dict:
        wall = time.monotonic() - t0
        other = max(0.0, (_busy_cpu_s() - busy0) - (_children_cpu_s() - own0)) / max(wall, 1e-9)
        return {
            "status": status,
            "wall_s": round(wall, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "load_avg": round(sum(loads) / len(loads), 2),
            "other_cores": round(other, 2),
        }

    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_kib(proc.pid))
            loads.append(os.getloadavg()[0])
            if time.monotonic() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return figures("did not finish", peak)
            time.sleep(0.2)
    return figures("ok" if proc.returncode == 0 else f"failed (exit {proc.returncode}, see {log.name})", peak)


def stages(work: Path, cells: Path) -> list[tuple[str, list[str]]]:
    """Every stage with all of its options written out (one pack and one embedding serve the rest)."""
    s = [sys.executable, "-m", "ssl_cyto"]
    emb = work / "emb"
    return [
        ("scan", [*s, "data", "scan", f"folder:scale={cells}", "--out", str(work / "catalog.parquet")]),
        (
            "pack",
            [
                *s,
                "pack",
                "--catalog",
                str(work / "catalog.parquet"),
                "--out",
                str(work / "shards"),
                "--workers",
                "2",
                "--image-size",
                "80",
                "--format",
                "jpg",
                "--seed",
                "0",
            ],
        ),
        (
            "embed",
            [
                *s,
                "embed",
                "--model",
                "tiny_cnn",
                "--data",
                str(work / "shards"),
                "--out",
                str(emb),
                "--input-size",
                "64",
                "--workers",
                "2",
                "--batch-size",
                "256",
            ],
        ),
        ("index build (flat)", [*s, "index", "build", str(emb), "--kind", "flat"]),
        (
            "index build (hnsw)",
            [*s, "index", "build", str(emb), "--kind", "hnsw", "--out", str(work / "hnsw.faiss")],
        ),
        (
            "probe --fast",
            [
                *s,
                "probe",
                str(emb),
                "--protocol",
                "holdout20",
                "--fast",
                "--baselines",
                "none",
                "--seed",
                "0",
                "--n-boot",
                "200",
                "--out",
                str(work / "probe_fast"),
            ],
        ),
        (
            "probe",
            [
                *s,
                "probe",
                str(emb),
                "--protocol",
                "holdout20",
                "--baselines",
                "auto",
                "--seed",
                "0",
                "--n-boot",
                "1000",
                "--out",
                str(work / "probe"),
            ],
        ),
        (
            "dedup",
            [*s, "dedup", str(emb), "--threshold", "30", "--candidates", "10", "--out", str(work / "dedup")],
        ),
        (
            "umap",
            [
                *s,
                "umap",
                str(emb),
                "--max-points",
                str(UMAP_MAX_POINTS),
                "--seed",
                "0",
                "--out",
                str(work / "umap"),
            ],
        ),
    ]


def _save(out_json: Path, args: argparse.Namespace, rows: list[dict]) -> None:
    from ssl_cyto.formats.provenance import hardware_summary

    out_json.write_text(
        json.dumps(
            {
                "command": "python benchmarks/scale.py "
                + " ".join(sys.argv[1:]).replace(str(args.work), "$WORK"),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "hardware": hardware_summary(),
                "budget_minutes": args.budget_minutes,
                "note": args.note,
                "rows": rows,
            },
            indent=2,
        )
    )


def measure(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.budget_minutes * 60
    out_json = args.results / "scale.json"
    old = json.loads(out_json.read_text())["rows"] if args.stages and out_json.exists() else []
    rows: list[dict] = list(old)
    for n in args.sizes:
        cells = args.cells_dir or make_cells(args.pbc, args.work / f"cells_{n}", n)
        work = args.work / f"run_{n}"
        if not args.stages:
            shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        skipping = False
        for name, cmd in stages(work, cells):
            if args.stages and name not in args.stages:
                continue
            row = {"cells": n, "stage": name, "command": " ".join(cmd[2:]).replace(str(args.work), "$WORK")}
            left = deadline - time.monotonic()
            if skipping or left < 5:
                row.update(
                    status="not run (budget spent or an earlier stage did not finish)",
                    wall_s=None,
                    peak_rss_mib=None,
                    load_avg=None,
                    other_cores=None,
                )
            else:
                print(f"[{n} cells] {name} ...", flush=True)
                slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
                row.update(run_stage(cmd, left, work / f"{slug}.log"))
                skipping = row["status"] != "ok"
                print(
                    f"[{n} cells] {name}: {row['status']} in {row['wall_s']} s, peak {row['peak_rss_mib']} MiB, "
                    f"load {row['load_avg']}, other work {row['other_cores']} cores",
                    flush=True,
                )
            rows = [r for r in rows if (r["cells"], r["stage"]) != (n, name)] + [row]
            _save(out_json, args, rows)
    render(args.results)


WHY = {
    "probe": "the probe's exact kNN and retrieval compare every test cell with every training cell "
    "(FAISS IndexFlatIP: O(N_test x N_train) inner products, ~N^2/5 for holdout20)",
    "index build (hnsw)": "HNSW inserts each vector with a graph search whose cost grows with log N",
    "umap": "UMAP is fitted on --max-points cells; the rest are placed with UMAP.transform (linear in N)",
}


def render(results: Path = RESULTS) -> Path:
    data = json.loads((results / "scale.json").read_text())
    rows = data["rows"]
    lines = [
        "# Scale: wall time and peak memory per stage at "
        + ", ".join(f"{n:,}" for n in sorted({r["cells"] for r in rows}))
        + " cells",
        "",
        f"Command: `{data['command']}` ({data['date']}); budget {data['budget_minutes']} minutes in all.",
        f"Hardware: {data['hardware']}.",
        "",
        "Data: perturbed copies of the 4,800 real PBC cells under new names (flip / 90-degree turn, small "
        "crop and brightness change, JPEG q90), made by the script; copies are not new cells, so no quality "
        "figure is taken from these runs. Each stage is a fresh `ssl-cyto` process; peak memory is the "
        "resident memory of its whole process tree (loader workers included).",
    ]
    if data.get("note"):
        lines += ["", data["note"]]
    lines += [
        "",
        "Load: `load avg` is the mean 1-minute load average while the stage ran; it counts the stage's "
        "own processes, so a stage that keeps both cores busy shows about 2 on its own. `other work` is "
        "what the rest of the machine used meanwhile: busy CPU time (/proc/stat) less the stage's own "
        "CPU time (its process tree), per second of wall time, in cores. A row with more than "
        f"{OTHER_MAX} cores of other work (marked *) shared the cores and should be rerun.",
        "",
        "| cells | stage | status | wall s | s per 1k cells | peak RSS MiB | load avg | other work (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["cells"]):
        per = (
            f"{1000 * r['wall_s'] / r['cells']:.2f}"
            if r["wall_s"] is not None and r["status"] == "ok"
            else ""
        )
        wall = "" if r["wall_s"] is None else f"{r['wall_s']:.1f}"
        rss = "" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
        load = r.get("load_avg")
        load_s = "" if load is None else f"{load:.2f}"
        other = r.get("other_cores")
        other_s = "" if other is None else f"{other:.2f}" + (" *" if other > OTHER_MAX else "")
        lines.append(
            f"| {r['cells']:,} | {r['stage']} | {r['status']} | {wall} | {per} | {rss} | {load_s} | {other_s} |"
        )
    lines += ["", "## What grows faster than linearly", ""]
    by_stage: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            by_stage.setdefault(r["stage"], []).append(r)
    found = False
    for stage, rs in by_stage.items():
        rs = sorted(rs, key=lambda r: r["cells"])
        if len(rs) < 2:
            continue
        a, b = rs[0], rs[-1]
        growth = (b["wall_s"] / max(a["wall_s"], 1e-9)) / (b["cells"] / a["cells"])
        if growth > 1.3:
            found = True
            why = next((w for k, w in WHY.items() if stage.startswith(k)), "not analysed")
            lines.append(
                f"- **{stage}**: {a['cells']:,} -> {b['cells']:,} cells took {b['wall_s'] / a['wall_s']:.1f}x the "
                f"time for {b['cells'] / a['cells']:.1f}x the cells ({growth:.2f}x per cell). Why: {why}."
            )
    if not found:
        lines.append(
            "- No measured stage grew more than 1.3x faster than the number of cells between the sizes "
            "that finished."
        )
    unfinished = [r for r in rows if r["status"] != "ok"]
    if unfinished:
        lines += ["", "## Not finished", ""]
        lines += [f"- {r['cells']:,} cells, {r['stage']}: {r['status']}" for r in unfinished]
    lines.append("")
    out = results / "scale.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssl_cyto_scale"))
    parser.add_argument("--pbc", type=Path, default=DEFAULT_PBC)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000, 190000])
    parser.add_argument("--budget-minutes", type=float, default=90.0)
    parser.add_argument("--note", default="", help="a sentence about the conditions, put into the report")
    parser.add_argument("--render", action="store_true", help="only render scale.md from scale.json")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of scale.json / scale.md")
    parser.add_argument(
        "--cells-dir",
        type=Path,
        default=None,
        help="an image folder to use instead of PBC copies (every size then reads it)",
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        default=None,
        help="run only these stages, on the pack and embedding already in --work; their rows "
        "replace the old ones in scale.json",
    )
    args = parser.parse_args()
    if args.render:
        render(args.results)
        return 0
    args.results.mkdir(parents=True, exist_ok=True)
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
