"""A small Switch EMA run, end to end, on data it makes itself.

Writes a two-spirals classification set to ``<work-dir>/data.npz``, trains an
MLP with mmengine's ``Runner`` and ``SEMAHook`` (switching every epoch),
validates the EMA weights every epoch, then checks that stopping after
epoch 3 and resuming gives bitwise the same model and EMA as the
uninterrupted run. Takes well under a minute on a laptop CPU.

Example::

    python tools/demo.py --work-dir work_dirs/demo
"""
import argparse
import copy
import logging
import os
import os.path as osp

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import EMAHook
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from mmengine.runner import Runner
from mmengine.visualization import Visualizer
from torch.utils.data import Dataset

import sema_mm  # noqa: F401 registers SEMAHook


def make_spirals(path, n=600, noise=0.25, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1, n)) * 3 * np.pi
    label = rng.integers(0, 2, n)
    sign = np.where(label == 0, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], 1) / 5
    x += rng.normal(0, noise, x.shape)
    order = rng.permutation(n)
    np.savez(path, x=x[order].astype(np.float32), y=label[order])


@DATASETS.register_module(force=True)
class SpiralDataset(Dataset):
    """The first ``400`` points train, the rest validate."""
    METAINFO = dict(classes=('a', 'b'))

    def __init__(self, data_file, split='train', num_train=400):
        data = np.load(data_file)
        part = slice(0, num_train) if split == 'train' else slice(
            num_train, None)
        self.x = torch.from_numpy(data['x'][part])
        self.y = torch.from_numpy(data['y'][part])

    @property
    def metainfo(self):
        return self.METAINFO

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


@MODELS.register_module(force=True)
class SpiralMLP(BaseModel):

    def __init__(self, width=64, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.net = nn.Sequential(
            nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width),
            nn.ReLU(), nn.Linear(width, 2))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        logits = self.net(x)
        if mode == 'loss':
            y = torch.stack(data_samples)
            return dict(loss=F.cross_entropy(logits, y))
        if mode == 'predict':
            return list(zip(logits.argmax(1), data_samples))
        return logits


@METRICS.register_module(force=True)
class SpiralAccuracy(BaseMetric):
    default_prefix = 'spiral'

    def process(self, data_batch, data_samples):
        self.results += [int(p == y) for p, y in data_samples]

    def compute_metrics(self, results):
        return dict(accuracy=100.0 * sum(results) / len(results))


def build_cfg(work_dir, data_file, max_epochs, resume_from=None):
    def loader(split, shuffle):
        return dict(
            dataset=dict(type='SpiralDataset', data_file=data_file,
                         split=split),
            sampler=dict(type='DefaultSampler', shuffle=shuffle),
            batch_size=20,
            num_workers=0)

    return dict(
        work_dir=work_dir,
        model=dict(type='SpiralMLP'),
        train_dataloader=loader('train', True),
        val_dataloader=loader('val', False),
        val_evaluator=dict(type='SpiralAccuracy'),
        val_cfg=dict(),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs,
                       val_interval=1),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=10),
            checkpoint=dict(type='CheckpointHook', interval=1)),
        # 20 iterations per epoch: momentum 0.1 gives rho = T * m = 2
        custom_hooks=[
            dict(type='SEMAHook', momentum=0.1, switch_interval=1)
        ],
        randomness=dict(seed=0),
        resume=resume_from is not None,
        load_from=resume_from,
        experiment_name=osp.basename(work_dir))


def train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    ema = next(h for h in runner.hooks if isinstance(h, EMAHook)).ema_model
    state = (copy.deepcopy(runner.model.state_dict()),
             copy.deepcopy(ema.state_dict()))
    metrics = runner.message_hub.get_scalar('val/spiral/accuracy')
    accuracy = metrics.current() if metrics is not None else None
    logging.shutdown()
    for registry in (MMLogger, Visualizer, MessageHub):
        registry._instance_dict.clear()
    return state, accuracy


def same(a, b):
    return all(
        torch.equal(a[i][k], b[i][k]) for i in range(2) for k in a[i])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--epochs', type=int, default=10)
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    data_file = osp.join(args.work_dir, 'data.npz')
    make_spirals(data_file)
    full_dir = osp.join(args.work_dir, 'full')
    part_dir = osp.join(args.work_dir, 'stop_and_resume')
    full, accuracy = train(build_cfg(full_dir, data_file, args.epochs))
    stop = args.epochs // 2
    train(build_cfg(part_dir, data_file, stop))
    resumed, _ = train(
        build_cfg(part_dir, data_file, args.epochs,
                  osp.join(part_dir, f'epoch_{stop}.pth')))
    logger = MMLogger.get_instance('sema_demo', log_level='INFO')
    logger.info(f'data: {data_file}; logs and checkpoints: {full_dir}')
    logger.info(f'validation accuracy of the EMA weights after '
                f'{args.epochs} epochs: {accuracy:.1f} %')
    ok = same(full, resumed)
    logger.info(f'stop after epoch {stop} and resume: model and EMA '
                f'{"bitwise identical" if ok else "DIFFER"} to the '
                'uninterrupted run')
    if not ok:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
