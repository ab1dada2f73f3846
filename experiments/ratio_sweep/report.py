"""Table and figures of the switch-ratio sweep, from the saved per-run JSON.

    python experiments/ratio_sweep/report.py [--out work_dirs/ratio_sweep] \
        [--target 97] [--fig-dir docs/figures]

Reads ``<out>/*/seed*/result.json`` (written by sweep.py), prints markdown
tables (the sweep; the paper recipes' rho), writes ``<out>/summary.json``,
``docs/figures/ratio_sweep.png`` (final top-1 and epochs-to-target vs rho)
and ``docs/figures/ratio_curves.png`` (mean val top-1 per epoch).
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import sys

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, ROOT)
from experiments.ratio_sweep.sweep import (ARM_B_MOMENTUM,  # noqa: E402
                                           DEFAULT_OUT, ITERS_PER_EPOCH, RHOS,
                                           conditions)

# ---------------------------------------------------------------------------
# the paper's recipes: T = iterations per switch (1 epoch), m = 1 - alpha
IN1K, COCO, C100 = 1_281_167, 117_266, 50_000
# (recipe, dataset size, passes per mmengine epoch, total batch, SEMA m, note)
RECIPES = [
    ('IN-1K R-50, PyTorch SGD 100 ep', IN1K, 1, 256, 1e-3,
     'Table A3; stock 8xb32'),
    ('IN-1K DeiT-S, AdamW 300 ep', IN1K, 1, 1024, 1e-3,
     'Table A3; stock 4xb256'),
    ('IN-1K Swin-T, AdamW 300 ep (paper: ConvNeXt setting)', IN1K, 1, 4096,
     1e-3, 'Table A3 / B.1 "ConvNeXt and Swin share the same settings"'),
    ('IN-1K Swin-T, mmpretrain stock 16xb64', IN1K, 1, 1024, 1e-3,
     'this repo\'s config'),
    ('IN-1K ConvNeXt-T, AdamW 300 ep', IN1K, 1, 4096, 1e-3,
     'Table A3; stock 32xb128'),
    ('IN-1K R-50 RSB A2/A3, LAMB', IN1K, 1, 2048, 1e-3,
     'Table A3; stock 8xb256'),
    ('IN-1K DeiT-S Adan / R-50 LARS', IN1K, 1, 2048, 1e-3, 'Table A3'),
    ('CIFAR-100 R-18, SGD 200 ep', C100, 1, 128, 1e-2,
     'batch not stated in the paper; stock 8xb16 = 128'),
    ('COCO RetinaNet / Mask R-CNN R-50 2x', COCO, 1, 16, 1e-3, 'B.3'),
    ('COCO Cascade Mask R-CNN R-50 ms-3x', COCO, 3, 16, 1e-3,
     'mmdet RepeatDataset(times=3), 12 "epochs"'),
    ('COCO YOLOX-S 300 ep', COCO, 1, 64, 1e-3,
     'B.3; ExpMomentumEMA: m -> 1e-3 after ~10k it'),
    ('IN-1K SSL SimCLR / BYOL / MoCo v3 (CL)', IN1K, 1, 4096, 1e-4,
     'Table A4; SEMA alpha 0.9999 (teacher under SSLSwitchHook)'),
    ('IN-1K SSL Barlow Twins (CL)', IN1K, 1, 2048, 1e-4, 'Table A4'),
    ('IN-1K SSL MoCo v2 (CL)', IN1K, 1, 256, 1e-4, 'Table A4'),
    ('IN-1K SSL MAE / SimMIM (MIM)', IN1K, 1, 2048, 1e-3,
     'Table A4 (stock MAE 8xb512 = 4096: rho 0.31)'),
]


def kept(m, T):
    """Fraction of an interval's progress that survives the switch when the
    weights drift at a constant velocity: the EMA, restarted at the switch
    point, ends the interval at 1 - (1 - (1-m)^T) (1-m) / (m T) of the way
    (-> rho/2 for rho << 1, 1 - 1/rho for rho >> 1; m for T = 1)."""
    return 1 - (1 - (1 - m) ** T) * (1 - m) / (m * T)


def recipe_rows():
    rows = []
    for name, n, passes, batch, m, note in RECIPES:
        T = passes * math.ceil(n / batch)
        rows.append(dict(recipe=name, T=T, batch=batch, momentum=m,
                         alpha=1 - m, rho=T * m,
                         moved=1 - (1 - m) ** T, note=note))
    return rows


# ---------------------------------------------------------------------------
def load(out):
    res = []
    for p in sorted(glob.glob(osp.join(out, '*', 'seed*', 'result.json'))):
        with open(p) as f:
            res.append(json.load(f))
    return res


def epochs_to(curve, target):
    for i, v in enumerate(curve):
        if v >= target:
            return i + 1
    return None


def ms(xs):
    xs = np.asarray(xs, float)
    if len(xs) == 0:
        return float('nan'), float('nan')
    return float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else 0.0


def summarise(results, target):
    conds = conditions()
    base = {r['seed']: r for r in results if r['name'] == 'baseline'}
    summ = {}
    for name, c in conds.items():
        rs = sorted([r for r in results if r['name'] == name],
                    key=lambda r: r['seed'])
        if not rs:
            continue
        fin = [r['final_top1'] for r in rs]
        ep = [epochs_to(r['top1'], target) for r in rs]
        reached = [e for e in ep if e is not None]
        # paired with the baseline of the same seed
        diff = [r['final_top1'] - base[r['seed']]['final_top1'] for r in rs
                if r['seed'] in base]
        rho = rs[0].get('resolved', {}).get('rho', c.get('rho'))
        if c['arm'] == 'EMA':  # where arm A (T = 1 epoch) has this m
            rho = ITERS_PER_EPOCH * c['momentum']
        summ[name] = dict(
            arm=c['arm'], rho=rho, momentum=c['momentum'],
            T_iters=c['T_iters'], n=len(rs),
            seeds=[r['seed'] for r in rs], final=fin,
            final_mean=ms(fin)[0], final_std=ms(fin)[1],
            diff_mean=ms(diff)[0], diff_std=ms(diff)[1],
            best_mean=ms([max(r['top1']) for r in rs])[0],
            epochs_to_target=ep, reached=len(reached),
            ep_mean=ms(reached)[0] if reached else None,
            ep_std=ms(reached)[1] if reached else None,
            curve_mean=np.mean([r['top1'] for r in rs], 0).tolist(),
            wall_s_mean=ms([r['wall_s'] for r in rs])[0],
            wall_s_sum=float(sum(r['wall_s'] for r in rs)),
            epochs=rs[0]['epochs'], resolved=rs[0].get('resolved'))
    return summ


def sweep_table(summ, target):
    lines = [
        f'| condition | rho = T*m | how varied | T (it) | m (alpha) | n | '
        f'kept | final top-1 % | vs baseline (paired) | '
        f'epochs to {target:g} % | never reached |',
        '|---|---|---|---|---|---|---|---|---|---|---|']
    for name, s in summ.items():
        how = {'baseline': 'no hook',
               'A': 'm varied, T = 1 epoch',
               'B': f'T varied, m = {ARM_B_MOMENTUM:g}',
               'EMA': 'EMAHook, same m'}[s['arm']]
        rho = '-' if s['arm'] in ('baseline', 'EMA') or s['rho'] is None \
            else f"{s['rho']:g}"
        if s['arm'] == 'EMA':
            rho = f"(1 epoch x m = {s['rho']:.3g})"
        T = '-' if s['T_iters'] is None else f"{s['T_iters']:g}"
        m = '-' if s['momentum'] is None else \
            f"{s['momentum']:.4g} ({1 - s['momentum']:.4g})"
        ep = '-' if s['ep_mean'] is None else \
            f"{s['ep_mean']:.1f} ± {s['ep_std']:.1f}"
        diff = '-' if s['arm'] == 'baseline' else \
            f"{s['diff_mean']:+.2f} ± {s['diff_std']:.2f}"
        k = '-' if s['arm'] != 'A' and s['arm'] != 'B' else \
            f"{kept(s['momentum'], s['T_iters']):.2f}"
        lines.append(
            f"| {name} | {rho} | {how} | {T} | {m} | {s['n']} | {k} | "
            f"{s['final_mean']:.2f} ± {s['final_std']:.2f} | {diff} | {ep} | "
            f"{s['n'] - s['reached']} |")
    return '\n'.join(lines)


def recipe_table():
    lines = ['| recipe | total batch | T = it/epoch | SEMA m (alpha) | '
             'rho = T*m | EMA moves 1-alpha^T | source |',
             '|---|---|---|---|---|---|---|']
    for r in recipe_rows():
        lines.append(
            f"| {r['recipe']} | {r['batch']} | {r['T']:,} | {r['momentum']:g}"
            f" ({r['alpha']:g}) | {r['rho']:.3g} | {r['moved']:.0%} | "
            f"{r['note']} |")
    return '\n'.join(lines)


def plot(summ, target, fig_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(fig_dir, exist_ok=True)
    epochs = next(iter(summ.values()))['epochs']
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    styles = {'A': dict(color='C0', marker='o',
                        label='SEMA, T = 1 epoch (32 it), m = rho/T'),
              'B': dict(color='C3', marker='s',
                        label=f'SEMA, m = {ARM_B_MOMENTUM:g}, T = rho/m it'),
              'EMA': dict(color='C2', marker='^', ls='--',
                          label='EMA (EMAHook), same m, at x = 1 epoch x m')}
    b = summ.get('baseline')
    for ax, key in zip(axes[:2], ('final', 'ep')):
        for arm, st in styles.items():
            pts = [(s['rho'], s) for s in summ.values()
                   if s['arm'] == arm and s['rho'] is not None]
            if not pts:
                continue
            pts.sort(key=lambda t: t[0])
            xs = np.array([p[0] for p in pts])
            if arm == 'B':
                xs = xs * 1.06  # dodge
            if arm == 'EMA':
                xs = xs * 0.94
            if key == 'final':
                ys = [p[1]['final_mean'] for p in pts]
                es = [p[1]['final_std'] for p in pts]
                ax.errorbar(xs, ys, es, capsize=3, **st)
                for x, p in zip(xs, pts):  # individual seeds
                    ax.scatter([x] * len(p[1]['final']), p[1]['final'],
                               s=6, color=st['color'], alpha=0.35)
            else:
                ys = [np.nan if p[1]['ep_mean'] is None else p[1]['ep_mean']
                      for p in pts]
                es = [0 if p[1]['ep_std'] is None else p[1]['ep_std']
                      for p in pts]
                ax.errorbar(xs, ys, es, capsize=3, **st)
                for x, p in zip(xs, pts):
                    miss = p[1]['n'] - p[1]['reached']
                    if miss:
                        dx = {'A': 1 / 1.15, 'B': 1.15}.get(arm, 0.75)
                        ax.annotate(f'{miss}/{p[1]["n"]} never',
                                    (x * dx, epochs + 0.6),
                                    color=st['color'], fontsize=7,
                                    ha='center', rotation=90, va='bottom')
        ema_b = summ.get(f'EMA_m{ARM_B_MOMENTUM:g}'.replace('.', 'p'))
        for ref, col, lab in ((b, 'k', 'baseline'),
                              (ema_b, 'C1', f'EMA m = {ARM_B_MOMENTUM:g} '
                               '(partner of arm B)')):
            if ref is None:
                continue
            if key == 'final':
                mu, sd = ref['final_mean'], ref['final_std']
            else:
                mu, sd = ref['ep_mean'], ref['ep_std']
            if mu is None:
                continue
            ax.axhline(mu, color=col, lw=1, label=f'{lab} (mean ± std)')
            ax.axhspan(mu - sd, mu + sd, color=col, alpha=0.1)
        ax.set_xscale('log')
        ax.set_xlim(min(RHOS) / 1.6, max(RHOS) * 1.6)
        ax.set_xticks(RHOS)
        ax.set_xticklabels([f'{r:g}' for r in RHOS])
        ax.set_xlabel('switch ratio rho = T x m  (T in optimizer steps)')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f'final val top-1 % (epoch {epochs}, EMA weights)')
    lo = min(s['final_mean'] - s['final_std'] for s in summ.values()
             if s['arm'] != 'EMA')
    lo = max(lo - 1, 0)
    axes[0].set_ylim(lo, 100)
    for s in summ.values():  # an off-scale EMA: say so at the bottom edge
        if s['arm'] == 'EMA' and s['final_mean'] < lo:
            axes[0].annotate(
                f"EMA m={s['momentum']:.3g}: {s['final_mean']:.1f} ± "
                f"{s['final_std']:.1f} (off scale)",
                (s['rho'] * 0.94, lo), xytext=(2, 8),
                textcoords='offset points', fontsize=7, color='C2',
                arrowprops=dict(arrowstyle='->', color='C2'))
    axes[1].set_ylabel(f'epochs to reach {target:g} % (runs that did)')
    axes[1].set_ylim(0, epochs + 4)
    axes[1].axhline(epochs, color='grey', ls=':', lw=1)
    h, l = axes[0].get_legend_handles_labels()
    axes[1].legend(h, l, fontsize=7, loc='upper right')
    # the same finals against the kept fraction, which depends on T too
    ax = axes[2]
    for arm in ('A', 'B'):
        pts = sorted([s for s in summ.values() if s['arm'] == arm],
                     key=lambda s: s['rho'])
        if not pts:
            continue
        st = dict(styles[arm])
        xs = [kept(s['momentum'], s['T_iters']) for s in pts]
        ax.errorbar(xs, [s['final_mean'] for s in pts],
                    [s['final_std'] for s in pts], capsize=3, **st)
        for x, s in zip(xs, pts):
            ax.annotate(f"{s['rho']:g}", (x, s['final_mean']), fontsize=7,
                        textcoords='offset points', xytext=(4, -10),
                        color=st['color'])
    if b:
        ax.axhline(b['final_mean'], color='k', lw=1)
        ax.axhspan(b['final_mean'] - b['final_std'],
                   b['final_mean'] + b['final_std'], color='k', alpha=0.1)
    ax.set_xscale('log')
    ax.set_xlabel('kept = 1 - (1-(1-m)^T)(1-m)/(mT)  (labels: rho)')
    ax.set_ylabel('final val top-1 %')
    ax.set_ylim(axes[0].get_ylim())
    ax.grid(alpha=0.3)
    n = max(s['n'] for s in summ.values())
    fig.suptitle(f'SEMA switch ratio on digits (mmengine Runner, ResNet_CIFAR, '
                 f'SGD + cosine, {epochs} epochs, {n} seeds)', fontsize=10)
    fig.tight_layout()
    p1 = osp.join(fig_dir, 'ratio_sweep.png')
    fig.savefig(p1, dpi=130)
    plt.close(fig)

    # mean curves: full range (top) and the last few percent (bottom)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    cmap = plt.get_cmap('viridis')
    for col, arm in enumerate(('A', 'B')):
        for row, ylim in enumerate(((0, 100), (90, 99.5))):
            ax = axes[row, col]
            if b:
                ax.plot(range(1, epochs + 1), b['curve_mean'], 'k-', lw=2,
                        label='baseline')
            for i, rho in enumerate(RHOS):
                name = f'{arm}_rho{rho:g}'.replace('.', 'p')
                if name in summ:
                    ax.plot(range(1, epochs + 1), summ[name]['curve_mean'],
                            color=cmap(i / (len(RHOS) - 1)),
                            label=f'rho {rho:g}')
            ax.axhline(target, color='grey', ls=':', lw=1)
            ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(
                    {'A': 'arm A: T = 1 epoch, m = rho / 32',
                     'B': f'arm B: m = {ARM_B_MOMENTUM:g}, T = rho / m it'}[arm],
                    fontsize=9)
                ax.legend(fontsize=7, loc='lower right')
            else:
                ax.set_xlabel('epoch')
        axes[0, 0].set_ylabel('val top-1 % (mean over seeds)')
        axes[1, 0].set_ylabel('zoom')
    fig.tight_layout()
    p2 = osp.join(fig_dir, 'ratio_curves.png')
    fig.savefig(p2, dpi=130)
    plt.close(fig)
    return p1, p2


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=DEFAULT_OUT)
    p.add_argument('--target', type=float, default=97.0)
    p.add_argument('--fig-dir', default=osp.join(ROOT, 'docs', 'figures'))
    a = p.parse_args()
    results = load(a.out)
    summ = summarise(results, a.target)
    with open(osp.join(a.out, 'summary.json'), 'w') as f:
        json.dump(dict(target=a.target, conditions=summ,
                       recipes=recipe_rows()), f, indent=1)
    print(sweep_table(summ, a.target))
    print()
    print(recipe_table())
    print()
    metas = []
    for mp_ in sorted(glob.glob(osp.join(a.out, 'sweep_meta_*.json'))):
        with open(mp_) as f:
            metas.append(json.load(f))
    walls = [r['wall_s'] for r in results]
    print(f'{len(results)} runs, per-run wall {np.mean(walls):.0f} s mean '
          f'({min(walls):.0f}-{max(walls):.0f}), {sum(walls) / 60:.1f} min '
          'summed; sweep invocations: ' + '; '.join(
              f"{m['runs']} runs in {m['sweep_wall_s'] / 60:.1f} min "
              f"({m['workers']} workers)" for m in metas))
    if summ:
        for path in plot(summ, a.target, a.fig_dir):
            print('wrote', path)


if __name__ == '__main__':
    main()
