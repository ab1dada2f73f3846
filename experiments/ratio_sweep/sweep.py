"""Switch-ratio sweep: does rho = T * m alone predict what SEMA does?

Trains the digits experiment (a frozen copy of experiments/digits/config.py in
experiments/ratio_sweep/config.py: mmpretrain ImageClassifier, tiny
ResNet_CIFAR on scikit-learn digits (experiments/digits/dataset.py), SGD +
cosine, batch 32 -> 32 iterations per epoch) with the real mmengine Runner,
for

* ``baseline``: no hook;
* arm ``A`` (interval fixed): SEMAHook, T = 1 epoch = 32 iterations,
  momentum m = rho / 32;
* arm ``B`` (momentum fixed): SEMAHook, m = 0.1 (paper alpha 0.9),
  T = rho / m iterations (``switch_by_epoch=False``);
* ``EMA``: mmengine EMAHook with the momentum of arm A at rho 0.1 and 1
  (m = 1/320, 1/32) and of arm B (m = 0.1, also arm A's rho 3 up to 7 %);
  a budget choice: with m >= 0.3 an EMA trails the model by ~1-3
  iterations and is the baseline up to noise.

for rho in {0.1, 0.3, 1, 3, 10, 30} and several seeds (the seed is shared
across conditions, so comparisons are paired). SEMAHook and EMAHook both
validate on the EMA weights. Every run writes ``<out>/<cond>/seed<k>/result.json``
(per-epoch val top-1, the hook's resolved interval and momentum, wall time);
existing results are skipped, so an interrupted sweep resumes.

    python experiments/ratio_sweep/sweep.py --seeds 5 --epochs 15 --workers 2
    python experiments/ratio_sweep/report.py      # table + figure

``--only`` takes a comma-separated list of condition names (see ``--list``).
"""
import argparse
import glob
import json
import multiprocessing as mp
import os
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RHOS = (0.1, 0.3, 1, 3, 10, 30)
ITERS_PER_EPOCH = 32          # ceil(1000 / 32), DefaultSampler, no drop_last
ARM_B_MOMENTUM = 0.1          # paper alpha 0.9
# EMAHook momenta: arm A at rho 0.1 and 1, and arm B's (= arm A at rho 3
# up to 7 %: 0.09375)
EMA_MOMENTA = (1 / 320, 1 / 32, ARM_B_MOMENTUM)
DEFAULT_OUT = osp.join(ROOT, 'work_dirs', 'ratio_sweep')


def fmt(x):
    return f'{x:g}'.replace('.', 'p')


def conditions():
    """name -> dict(method, momentum, T_iters, arm, rho)."""
    conds = {'baseline': dict(method='baseline', momentum=None, T_iters=None,
                              arm='baseline', rho=None)}
    for rho in RHOS:
        m = rho / ITERS_PER_EPOCH
        conds[f'A_rho{fmt(rho)}'] = dict(method='sema', momentum=m,
                                         T_iters=ITERS_PER_EPOCH, arm='A',
                                         rho=rho)
    for rho in RHOS:
        T = round(rho / ARM_B_MOMENTUM)
        assert abs(T * ARM_B_MOMENTUM - rho) < 1e-9, rho
        conds[f'B_rho{fmt(rho)}'] = dict(method='sema',
                                         momentum=ARM_B_MOMENTUM, T_iters=T,
                                         arm='B', rho=rho)
    for m in EMA_MOMENTA:
        partners = [n for n, c in conds.items()
                    if c['momentum'] is not None and abs(c['momentum'] - m) < 1e-3 * m]
        conds[f'EMA_m{fmt(m)}'] = dict(method='ema', momentum=m, T_iters=None,
                                       arm='EMA', rho=None, partners=partners)
    return conds


def hooks(c):
    if c['method'] == 'baseline':
        return []
    if c['method'] == 'ema':
        return [dict(type='EMAHook', momentum=c['momentum'])]
    # whole epochs by epoch (lands on epoch ends), anything else by iteration
    if c['T_iters'] % ITERS_PER_EPOCH == 0:
        sw = dict(switch_interval=c['T_iters'] // ITERS_PER_EPOCH,
                  switch_by_epoch=True)
    else:
        sw = dict(switch_interval=c['T_iters'], switch_by_epoch=False)
    return [dict(type='SEMAHook', momentum=c['momentum'], **sw)]


CONFIG = osp.join(HERE, 'config.py')


