#!/usr/bin/env bash
# Prepare benchmarks/gpu_check.py for a GPU machine with no network: download, here, the wheels of the
# runtime packages such a machine (its own Python 3.12 and torch) lacks, into the git-ignored
# cache/gpu_wheels/ (at most 64 MiB in all; the total is printed). Then, there:
#
#   pip install --no-index --no-deps --find-links cache/gpu_wheels cache/gpu_wheels/*.whl && \
#     timeout 300 python benchmarks/gpu_check.py     # -> results/benchmarks/gpu.{json,md}
#
# Usage: bash benchmarks/gpu_wheels.sh          (PYTHON=... picks the Python whose versions are pinned)
#   The set is what the GPU check imports beyond torch: Lightning, timm, kornia, lightly, webdataset,
#   jsonargparse, huggingface_hub/safetensors, tifffile and pyyaml. NOT included, so the GPU machine
#   must have them: torchvision (must match its torch build), numpy and pillow (torchvision's own
#   dependencies). pandas and pyarrow are not needed: the check imports the tasks, and
#   ssl_cyto.data.loading loads its readers (pandas, pyarrow) only when they are used (pyarrow's
#   wheel alone is 55 MiB). faiss-gpu is not included either (larger than 64 MiB by itself; the
#   gpu_check faiss stage is skipped where faiss is absent).
# Versions are those of the Python running this script (the versions the tests ran with), else latest.
# --no-deps: dependencies beyond this list must already be on the GPU machine; gpu_check's `env` stage
# lists the optional packages that do not import.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=cache/gpu_wheels
LIMIT=$((64 * 1024 * 1024))

PKGS=(pytorch-lightning lightning-utilities torchmetrics timm kornia kornia_rs lightly webdataset
      braceexpand jsonargparse docstring-parser typeshed-client huggingface_hub hf-xet safetensors
      tifffile PyYAML tqdm packaging)

git check-ignore -q "$OUT/x.whl" || { echo "gpu_wheels: $OUT is not git-ignored; refusing" >&2; exit 2; }
mkdir -p "$OUT"

# pin each package to the version installed here, when it is installed
mapfile -t SPECS < <("$PY" - "${PKGS[@]}" <<'EOF'
import importlib.metadata as md
import sys

for name in sys.argv[1:]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(name)
EOF
)

"$PY" -m pip download --quiet --only-binary=:all: --no-deps --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
  -d "$OUT" "${SPECS[@]}"

total=0
while IFS= read -r -d '' f; do
  size=$(stat -c %s "$f")
  total=$((total + size))
  printf '%8.1f MiB  %s\n' "$(echo "$size / 1048576" | bc -l)" "$(basename "$f")"
done < <(find "$OUT" -name '*.whl' -print0 | sort -z)
printf 'gpu_wheels: %d wheels, %.1f MiB in %s (limit 64 MiB)\n' \
  "$(find "$OUT" -name '*.whl' | wc -l)" "$(echo "$total / 1048576" | bc -l)" "$OUT"
if ((total > LIMIT)); then
  echo "gpu_wheels: over 64 MiB; remove the largest wheels the GPU machine already has" >&2
  exit 1
fi
