#!/usr/bin/env bash
# Issue 10's first reading, redone with the per-epoch diagnostics (scl/epoch_diagnostics.py):
# the fashion set's settings (params.yaml, `diagnostics: true` there) on the class-balanced
# 20,000-image subset of workflow/scripts/fashion-trials.sh, seeds 0-2, two runs at a time with
# one thread each. Writes results/tuning/fashion/diagnostics/: each run's log.jsonl (diag_* per
# epoch) and metrics.json, the training curves (curves.png, diag_* panels included) and
# `scl diagnose`'s report (diagnosis.md/.json, with the per-epoch table).
# Usage: workflow/scripts/fashion-diagnostics.sh [EPOCHS]   (default 8, the fashion set's)
# Needs data/prepared/fashion.npz (`scl prepare fashion`).
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${1:-8}
subset=data/prepared/fashion-20k.npz
out=results/tuning/fashion/diagnostics
[ -f "$subset" ] || workflow/scripts/fashion-trials.sh --subset-only
for seed in 0 1 2; do
    scl train --dataset fashion --seed "$seed" --data "$subset" --out "$out/runs/fashion/scl/seed$seed" \
        --no-progress --set epochs="$epochs" --set threads=1 > "$out-seed$seed.json" 2> "$out-seed$seed.log" &
    # two at a time on two cores
    if [ "$seed" = 1 ]; then wait; fi
done
wait
mkdir -p "$out"
for seed in 0 1 2; do mv "$out-seed$seed.json" "$out/train-seed$seed.json"; mv "$out-seed$seed.log" "$out/train-seed$seed.log"; done
scl figure curves --runs "$out/runs" --dataset fashion --out "$out/curves.png"
scl diagnose --dataset fashion --runs "$out/runs" --data "$subset" --out "$out/diagnosis"