def build_cfg(c, seed, work_dir, epochs):
    """The frozen digits config with this condition's hook."""
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    assert cfg.train_dataloader.batch_size == 32, CONFIG
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.train_cfg.max_epochs = epochs
    cfg.param_scheduler[0].T_max = epochs
    cfg.default_hooks.checkpoint = None
    cfg.custom_hooks = hooks(c)
    return cfg


def read_val_curve(work_dir):
    """Per-epoch val top-1 from the newest <work_dir>/*/vis_data/scalars.json."""
    paths = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(max(paths, key=osp.getmtime)) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return [r['accuracy/top1'] for r in recs if 'accuracy/top1' in r]


def train_one(name, c, seed, out, epochs):
    """One run with the real Runner; returns (and saves) its result."""
    import torch
    torch.set_num_threads(1)
    from mmengine.runner import Runner
    wd = osp.join(out, name, f'seed{seed}')
    res_path = osp.join(wd, 'result.json')
    if osp.exists(res_path):
        with open(res_path) as f:
            old = json.load(f)
        if old.get('epochs') == epochs and old.get('resolved', {}).get(
                'iters_per_epoch') == ITERS_PER_EPOCH:
            return old
    cfg = build_cfg(c, seed, wd, epochs)
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    wall = time.time() - t0
    # what the hook actually resolved (not what we asked for)
    resolved = {}
    for h in runner.hooks:
        if type(h).__name__ in ('SEMAHook', 'EMAHook'):
            resolved['hook'] = type(h).__name__
            resolved['momentum'] = float(h.ema_model.momentum)
            if getattr(h, 'switch_iters', None) is not None:
                resolved['switch_iters'] = float(h.switch_iters)
                resolved['rho'] = float(h.switch_iters) * float(
                    h.ema_model.momentum)
    resolved['iters_per_epoch'] = len(runner.train_dataloader)
    if resolved['iters_per_epoch'] != ITERS_PER_EPOCH:
        raise RuntimeError(f'{resolved["iters_per_epoch"]} iterations per '
                           f'epoch, expected {ITERS_PER_EPOCH}')
    curve = read_val_curve(wd)
    res = dict(name=name, seed=seed, epochs=epochs, wall_s=wall,
               top1=curve, final_top1=curve[-1] if curve else None,
               resolved=resolved, hook_cfg=cfg.custom_hooks, config=CONFIG,
               **c)
    with open(res_path, 'w') as f:
        json.dump(res, f)
    return res


def _job(args):
    name, c, seed, out, epochs = args
    r = train_one(name, c, seed, out, epochs)
    print(f'[ratio] {name} seed {seed}: final top-1 {r["final_top1"]:.2f} '
          f'({r["wall_s"]:.0f}s)', flush=True)
    return r['wall_s']


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, default=5)
    p.add_argument('--epochs', type=int, default=15)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--only', default=None,
                   help='comma-separated condition names')
    p.add_argument('--out', default=DEFAULT_OUT)
    p.add_argument('--list', action='store_true')
    a = p.parse_args()
    conds = conditions()
    if a.list:
        for n, c in conds.items():
            print(n, c, hooks(c))
        return
    names = a.only.split(',') if a.only else list(conds)
    for n in names:
        if n not in conds:
            p.error(f'unknown condition {n}')
    # seed-major order, EMA runs last: a partial sweep has every SEMA
    # condition at the low seeds
    jobs = [(n, conds[n], s, a.out, a.epochs)
            for ema in (False, True) for s in range(a.seeds)
            for n in names if (conds[n]['method'] == 'ema') == ema]
    # import the heavy stack once (~10 s CPU a run otherwise: mmpretrain's
    # models pull in mmdet); forked workers inherit it
    import torch  # noqa: F401
    import mmengine.runner  # noqa: F401
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    import sema_mm  # noqa: F401
    import experiments.digits.dataset  # noqa: F401
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    with mp.get_context('fork').Pool(a.workers, maxtasksperchild=1) as pool:
        walls = pool.map(_job, jobs, chunksize=1)
    total = time.time() - t0
    meta = dict(seeds=a.seeds, epochs=a.epochs, workers=a.workers,
                runs=len(jobs), sweep_wall_s=total,
                run_wall_s_sum=float(sum(walls)), argv=sys.argv[1:])
    with open(osp.join(a.out, f'sweep_meta_{int(t0)}.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    print(f'[ratio] {len(jobs)} runs in {total:.0f}s wall '
          f'({sum(walls):.0f}s summed over runs)', flush=True)


if __name__ == '__main__':
    main()
