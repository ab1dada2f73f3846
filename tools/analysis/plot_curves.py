"""Overlay training curves of several mmengine runs.

Reads ``<work_dir>/<timestamp>/vis_data/scalars.json`` (mmengine >= 0.x
LocalVisBackend) or ``*.log.json`` (mmcv 1.x / old mmengine JSON logs), or
a given file directly. Runs sharing a label are drawn as mean ± std.

    python tools/analysis/plot_curves.py work_dirs/a work_dirs/b \
        --labels base sema --keys accuracy/top1 --out curves.png

With ``--labels`` one label per run; repeat a label to group seeds, e.g.
``--labels base base base sema sema sema``.
"""
import argparse
import glob
import json
import os
import os.path as osp
from collections import OrderedDict

import numpy as np


def find_log(path):
    """The newest scalars.json / *.log.json under ``path`` (or ``path``)."""
    if osp.isfile(path):
        return path
    cands = glob.glob(osp.join(path, '**', 'vis_data', 'scalars.json'),
                      recursive=True)
    if not cands:
        cands = glob.glob(osp.join(path, '**', '*.log.json'), recursive=True)
    if not cands:
        raise FileNotFoundError(f'no vis_data/scalars.json or *.log.json '
                                f'under {path}')
    return max(cands, key=osp.getmtime)


def load_scalars(path):
    """All JSON records (one dict per line) of a run's log."""
    recs = []
    with open(find_log(path)) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return recs


def extract(recs, key, x='auto'):
    """(xs, ys) of ``key``. ``x``: 'epoch', 'iter', 'step' or 'auto' (the
    record's 'epoch' if present, else 'step', else its index+1).

    mmengine writes validation records with ``step`` = epoch for
    epoch-based loops and train records with ``epoch`` and ``iter``.
    """
    xs, ys = [], []
    for i, r in enumerate(recs):
        if key not in r or not isinstance(r[key], (int, float)):
            continue
        if x == 'auto':
            xv = r.get('epoch', r.get('step', i + 1))
        else:
            xv = r.get(x, r.get('step', i + 1))
        xs.append(xv)
        ys.append(float(r[key]))
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def group_curves(paths, labels, key, x='auto'):
    """{label: (xs, mean, std, n)} over the runs with that label, on the xs
    common to all of them."""
    groups = OrderedDict()
    for p, lab in zip(paths, labels):
        groups.setdefault(lab, []).append(extract(load_scalars(p), key, x))
    out = OrderedDict()
    for lab, curves in groups.items():
        common = sorted(set.intersection(*[set(c[0].tolist()) for c in curves]))
        ys = np.stack([[dict(zip(c[0].tolist(), c[1].tolist()))[v]
                        for v in common] for c in curves])
        out[lab] = (np.asarray(common), ys.mean(0), ys.std(0), len(curves))
    return out


def plot(paths, labels=None, keys=('accuracy/top1', ), out='curves.png',
         x='auto', title=None, ylim=None, inset=None):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    labels = labels or [osp.basename(osp.normpath(p)) for p in paths]
    assert len(labels) == len(paths), 'one label per run'
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8),
                             squeeze=False)
    result = {}
    for ax, key in zip(axes[0], keys):
        curves = group_curves(paths, labels, key, x)
        result[key] = curves
        for lab, (xs, m, s, n) in curves.items():
            line, = ax.plot(xs, m, label=f'{lab}' + (f' (n={n})' if n > 1 else ''))
            if n > 1:
                ax.fill_between(xs, m - s, m + s, alpha=0.2,
                                color=line.get_color())
        ax.set_xlabel('epoch' if x in ('auto', 'epoch') else x)
        ax.set_ylabel(key)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('runs', nargs='+', help='work_dirs or log files')
    p.add_argument('--labels', nargs='+')
    p.add_argument('--keys', nargs='+', default=['accuracy/top1'])
    p.add_argument('--x', default='auto', choices=['auto', 'epoch', 'iter', 'step'])
    p.add_argument('--title')
    p.add_argument('--ylim', nargs=2, type=float)
    p.add_argument('--out', default='curves.png')
    a = p.parse_args()
    res = plot(a.runs, a.labels, a.keys, a.out, a.x, a.title, a.ylim)
    for key, curves in res.items():
        for lab, (xs, m, s, n) in curves.items():
            print(f'{key} {lab}: last x={xs[-1]:g} {m[-1]:.4g} ± {s[-1]:.2g} (n={n})')
    print(f'wrote {a.out}')


if __name__ == '__main__':
    main()
