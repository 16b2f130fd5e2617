import sys, json, time, numpy as np
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture
import umap
from scl.metrics import evaluate
res = {}
for s in map(int, sys.argv[1:]):
    z = np.load(f"/tmp/startvar/seed{s}.npz"); y = z["labels"]; r = {}
    for feat in ("feat_target",):
        t0 = time.time()
        e = umap.UMAP(n_components=10, n_neighbors=20, min_dist=0.0, metric="cosine", random_state=s, n_jobs=1).fit_transform(z[feat])
        dt = time.time() - t0
        r[f"{feat}_umap_km"] = evaluate(y, KMeans(10, n_init=10, random_state=s).fit_predict(e.astype(np.float64)))["acc"]
        r[f"{feat}_umap_gmm"] = evaluate(y, GaussianMixture(10, covariance_type="full", random_state=s).fit_predict(e))["acc"]
        print(s, feat, f"umap {dt:.0f}s", {k: round(v, 4) for k, v in r.items()}, flush=True)
    res[s] = r
json.dump(res, open(f"/tmp/startvar/umap_{'_'.join(sys.argv[1:])}.json", "w"), indent=1)
