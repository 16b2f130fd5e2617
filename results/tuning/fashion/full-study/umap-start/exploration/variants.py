import sys, json, numpy as np, torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
torch.set_num_threads(1)
from scl.metrics import evaluate
def km(x, seed, n_init=10):
    k = KMeans(10, n_init=n_init, random_state=seed).fit(np.asarray(x, np.float64))
    return k.labels_, k.inertia_
def knn_smooth(x, k):
    t = torch.from_numpy(np.asarray(x, np.float32)); t = torch.nn.functional.normalize(t, dim=1)
    out = torch.empty_like(t)
    for i in range(0, len(t), 4096):
        sim = t[i:i+4096] @ t.T
        idx = sim.topk(k + 1, dim=1).indices   # includes itself
        out[i:i+4096] = t[idx].mean(1)
    return torch.nn.functional.normalize(out, dim=1).numpy()
res = {}
for s in map(int, sys.argv[1:]):
    z = np.load(f"/tmp/startvar/seed{s}.npz"); y = z["labels"]; f = z["feat_target"]
    r = {}
    def add(name, lab):
        r[name] = round(evaluate(y, lab)["acc"], 4); print(s, name, r[name], flush=True)
    add("base", km(f, s)[0])
    for rs in range(5):
        lab, inert = km(f, 100 + rs, n_init=1); r[f"rs{rs}_inertia"] = inert; add(f"rs{rs}_ninit1", lab)
    add("ninit50", km(f, s, 50)[0])
    for k in (5, 10, 20):
        add(f"knn{k}", km(knn_smooth(f, k), s)[0])
    add("backbone", km(z["backbone"], s)[0])
    add("pca32_whiten", km(PCA(32, whiten=True, random_state=0).fit_transform(f), s)[0])
    res[s] = r
json.dump(res, open(f"/tmp/startvar/variants_{'_'.join(sys.argv[1:])}.json", "w"), indent=1)
