"""Train one digits run with the real mmengine Runner (mmpretrain model).

    python experiments/digits/run.py --method sema --alpha 0.9 --T 1 --seed 0 \
        --work-dir work_dirs/digits/sema_a0.9_T1/seed0

``--alpha`` is the paper's decay; the hooks get mmengine's
``momentum = 1 - alpha``.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
CONFIG = osp.join(ROOT, 'experiments', 'digits', 'config.py')


def hook_cfg(method, alpha=None, T=None):
    if method == 'baseline':
        return []
    momentum = round(1.0 - alpha, 10)
    if method == 'ema':
        return [dict(type='EMAHook', momentum=momentum)]
    if method == 'sema':
        return [dict(type='SEMAHook', momentum=momentum, switch_interval=T)]
    raise ValueError(method)


def build_cfg(method, alpha, T, seed, work_dir, max_epochs=None,
              checkpoint=True):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.custom_hooks = hook_cfg(method, alpha, T)
    if max_epochs is not None:
        cfg.train_cfg.max_epochs = max_epochs
        cfg.param_scheduler[0].T_max = max_epochs
        cfg.default_hooks.checkpoint.interval = max_epochs
    if not checkpoint:
        cfg.default_hooks.checkpoint = None
    return cfg


def read_val_curve(work_dir):
    """Per-epoch val top-1 from the newest vis_data/scalars.json."""
    sys.path.insert(0, osp.join(ROOT, "tools", "analysis"))
    from plot_curves import load_scalars
    recs = load_scalars(work_dir)
    return [r['accuracy/top1'] for r in recs if 'accuracy/top1' in r]


def train_one(method, alpha, T, seed, work_dir, max_epochs=None):
    import torch
    torch.set_num_threads(1)
    from mmengine.runner import Runner
    cfg = build_cfg(method, alpha, T, seed, work_dir, max_epochs)
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    wall = time.time() - t0
    curve = read_val_curve(work_dir)
    res = dict(method=method, alpha=alpha, T=T, seed=seed, wall_s=wall,
               top1=curve, final_top1=curve[-1] if curve else None,
               work_dir=work_dir)
    with open(osp.join(work_dir, 'result.json'), 'w') as f:
        json.dump(res, f)
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--method', choices=['baseline', 'ema', 'sema'], required=True)
    p.add_argument('--alpha', type=float, default=0.999)
    p.add_argument('--T', type=float, default=1.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-epochs', type=int, default=None)
    p.add_argument('--work-dir', required=True)
    a = p.parse_args()
    T = int(a.T) if float(a.T).is_integer() else a.T
    r = train_one(a.method, a.alpha, T, a.seed, a.work_dir, a.max_epochs)
    print(json.dumps({k: v for k, v in r.items() if k != 'top1'}))


if __name__ == '__main__':
    main()
