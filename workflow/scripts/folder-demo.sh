#!/usr/bin/env bash
# The `folder` set as a new user meets it, on a labelled colour folder made here
# (results/folder-demo/README.md has the numbers and what the contact sheets show):
#   1. 2,500 shapes at 32 px (10 classes, random colours: colour says nothing of the class)
#      and 1,000 held-out ones (another seed), written by scl/data/synthetic.py
#   2. scl prepare folder (image size and classes from the data)
#   3. K-means on pixels (the baseline to beat)
#   4. scl train with the folder defaults of params.yaml (CPU), timed (wall and CPU)
#   5. scl clusters: clusters.csv, contact sheets, index.md
#   6. scl assign on the held-out images: agreement with the run's head, images/s
# Usage: workflow/scripts/folder-demo.sh [THREADS]   (default 1: on a shared 2-core CPU two OpenMP
# threads spin at every barrier while their partner is descheduled: 2 threads were seen at 10.9 s
# a step against 1.7-2 s for 1 thread under load, an observation, not a kept benchmark)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=(--set "threads=${1:-1}")

out=results/folder-demo
data=data/folder-demo
mkdir -p "$out" "$data"
[ -d "$data/shapes" ] || python -m scl.data.synthetic "$data/shapes" --per-class 250 --size 32 --seed 0
[ -d "$data/heldout" ] || python -m scl.data.synthetic "$data/heldout" --per-class 100 --size 32 --seed 1
scl prepare folder --root "$data/shapes" --out "$data/shapes.npz" | tee "$out/prepare.txt"
[ -f "$out/kmeans/metrics.json" ] || scl baseline kmeans --dataset folder --data "$data/shapes.npz" --out "$out/kmeans/metrics.json"
/usr/bin/time -f '{"wall_s": %e, "user_s": %U, "sys_s": %S, "max_rss_kb": %M}' -o "$out/train-time.json" \
    scl train --dataset folder --data "$data/shapes.npz" --out "$out/run" --restart --no-progress \
    "${threads[@]}" 2> "$out/train-stderr.txt" | tee "$out/train.json"
scl clusters --run "$out/run" --data "$data/shapes.npz" --out "$out/clusters"
python workflow/scripts/assign_bench.py "$out/run" "$data/heldout" "$data/shapes.npz" "$out/assign-bench.json"
