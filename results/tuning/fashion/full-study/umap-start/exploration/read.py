import sys, numpy as np, torch
from pathlib import Path
torch.set_num_threads(1)
from scl.assign import infer_outputs, load_run
from scl.data.prepared import load_prepared
data = load_prepared("data/prepared/fashion.npz")
for s in map(int, sys.argv[1:]):
    run = Path(f"results/tuning/fashion/full-study/kmeans-start-crop/runs/seed{s}")
    m = load_run(run, device="cpu", require_head=False)
    o = infer_outputs(m, data.images, ("feat_target", "feat_under", "feat_instance", "backbone"), batch_size=1024)
    np.savez(f"/tmp/startvar/seed{s}.npz", labels=data.labels, **o)
    print(s, {k: v.shape for k, v in o.items()}, flush=True)
