#!/usr/bin/env bash
# The short trials behind the fashion block of params.yaml (results/tuning/fashion/README.md).
# Each trial trains 8 epochs on a class-balanced 20,000-image subset of Fashion-MNIST
# (2,000 per class, numpy seed 0), seed 0, one thread, two trials at a time on 2 cores.
# Trial G is the check after the full runs: the final setting on all 70,000 images, seed 0,
# with twice the epochs (16), two threads, alone.
# Usage: workflow/scripts/fashion-trials.sh [TRIAL ...]   (default: A C D E F; G separately)
# Needs data/prepared/fashion.npz (`scl prepare fashion`). Writes results/tuning/fashion/<trial>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
subset=data/prepared/fashion-20k.npz
if [ ! -f "$subset" ]; then
    python - "$subset" <<'PY'
import sys
import numpy as np
from scl.data.prepared import load_prepared, save_prepared
d = load_prepared("data/prepared/fashion.npz")
rng = np.random.default_rng(0)
idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(d.labels == c), 2000, replace=False) for c in range(10)]))
save_prepared(sys.argv[1], d.images[idx], d.labels[idx], list(d.class_names))
PY
fi
[ "${1:-}" = --subset-only ] && exit 0  # (fashion-diagnostics.sh builds the subset this way)
# The trials start from the fashion block as it was before them (width 32, ema 0.9, fp32);
# each sets what it varies. (Trial B, crop scale 0.2-1, was a temporary edit of the
# grayscale recipe and is not rerun here.)
base=(--set epochs=8 --set threads=1 --set ema_momentum=0.9 --set amp=off --set channels_last=false --set cnn_width=32)
declare -A trial=(
    [A]=""
    [C]="--set lr=0.1"
    [D]="--set ema_momentum=0.99"
    [E]="--set ema_momentum=0.99 --set amp=bf16 --set channels_last=true"
    [F]="--set ema_momentum=0.99 --set amp=bf16 --set channels_last=true --set cnn_width=48"
)
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(A C D E F)
for t in "${names[@]}"; do
    if [ "$t" = G ]; then
        scl train --dataset fashion --seed 0 --out results/tuning/fashion/G --restart --no-progress \
            --set epochs=16 --set threads=2
        continue
    fi
    [ -n "${trial[$t]+x}" ] || { echo "unknown trial $t (known: ${!trial[*]})" >&2; exit 2; }
    # shellcheck disable=SC2086
    scl train --dataset fashion --seed 0 --data "$subset" --out "results/tuning/fashion/$t" --restart \
        --no-progress "${base[@]}" ${trial[$t]} &
    # two at a time
    if [ "$(jobs -r | wc -l)" -ge 2 ]; then wait -n; fi
done
wait
