#!/usr/bin/env bash
# Issue 10's study: one change at a time against the fashion block of params.yaml as it is (the
# rows in results/tuning/fashion/README.md were run before it took warm-up 2 + K-means), on the
# class-balanced 20,000-image subset (workflow/scripts/fashion-trials.sh --subset-only), seeds
# 0-2, 8 epochs, one thread per run (THREADS=N for more), two runs at a time on 2 cores (PARALLEL=N;
# about 4 min a pair here).
# Usage: workflow/scripts/fashion-study.sh NAME [KEY=VALUE ...]
#   e.g. workflow/scripts/fashion-study.sh warmup2-kmeans cluster_warmup_epochs=2 init_labels=kmeans
# Writes results/tuning/fashion/study/NAME/runs/fashion/scl/seed<k>/ (log.jsonl with the diag_*
# readings, metrics.json), NAME/settings.txt (the overrides) and NAME/curves.png. A finished run
# is kept (rerunning the script trains only what is missing); SEEDS="0 1 2 3" widens the study.
# FULL=1 runs the setting on all 70,000 images instead, into results/tuning/fashion/full-study/NAME
# (about 15 min a run on a 2-core CPU with native bf16; 40 min in float32 with THREADS=2 PARALLEL=1
# on an AVX2-only one; the trainer's estimate is in NAME/train-seed<k>.log); commit each finished
# run's log.jsonl and metrics.json as it lands.
# The comparison table: `python workflow/scripts/fashion_study_table.py` (study/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; shift
if [ -n "${FULL:-}" ]; then
    # FULL=1: all 70,000 images, into full-study/ (the subset's step counts mislead: a warm-up of
    # 2 subset epochs is 156 steps, of 2 full epochs 546; results/tuning/fashion/README.md)
    subset=data/prepared/fashion.npz
    out=results/tuning/fashion/full-study/$name
    [ -f "$subset" ] || scl prepare fashion
else
    subset=data/prepared/fashion-20k.npz
    out=results/tuning/fashion/study/$name
    [ -f "$subset" ] || workflow/scripts/fashion-trials.sh --subset-only
fi
mkdir -p "$out"
printf '%s\n' "$@" > "$out/settings.txt"
sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
for seed in ${SEEDS:-0 1 2}; do
    run=$out/runs/fashion/scl/seed$seed
    [ -f "$run/metrics.json" ] && continue
    scl train --dataset fashion --seed "$seed" --data "$subset" --out "$run" --no-progress \
        --set threads="${THREADS:-1}" "${sets[@]}" > /dev/null 2> "$out/train-seed$seed.log" &
    if [ "$(jobs -r | wc -l)" -ge "${PARALLEL:-2}" ]; then wait -n; fi
done
wait
scl figure curves --runs "$out/runs" --dataset fashion --out "$out/curves.png" > /dev/null
