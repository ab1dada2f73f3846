"""Cost of one EMA update, side by side, in one run.

Times ``SwitchEMAModel.update_parameters`` against mmengine's
``ExponentialMovingAverage``, torch's ``AveragedModel`` with
``get_ema_multi_avg_fn``, ema-pytorch's ``EMA(use_foreach=True)`` (if
installed) and a bare ``torch._foreach_lerp_`` over the same tensors, on a
model with many small tensors and on a ViT-B-sized one. Also times one SEMA
switch (statistics + copy into the model). Rounds are interleaved in a shuffled
order and the median is reported, so machine noise hits every contestant alike.

Example::

    python tools/benchmark/ema_update.py --repeats 30
"""
import argparse
import random
import statistics
import time

import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from sema_mm import SwitchEMAModel
from sema_mm.models import copy_ema_to, switch_statistics

MOMENTUM = 0.001  # mmengine convention; the paper's alpha = 0.999


def many_tensor_model(blocks=300, width=32):
    """``2 * blocks`` small tensors (weights and biases), no buffers."""
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(blocks)])


def vit_b_model():
    from torchvision.models import vit_b_16
    return vit_b_16(weights=None)


def contestants(model):
    """Name -> zero-argument callable doing one EMA update of ``model``."""
    out = {}
    sema = SwitchEMAModel(model, momentum=MOMENTUM)
    out['sema_mm SwitchEMAModel'] = lambda: sema.update_parameters(model)
    mme = ExponentialMovingAverage(model, momentum=MOMENTUM)
    out['mmengine ExponentialMovingAverage'] = \
        lambda: mme.update_parameters(model)
    swa = AveragedModel(
        model, multi_avg_fn=get_ema_multi_avg_fn(1 - MOMENTUM),
        use_buffers=False)
    out['torch AveragedModel(get_ema_multi_avg_fn)'] = \
        lambda: swa.update_parameters(model)
    try:
        from ema_pytorch import EMA
    except ImportError:
        EMA = None
    if EMA is not None:
        ema_pt = EMA(
            model, beta=1 - MOMENTUM, update_after_step=0, update_every=1,
            use_foreach=True, include_online_model=False)
        out['ema-pytorch EMA(use_foreach=True)'] = ema_pt.update
    bare_avg = [p.detach().clone() for p in model.parameters()]
    bare_src = [p.detach() for p in model.parameters()]

    def bare():
        torch._foreach_lerp_(bare_avg, bare_src, MOMENTUM)

    out['bare torch._foreach_lerp_'] = bare
    return out, sema


def time_all(fns, repeats, inner):
    for fn in fns.values():  # warm-up (first calls copy, lists are built)
        for _ in range(3):
            fn()
    samples = {name: [] for name in fns}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)  # no contestant always follows the same one
        for name in order:
            fn = fns[name]
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(v) for name, v in samples.items()}


def time_switch(sema, model, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        switch_statistics(sema, model)
        copy_ema_to(sema, model)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(title, model, repeats, inner):
    params = list(model.parameters())
    numel = sum(p.numel() for p in params)
    fns, sema = contestants(model)
    medians = time_all(fns, repeats, inner)
    bare = medians['bare torch._foreach_lerp_']
    mme = medians['mmengine ExponentialMovingAverage']
    print(f'\n### {title}: {len(params)} tensors, {numel / 1e6:.2f} M '
          'parameters\n')
    print('| implementation | time / update | vs bare foreach lerp | '
          'speed-up vs mmengine |')
    print('|---|---:|---:|---:|')
    for name, t in medians.items():
        print(f'| {name} | {t * 1e6:,.0f} us | {t / bare:.2f}x | '
              f'{mme / t:.2f}x |')
    switch = time_switch(sema, model, max(3, repeats // 3))
    print(f'\nOne SEMA switch (distance + NaN check + copy into the model): '
          f'{switch * 1e6:,.0f} us = {switch / bare:.1f} EMA updates')
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=20,
                        help='interleaved rounds per contestant (median)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch default)')
    parser.add_argument('--skip-vit', action='store_true',
                        help='only the many-tensor model')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'device cpu, momentum {MOMENTUM}')
    results = {}
    results['many'] = report('Many small tensors (300 x Linear(32, 32))',
                             many_tensor_model(), args.repeats, inner=20)
    if not args.skip_vit:
        results['vit'] = report('ViT-B/16 (torchvision)', vit_b_model(),
                                max(5, args.repeats // 2), inner=1)
    print('\n### Targets')
    for key, res in results.items():
        bare = res['bare torch._foreach_lerp_']
        ours = res['sema_mm SwitchEMAModel']
        ratio = ours / bare
        print(f'- {key}: SwitchEMAModel / bare foreach lerp = {ratio:.2f}x '
              f'(target <= 1.15x): {"met" if ratio <= 1.15 else "NOT met"}')
    many = results['many']
    speedup = many['mmengine ExponentialMovingAverage'] / many[
        'sema_mm SwitchEMAModel']
    print(f'- many: speed-up over mmengine = {speedup:.2f}x (target >= 2x): '
          f'{"met" if speedup >= 2 else "NOT met"}')


if __name__ == '__main__':
    main()
