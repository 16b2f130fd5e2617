"""Issue 10's check: is the head evaluated on the kind of input it was trained to label?

The classifiers f_phi learn from the features of augmented views (x_q), while eq. 5 and
the scores label the un-augmented images. For finished runs this compares, on every image,
the head's labels of the un-augmented image (what the pipeline scores) with its labels of
`--views` augmented views of it: each view's ACC, the majority vote over the views, and
how often a view agrees with the clean label. If the clean image were out of the head's
training distribution, the views (in distribution) would score higher than the clean image.
Usage: python workflow/scripts/head_input_check.py --data NPZ --out JSON RUN_DIR ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from scl.io import atomic_write_json


def check(run: Path, data_path: str, views: int, batch: int = 1024) -> dict:
    from scl.assign import load_run
    from scl.augment import build_augment
    from scl.data.prepared import load_prepared
    from scl.metrics import evaluate

    run_model = load_run(run, device="cpu")  # float32; the run's own settings and eval path (eval_crop)
    model, eval_tf, t = run_model.model, run_model.eval_tf, run_model.settings["train"]
    data = load_prepared(data_path)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()
    augment = build_augment(t["augment"], run_model.image_size, run_model.channels)
    gen = torch.Generator().manual_seed(12345)

    @torch.no_grad()
    def head(transform) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch):
            x = transform(images[start:start + batch])
            out.append(model.infer(x)["prob_target"].argmax(1))
        return torch.cat(out).numpy()

    clean = head(eval_tf)
    view_labels = np.stack([head(lambda x: augment(x, gen)) for _ in range(views)])  # V x N
    c = view_labels.max() + 1
    votes = np.apply_along_axis(lambda col: np.bincount(col, minlength=c).argmax(), 0, view_labels)
    view_acc = [evaluate(data.labels, v)["acc"] for v in view_labels]
    return {"run": str(run), "seed": run_model.settings["seed"], "clean_acc": evaluate(data.labels, clean)["acc"],
            "view_acc_mean": statistics.mean(view_acc), "view_acc": view_acc,
            "vote_acc": evaluate(data.labels, votes)["acc"],
            "view_agrees_with_clean": float((view_labels == clean[None]).mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = [check(run, a.data, a.views) for run in a.runs]
    atomic_write_json(a.out, results)  # never a half-written file
    for r in results:
        print(f"seed {r['seed']}: clean {r['clean_acc']:.3f}  views {r['view_acc_mean']:.3f}  "
              f"vote of {a.views} views {r['vote_acc']:.3f}  view = clean label {r['view_agrees_with_clean']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
