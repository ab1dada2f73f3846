"""Item 1 (paper Fig. 4 / A2): decision boundaries of a 2-layer MLP on
scikit-learn circles and moons, 50 labelled training points, the rest
(500) for test; baseline vs EMA vs SEMA, >= 10 seeds.

    python experiments/toy/toy.py --seeds 10 --out work_dirs/sema_results/toy

Training: SGD (momentum 0.9, as the paper's SGD recipes; lr 0.01 fixed, no
schedule), batch 5 -> 10 iterations per epoch, 150 epochs. EMA / SEMA use
sema_mm's ``SwitchEMAModel`` (``momentum = 1 - alpha``); SEMA copies the EMA
into the model every epoch (T = 1 epoch = 10 iterations). Evaluated: the EMA
weights for EMA and SEMA, the trained weights for the baseline.

Metrics on the 500 test points: top-1, ECE (15 equal-width confidence bins),
and the decision-boundary width = area of the band 0.25 < p(class 1) < 0.75
divided by the length of the p = 0.5 contour (the mean width of the
transition band, in input units; wider = less over-confident boundary).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
import torch.nn as nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
from sema_mm.models.switch_ema import SwitchEMAModel  # noqa: E402

ALPHAS = (0.999, 0.9)
FIG_ALPHA = 0.9
N_TOTAL, N_TRAIN, BATCH, EPOCHS, LR, HIDDEN = 550, 50, 5, 150, 0.01, 64


def make_data(name, seed):
    from sklearn.datasets import make_circles, make_moons
    from sklearn.model_selection import train_test_split
    if name == 'circles':
        X, y = make_circles(N_TOTAL, noise=0.1, factor=0.5, random_state=seed)
    else:
        X, y = make_moons(N_TOTAL, noise=0.15, random_state=seed)
    X = (X - X.mean(0)) / X.std(0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, train_size=N_TRAIN,
                                          random_state=seed, stratify=y)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return f(Xtr), torch.tensor(ytr), f(Xte), torch.tensor(yte)


def mlp():
    return nn.Sequential(nn.Linear(2, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2))


def train(Xtr, ytr, method, alpha, seed):
    torch.manual_seed(seed)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    ema = SwitchEMAModel(model, momentum=1 - alpha) if method != 'baseline' \
        else None
    g = torch.Generator().manual_seed(seed)
    n = len(Xtr)
    for _ in range(EPOCHS):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            loss = nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
        if method == 'sema':
            ema.copy_to(model)  # the switch, once per epoch
    return ema.module if ema is not None else model


def ece(prob, y, bins=15):
    conf, pred = prob.max(1)
    acc = (pred == y).float()
    edges = torch.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.float().mean().item() * abs(acc[m].mean().item() -
                                               conf[m].mean().item())
    return e


def grid_for(X, n=240):
    lo, hi = X.min(0).values - 0.6, X.max(0).values + 0.6
    xs = torch.linspace(lo[0], hi[0], n)
    ys = torch.linspace(lo[1], hi[1], n)
    gx, gy = torch.meshgrid(xs, ys, indexing='xy')
    return gx, gy


@torch.no_grad()
def boundary_width(model, gx, gy):
    import contourpy
    p = torch.softmax(model(torch.stack([gx.flatten(), gy.flatten()], 1)),
                      1)[:, 1].reshape(gx.shape).numpy()
    cell = float((gx[0, 1] - gx[0, 0]) * (gy[1, 0] - gy[0, 0]))
    band = ((p > 0.25) & (p < 0.75)).sum() * cell
    lines = contourpy.contour_generator(gx.numpy(), gy.numpy(), p).lines(0.5)
    length = sum(np.linalg.norm(np.diff(l, axis=0), axis=1).sum() for l in lines)
    return float(band / length) if length > 0 else float('nan'), p


@torch.no_grad()
def evaluate(model, Xte, yte, gx, gy):
    prob = torch.softmax(model(Xte), 1)
    width, pgrid = boundary_width(model, gx, gy)
    return dict(acc=100 * (prob.argmax(1) == yte).float().mean().item(),
                ece=100 * ece(prob, yte), width=width), pgrid


def methods():
    out = [('baseline', 'baseline', None)]
    for a in ALPHAS:
        out += [(f'EMA a={a}', 'ema', a), (f'SEMA a={a}', 'sema', a)]
    return out


def figure(store, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = ['baseline', f'EMA a={FIG_ALPHA}', f'SEMA a={FIG_ALPHA}']
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for r, ds in enumerate(['circles', 'moons']):
        Xtr, ytr, Xte, yte, gx, gy, res = store[ds]
        for c, name in enumerate(names):
            ax = axes[r, c]
            m, p = res[name]
            ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 21), cmap='RdYlBu',
                        alpha=0.55)
            ax.contour(gx, gy, p, levels=[0.25, 0.75], colors='grey',
                       linewidths=0.8, linestyles='--')
            ax.contour(gx, gy, p, levels=[0.5], colors='k', linewidths=1.6)
            ax.scatter(Xte[:, 0], Xte[:, 1], c='grey', s=6, alpha=0.5)
            ax.scatter(Xtr[:, 0], Xtr[:, 1], c=['#d62728' if v else '#ffbf00'
                                                for v in ytr.tolist()],
                       marker='^', s=45, edgecolors='k')
            ax.set_title(f'{ds}: {name}\nacc {m["acc"]:.1f}%  width '
                         f'{m["width"]:.3f}  ECE {m["ece"]:.1f}%', fontsize=10)
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle('2-layer MLP, SGD lr 0.01, 50 labelled points (triangles), '
                 'seed 0; dashed: p=0.25/0.75')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--seeds', type=int, default=10)
    p.add_argument('--out', default=osp.join(ROOT, 'work_dirs', 'sema_results',
                                             'toy'))
    p.add_argument('--fig', default=osp.join(ROOT, 'docs', 'figures',
                                             'toy_decision_boundary.png'))
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    rows, store = [], {}
    for ds in ['circles', 'moons']:
        for seed in range(a.seeds):
            Xtr, ytr, Xte, yte = make_data(ds, seed)
            gx, gy = grid_for(torch.cat([Xtr, Xte]))
            res = {}
            for name, method, alpha in methods():
                model = train(Xtr, ytr, method, alpha, seed)
                m, pg = evaluate(model, Xte, yte, gx, gy)
                rows.append(dict(dataset=ds, seed=seed, name=name, **m))
                res[name] = (m, pg)
            if seed == 0:
                store[ds] = (Xtr, ytr, Xte, yte, gx, gy, res)
        print(f'[toy] {ds} done ({time.time() - t0:.0f}s)', flush=True)
    summ = {}
    for ds in ['circles', 'moons']:
        for name, *_ in methods():
            sel = [r for r in rows if r['dataset'] == ds and r['name'] == name]
            summ[f'{ds}|{name}'] = {
                k: (float(np.mean([r[k] for r in sel])),
                    float(np.std([r[k] for r in sel])))
                for k in ('acc', 'ece', 'width')}
            s = summ[f'{ds}|{name}']
            print(f'{ds:8s} {name:14s} acc {s["acc"][0]:.2f}±{s["acc"][1]:.2f} '
                  f'ECE {s["ece"][0]:.2f}±{s["ece"][1]:.2f} width '
                  f'{s["width"][0]:.3f}±{s["width"][1]:.3f}')
    os.makedirs(a.out, exist_ok=True)
    with open(osp.join(a.out, 'summary.json'), 'w') as f:
        json.dump(dict(seeds=a.seeds, summary=summ, rows=rows,
                       wall_s=time.time() - t0), f, indent=1)
    os.makedirs(osp.dirname(a.fig), exist_ok=True)
    figure(store, a.fig)
    print(f'[toy] wall {time.time() - t0:.0f}s, wrote {a.fig}')


if __name__ == '__main__':
    main()
