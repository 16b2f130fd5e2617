#!/usr/bin/env bash
# After `dvc pull` (or `dvc checkout`, a fresh clone, a `git checkout` of another result):
# make Snakemake see the restored outputs as up to date.
#
# Why: Snakemake reruns a job whose input is newer than its output (unless it has a
# recorded checksum of that input, which a fresh clone has not: .snakemake/ is not shared,
# and files over 1 MB are never checksummed). Git and DVC give restored files the time
# they were written, in no particular order: results/tables (git) end up older than the
# results/runs they are made from (DVC), and Snakemake would retrain everything.
# DVC has already checked the content (hashes in data/prepared.dvc, results/runs.dvc; git has
# the small results at the same commit as the code and params.yaml), so the right fix is to give the
# files timestamps in workflow order: `snakemake --touch` does exactly that, job by job in
# DAG order, without running anything, and records Snakemake's metadata.
#
# Usage: workflow/scripts/restore-timestamps.sh [snakemake arguments, e.g. --config experiment_set=smoke]
# Refuses (exit 1) when the workspace does not match the .dvc files: then the results are not
# the recorded ones, and `snakemake` must decide what to rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DVC_NO_ANALYTICS=1

if ! status=$(dvc status 2>&1) || ! grep -q "up to date" <<<"$status"; then
    echo "restore-timestamps: the workspace differs from the .dvc files, so some results are not the recorded ones:" >&2
    echo "$status" >&2
    echo "restore-timestamps: not touching anything; run \`snakemake\` to redo them." >&2
    exit 1
fi

log=$(mktemp) && trap 'rm -f "$log"' EXIT
if ! snakemake --touch --cores 1 all "$@" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
# what is still to do now can only be missing files (not pushed to the remote?)
if ! snakemake -n all "$@" >"$log" 2>&1 || ! grep -q "Nothing to be done" "$log"; then
    echo "restore-timestamps: timestamps restored, but some outputs are missing; \`snakemake -n\` says:" >&2
    cat "$log" >&2
    exit 1
fi
echo "restore-timestamps: every output is up to date (nothing to rerun)"
