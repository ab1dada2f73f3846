"""Item 5: what EMA / SEMA cost in the item-2 setup (digits, mmpretrain
ResNet-18/8, real mmengine Runner), all three in one process.

Throughput: ``runner.train()`` of ``--epochs`` epochs (no validation, no
checkpoints) for no hook / EMAHook / SEMAHook, interleaved ``--repeats``
times (A B C A B C ...) so that machine-load drift hits all three alike;
median wall time -> iterations/s and ratios. The hook's own
``after_train_iter`` is also timed directly (ms per iteration).
Memory: bytes of the EMA copy (averaged tensors + buffers of the averaged
model) vs the model's parameter bytes.

    python experiments/cost/cost.py --out work_dirs/sema_results/cost
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'experiments', 'digits'))

VARIANTS = [('no hook', 'baseline', None, None),
            ('EMAHook', 'ema', 0.9, None),
            ('SEMAHook', 'sema', 0.9, 1)]


def one(method, alpha, T, epochs, tmp):
    import torch
    from mmengine.runner import Runner
    from run import build_cfg
    cfg = build_cfg(method, alpha, T, 0, osp.join(tmp, method), epochs,
                    checkpoint=False)
    cfg.train_cfg.val_interval = 10**6
    cfg.default_hooks.logger.interval = 10**6
    runner = Runner.from_cfg(cfg)
    hook = next((h for h in runner.hooks
                 if type(h).__name__ in ('EMAHook', 'SEMAHook')), None)
    hook_t = [0.0, 0]
    if hook is not None:
        orig = hook.after_train_iter

        def timed(*a, **k):
            t = time.perf_counter()
            orig(*a, **k)
            hook_t[0] += time.perf_counter() - t
            hook_t[1] += 1
        hook.after_train_iter = timed
    t0 = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - t0
    iters = runner.iter
    mem = None
    if hook is not None:
        model = runner.model
        ema = hook.ema_model
        p_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        b_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
        e_bytes = sum(t.numel() * t.element_size()
                      for t in ema.state_dict().values())
        mem = dict(param_bytes=p_bytes, buffer_bytes=b_bytes, ema_bytes=e_bytes,
                   n_params=sum(p.numel() for p in model.parameters()))
    return dict(wall=wall, iters=iters,
                hook_ms=1e3 * hook_t[0] / max(hook_t[1], 1), mem=mem)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--out', default=osp.join(ROOT, 'work_dirs', 'sema_results',
                                             'cost'))
    a = p.parse_args()
    import torch
    torch.set_num_threads(1)
    res = {n: [] for n, *_ in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        one('baseline', None, None, 1, tmp)  # warm-up (imports, caches)
        for r in range(a.repeats):
            for name, method, alpha, T in VARIANTS:
                res[name].append(one(method, alpha, T, a.epochs, tmp))
                print(f'[cost] {name} repeat {r}: '
                      f'{res[name][-1]["wall"]:.2f}s', flush=True)
    summ = {}
    base = np.median([x['wall'] for x in res['no hook']])
    for name, *_ in VARIANTS:
        walls = [x['wall'] for x in res[name]]
        iters = res[name][0]['iters']
        summ[name] = dict(
            median_wall_s=float(np.median(walls)), walls=walls, iters=iters,
            iters_per_s=float(iters / np.median(walls)),
            time_ratio=float(np.median(walls) / base),
            hook_ms_per_iter=float(np.median([x['hook_ms'] for x in res[name]])),
            mem=res[name][0]['mem'])
        print(f'{name:8s} {summ[name]["iters_per_s"]:.1f} it/s  ratio '
              f'{summ[name]["time_ratio"]:.3f}  hook '
              f'{summ[name]["hook_ms_per_iter"]:.3f} ms/it  mem '
              f'{summ[name]["mem"]}')
    os.makedirs(a.out, exist_ok=True)
    with open(osp.join(a.out, 'summary.json'), 'w') as f:
        json.dump(dict(epochs=a.epochs, repeats=a.repeats, variants=summ), f,
                  indent=1)


if __name__ == '__main__':
    main()
