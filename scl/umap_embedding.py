"""UMAP of a feature matrix, in a process of its own (`init_labels: umap_kmeans`, issue 10).

    python -m scl.umap_embedding FEATURES.npy OUT.npy --neighbours 20 --seed 0

Why a separate process: UMAP runs on numba, whose OpenMP pool, once started in the trainer's
process beside PyTorch's own OpenMP runtime, left a worker thread spinning there for the rest
of the run: every later epoch took 2.4x as long (fashion set, 2026-12-04). A child process
(not multiprocessing, which would re-import the caller's main script) keeps the trainer clean.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COMPONENTS = 10  # N2D's (McConville et al. 2020) embedding size for clustering


def embed(features: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    """UMAP N x d -> N x COMPONENTS on cosine distances (the features are L2-normalised);
    min_dist 0 packs each cluster tightly, which suits clustering rather than a picture.
    Seeded, hence single-threaded and deterministic."""
    import umap  # compiles with numba on first use (seconds)

    reducer = umap.UMAP(n_components=COMPONENTS, n_neighbors=n_neighbors, min_dist=0.0, metric="cosine",
                        random_state=seed, n_jobs=1)
    return reducer.fit_transform(np.asarray(features, np.float32)).astype(np.float32)


def embed_in_child(features: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    """`embed`, run by `python -m scl.umap_embedding` in a child process (see the module doc)."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    # One thread everywhere: the caller's thread settings moved the embedding's last bits (fashion
    # seed 0's start: 0.7091 under Snakemake, which sets OMP/OPENBLAS/MKL_NUM_THREADS to the job's
    # 1 thread, 0.7095 from a shell on 2 cores; UMAP's spectral initialisation runs on BLAS).
    # Pinned here, `scl train` gives the same start however it is launched.
    env.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    with tempfile.TemporaryDirectory(prefix="scl-umap-") as tmp:
        src, dst = Path(tmp) / "features.npy", Path(tmp) / "embedding.npy"
        np.save(src, np.asarray(features, np.float32))
        done = subprocess.run([sys.executable, "-m", "scl.umap_embedding", str(src), str(dst),
                               "--neighbours", str(n_neighbors), "--seed", str(seed)],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0 or not dst.exists():
            raise RuntimeError(f"the UMAP embedding of init_labels: umap_kmeans failed (exit {done.returncode}):\n"
                               f"{done.stderr.strip()[-2000:]}\nFix: check that umap-learn imports "
                               "(pip install -e .), or use init_labels: kmeans")
        return np.load(dst)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--neighbours", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    a = ap.parse_args(argv)
    from scl.io import atomic_save_npy

    atomic_save_npy(a.out, embed(np.load(a.features), a.neighbours, a.seed))  # never half-written
    return 0


if __name__ == "__main__":
    sys.exit(main())
