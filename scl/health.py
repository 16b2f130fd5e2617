"""Is a finished run a result, or a broken run? Checked before metrics.json says "done".

A run that diverged or collapsed still produces assignments, and averaged into a table it
looks like a (bad) result. `run_problems` names what makes a run unusable:

  - non-finite outputs: NaN/inf in the cluster probabilities or features, or in a score;
  - collapse: one cluster holds nearly every image (more than COLLAPSE_SHARE of them) while
    the data is not that unbalanced (lr=50 on digits puts all 1,797 images in one cluster);
  - no signal: with labels, ARI (0 in expectation for any assignment unrelated to the
    labels) and NMI both at chance level.

A run with problems still writes metrics.json (so it can be looked at), with
`"status": "failed"` and the problems under `"failure"`; `scl train` then exits 3, a
rerun says it failed instead of "already complete", and the report leaves it out loudly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

COLLAPSE_SHARE = 0.95  # "nearly everything" in one cluster
ARI_FLOOR = 0.01       # ARI below this ...
NMI_FLOOR = 0.05       # ... and NMI below this: the clusters carry no class information


def run_problems(pred: np.ndarray, num_clusters: int, labels: np.ndarray | None = None,
                 scores: dict | None = None, outputs: dict[str, np.ndarray] | None = None) -> list[str]:
    """What makes this final assignment unusable ([] = a result). pred: int N, labels: int N or None."""
    problems = []
    for name, a in (outputs or {}).items():
        bad = int((~np.isfinite(np.asarray(a, dtype=np.float32))).sum())
        if bad:
            problems.append(f"{bad} non-finite values in the final {name} (the run diverged)")
    for k, v in (scores or {}).items():
        if isinstance(v, float) and not math.isfinite(v):
            problems.append(f"{k} is {v}")
    n = len(pred)
    if n == 0:
        return problems + ["no images were assigned"]
    sizes = np.bincount(pred, minlength=num_clusters)
    share = sizes.max() / n
    class_share = None
    if labels is not None:
        class_share = np.bincount(labels[labels >= 0]).max() / max(int((labels >= 0).sum()), 1)
    if num_clusters > 1 and share > COLLAPSE_SHARE and (class_share is None or class_share <= COLLAPSE_SHARE):
        problems.append(f"collapsed: one cluster holds {sizes.max()} of the {n} images ({share:.1%}), "
                        f"{int((sizes > 0).sum())} of {num_clusters} clusters are used")
    if labels is not None and scores and all(k in scores for k in ("acc", "nmi", "ari")):
        if scores["ari"] < ARI_FLOOR and scores["nmi"] < NMI_FLOOR:
            problems.append(f"no signal: ARI {scores['ari']:.3f} and NMI {scores['nmi']:.3f} are at chance level "
                            f"(ACC {scores['acc']:.3f}; the largest class alone gives {class_share:.3f})")
    return problems


def failure_message(problems: list[str], lr: float | None = None) -> str:
    hint = f" (now {lr})" if lr is not None else ""
    return ("the run finished but its result is unusable: " + "; ".join(problems)
            + f". It is marked failed in metrics.json and left out of tables. Fix: lower lr{hint}, "
              "or check the data and settings; then rerun with --restart")


def read_run_status(folder: str | Path) -> tuple[str, dict | None, str]:
    """(status, metrics, note) of a run folder's metrics.json.

    status: "absent" (no metrics.json), "complete", "failed" (marked by `run_problems`), or
    "unreadable" (empty, truncated, not a JSON object: not written by scl, which writes it
    atomically, so the run is treated as unfinished).
    """
    path = Path(folder) / "metrics.json"
    if not path.exists():
        return "absent", None, ""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return "unreadable", None, f"{path} is unreadable ({e})"
    if not isinstance(metrics, dict):
        return "unreadable", None, f"{path} does not hold a JSON object"
    if metrics.get("status") == "failed":
        return "failed", metrics, "; ".join(metrics.get("failure") or ["marked failed"])
    return "complete", metrics, ""
