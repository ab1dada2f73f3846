"""Per-iteration cost of the EMA hooks inside a real mmengine runner.

Trains the same model with no hook, mmengine's ``EMAHook`` and ``SEMAHook``
(switching every epoch), in interleaved rounds within one run, and prints
the median iteration time (mmengine's ``train/time``, which spans all hooks
of an iteration) and the wall time of each run, with ratios to no hook.

Example::

    python tools/benchmark/hook_overhead.py --rounds 3 --iters 60
"""
import argparse
import copy
import logging
import statistics
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import Runner
from mmengine.visualization import Visualizer
from torch.utils.data import Dataset

import sema_mm  # noqa: F401 registers SEMAHook


@MODELS.register_module(force=True)
class ManyTensorMLP(BaseModel):
    """``2 * depth`` small parameter tensors: the EMA's worst case."""

    def __init__(self, depth=150, width=32, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.layers = nn.ModuleList(
            [nn.Linear(width, width) for _ in range(depth)])
        self.head = nn.Linear(width, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        for layer in self.layers:
            x = x + 0.1 * torch.tanh(layer(x))
        out = self.head(x).squeeze(-1)
        if mode == 'loss':
            y = torch.stack(data_samples) if isinstance(
                data_samples, list) else data_samples
            return dict(loss=F.mse_loss(out, y))
        return out


@DATASETS.register_module(force=True)
class RandomRegression(Dataset):
    METAINFO = dict()

    def __init__(self, size=256, width=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(size, width, generator=g)
        self.y = torch.randn(size, generator=g)

    @property
    def metainfo(self):
        return self.METAINFO

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


HOOKS = {
    'no hook': [],
    'EMAHook': [dict(type='EMAHook', momentum=0.001)],
    'SEMAHook': [dict(type='SEMAHook', momentum=0.001, switch_interval=1)],
}


def build_cfg(work_dir, iters, batch_size, hooks):
    return dict(
        work_dir=work_dir,
        model=dict(type='ManyTensorMLP'),
        train_dataloader=dict(
            dataset=dict(type='RandomRegression', size=iters * batch_size),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=batch_size,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=10 ** 6),
            checkpoint=None),
        custom_hooks=copy.deepcopy(hooks),
        log_level='WARNING',
        randomness=dict(seed=0))


def run_once(name, iters, batch_size, tag):
    with tempfile.TemporaryDirectory() as work_dir:
        cfg = build_cfg(work_dir, iters, batch_size, HOOKS[name])
        cfg['experiment_name'] = f'overhead_{tag}'
        runner = Runner.from_cfg(cfg)
        start = time.perf_counter()
        runner.train()
        wall = time.perf_counter() - start
        times = runner.message_hub.get_scalar('train/time').data[0]
        logging.shutdown()
    for registry in (MMLogger, Visualizer, MessageHub):
        registry._instance_dict.clear()
    return list(times[3:]), wall  # skip the warm-up iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--iters', type=int, default=60,
                        help='iterations per epoch (2 epochs per run)')
    parser.add_argument('--batch-size', type=int, default=16)
    args = parser.parse_args()
    per_iter = {k: [] for k in HOOKS}
    walls = {k: [] for k in HOOKS}
    for r in range(args.rounds):
        for name in HOOKS:
            times, wall = run_once(name, args.iters, args.batch_size,
                                   f'{r}_{name.replace(" ", "_")}')
            per_iter[name] += times
            walls[name].append(wall)
    params = sum(p.numel() for p in ManyTensorMLP().parameters())
    tensors = len(list(ManyTensorMLP().parameters()))
    print(f'ManyTensorMLP: {tensors} tensors, {params / 1e3:.0f} k params; '
          f'{args.rounds} interleaved rounds x 2 epochs x {args.iters} '
          f'iterations, batch {args.batch_size}, '
          f'{torch.get_num_threads()} threads\n')
    base_it = statistics.median(per_iter['no hook'])
    base_wall = statistics.median(walls['no hook'])
    print('| hook | median time / iter | vs no hook | median wall / run | '
          'vs no hook |')
    print('|---|---:|---:|---:|---:|')
    for name in HOOKS:
        it = statistics.median(per_iter[name])
        wall = statistics.median(walls[name])
        print(f'| {name} | {it * 1e3:.2f} ms | {it / base_it:.3f}x | '
              f'{wall:.2f} s | {wall / base_wall:.3f}x |')


if __name__ == '__main__':
    main()
