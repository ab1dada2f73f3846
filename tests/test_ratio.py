"""The switch ratio rho = T * m: logged, warned about, and ``momentum='auto'``
(T in optimizer steps, under both loops, with gradient accumulation and
momentum schedules)."""
import copy
import glob
import math
import os.path as osp

import pytest
import torch.nn as nn
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.model import MomentumAnnealingEMA
from torch.utils.data import DataLoader

from sema_mm import SEMAHook
from sema_mm.hooks.sema_hook import iters_per_epoch
from sema_mm.models import current_momentum
from sema_testing import RegressionDataset, SEMATestCase


class TestSwitchRatio(SEMATestCase):

    def train(self, cfg, **hook):
        cfg = copy.deepcopy(cfg)
        cfg.custom_hooks = [dict(type='SEMAHook', **hook)]
        runner = self.build_runner(cfg)
        runner.train()
        with open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]) as f:
            return runner, f.read()

    def test_ratio_is_logged_at_the_start(self):
        # 4 iterations per epoch, m = 0.2: rho = 0.8, 1 - 0.8^4 = 59.0 %
        _, log = self.train(self.epoch_based_cfg, momentum=0.2)
        self.assertIn(
            'SEMAHook: switching every 1 epoch(s) = 4 iterations = 4 '
            'optimizer steps; momentum 0.2 (paper alpha 0.8); switch ratio '
            'rho = T * m = 0.8: between switches the EMA moves 59.0% of the '
            'way to the model', log)
        self.assertNotIn('is below', log)

    def test_low_ratio_warns_with_the_fix(self):
        # m = 0.05 over 4 steps: rho = 0.2 < 0.5; m >= 0.125 would do
        _, log = self.train(self.epoch_based_cfg, momentum=0.05)
        self.assertIn(
            'WARNING - SEMAHook: switch ratio rho = T * m = 0.2 is below 0.5',
            log)
        self.assertIn('Raise the momentum to >= 0.125 (paper alpha <= 0.875)',
                      log)

    def test_auto_momentum(self):
        for cfg in (self.epoch_based_cfg, self.iter_based_cfg):
            runner, log = self.train(cfg, momentum='auto', target_ratio=2)
            self.assertEqual(self.sema_hook(runner).ema_model.momentum, 0.5)
            self.assertIn('momentum 0.5 (auto)', log)
            self.assertIn('rho = T * m = 2:', log)
        # the default target
        runner, _ = self.train(
            self.epoch_based_cfg, momentum='auto', switch_interval=2)
        self.assertAlmostEqual(
            self.sema_hook(runner).ema_model.momentum,
            SEMAHook.DEFAULT_TARGET_RATIO / 8)

    def test_auto_momentum_counts_optimizer_steps(self):
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.optim_wrapper.accumulative_counts = 2
        runner, log = self.train(
            cfg, momentum='auto', target_ratio=1, switch_interval=2)
        # 8 iterations per switch, 4 optimizer steps: m = 1 / 4
        self.assertEqual(self.sema_hook(runner).ema_model.momentum, 0.25)
        self.assertIn('= 8 iterations = 4 optimizer steps', log)

    def test_auto_momentum_uses_the_averaged_model_type(self):
        runner, _ = self.train(
            self.epoch_based_cfg, ema_type='ExponentialMovingAverage',
            momentum='auto', target_ratio=1)
        self.assertEqual(self.sema_hook(runner).ema_model.momentum, 0.25)

    def test_auto_momentum_errors(self):
        with pytest.raises(ValueError, match='target_ratio.*only used'):
            SEMAHook(momentum=0.01, target_ratio=2)
        with pytest.raises(ValueError, match='switch_interval=None'):
            SEMAHook(momentum='auto', switch_interval=None)
        with pytest.raises(ValueError, match=r'target_ratio.*> 0'):
            SEMAHook(momentum='auto', target_ratio=0)
        with pytest.raises(TypeError, match='target_ratio'):
            SEMAHook(momentum='auto', target_ratio='3')
        with pytest.raises(TypeError, match='momentum'):
            SEMAHook(momentum='fast')
        # rho = 5 over 4 steps would need m = 1.25: refused before any step
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.custom_hooks = [
            dict(type='SEMAHook', momentum='auto', target_ratio=5)
        ]
        runner = self.build_runner(cfg)
        with pytest.raises(ValueError,
                           match=r"momentum='auto'.*1\.25.*longer than 5"):
            runner.train()
        self.assertEqual(runner.iter, 0)

    def test_schedule_value_is_used(self):
        model = nn.Linear(2, 2)
        ema = MomentumAnnealingEMA(model, momentum=0.001, gamma=100)
        self.assertEqual(current_momentum(ema), 1.0)  # step 0: gamma / gamma
        ema.steps.fill_(900)
        self.assertAlmostEqual(current_momentum(ema), 0.1)
        from mmdet.models.layers import ExpMomentumEMA
        ema = ExpMomentumEMA(model, momentum=0.0002, gamma=2000)
        ema.steps.fill_(1999)
        self.assertAlmostEqual(current_momentum(ema),
                               0.9998 * math.exp(-1) + 0.0002)
        cfg = copy.deepcopy(self.epoch_based_cfg)
        import mmdet.models  # noqa: F401
        _, log = self.train(
            cfg, ema_type='mmdet.ExpMomentumEMA', momentum=0.0002, gamma=4)
        # step 0 of the schedule: (1 - m) exp(-1/4) + m
        m0 = 0.9998 * math.exp(-0.25) + 0.0002
        self.assertIn(f'momentum {m0:.6g} (paper alpha', log)


def test_iters_per_epoch_with_infinite_sampler_under_ddp():
    dataset = RegressionDataset()  # 12 samples
    loader = DataLoader(dataset, batch_size=3, sampler=DefaultSampler(
        dataset, shuffle=False))
    assert iters_per_epoch(loader) == 4
    sampler = InfiniteSampler(dataset, shuffle=False)
    loader = DataLoader(dataset, batch_size=3, sampler=sampler)
    assert len(loader) == 4 and iters_per_epoch(loader) == 4
    # 2 ranks: InfiniteSampler still reports the whole data set, but each
    # rank covers its half of an epoch in 2 iterations
    sampler.world_size = 2
    assert len(loader) == 4
    assert iters_per_epoch(loader) == 2
    sampler.world_size = 5  # ceil(12 / 5) = 3 samples per rank: 1 batch
    assert iters_per_epoch(loader) == 1
