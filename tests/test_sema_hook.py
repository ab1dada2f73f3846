"""SEMAHook, one test per stage, through a real ``runner.train()``."""
import copy
import glob
import json
import os
import os.path as osp

from fractions import Fraction

import pytest
import torch
from mmengine.hooks import EMAHook
from mmengine.logging import MessageHub
from mmengine.registry import HOOKS

from sema_mm import SEMAHook, SwitchEMAModel
from sema_testing import (SEMATestCase, ceil_multiples, hand_loop)

MOMENTUM = 0.2


class TestRegistration(SEMATestCase):

    def test_root_and_downstream_scopes(self):
        import mmdet.registry
        import mmpretrain.registry
        self.assertIs(HOOKS.get('SEMAHook'), SEMAHook)
        for registry in (mmdet.registry.HOOKS, mmpretrain.registry.HOOKS):
            hook = registry.build(dict(type='SEMAHook', momentum=0.001))
            self.assertIsInstance(hook, SEMAHook)
            self.assertIsInstance(hook, EMAHook)
        for scope in ('mmdet', 'mmpretrain'):
            cfg = copy.deepcopy(self.epoch_based_cfg)
            cfg.default_scope = scope
            cfg.custom_hooks = [dict(type='SEMAHook')]
            runner = self.build_runner(cfg)
            self.assertIsInstance(self.sema_hook(runner), SEMAHook)


BAD_ARGUMENTS = [
    (dict(momentum=0), ValueError, r'momentum.*\(0, 1\)'),
    (dict(momentum=1.0), ValueError, r'momentum.*\(0, 1\)'),
    (dict(momentum=-0.1), ValueError, r'momentum.*\(0, 1\)'),
    (dict(momentum='0.001'), TypeError, 'momentum'),
    (dict(momentum=None), TypeError, 'momentum'),
    (dict(switch_interval=0), ValueError, r'switch_interval.*> 0'),
    (dict(switch_interval=-1), ValueError, r'switch_interval.*> 0'),
    (dict(switch_interval=float('nan')), ValueError, 'switch_interval'),
    (dict(switch_interval='1'), TypeError, 'switch_interval'),
    (dict(switch_interval=True), TypeError, 'switch_interval'),
    (dict(switch_interval=2.5, switch_by_epoch=False), TypeError,
     r'switch_interval.*integer'),
    (dict(switch_interval=0, switch_by_epoch=False), ValueError,
     'switch_interval'),
    (dict(switch_by_epoch='yes'), TypeError, 'switch_by_epoch'),
    (dict(begin_iter=-1), ValueError, r'begin_iter.*>= 0'),
    (dict(begin_epoch=-2), ValueError, r'begin_epoch.*>= 0'),
    (dict(begin_epoch=1.5), TypeError, 'begin_epoch'),
    (dict(begin_iter=2, begin_epoch=1), ValueError,
     'begin_iter.*begin_epoch'),
    (dict(nonfinite='ignore'), ValueError, r'nonfinite.*warn.*raise'),
]


class TestInit(SEMATestCase):

    def test_bad_arguments_fail_when_the_runner_is_built(self):
        for kwargs, exc, pattern in BAD_ARGUMENTS:
            with self.subTest(**{k: repr(v) for k, v in kwargs.items()}):
                with pytest.raises(exc, match=pattern):
                    SEMAHook(**kwargs)
                cfg = copy.deepcopy(self.epoch_based_cfg)
                cfg.custom_hooks = [dict(type='SEMAHook', **kwargs)]
                with pytest.raises(exc, match=pattern):
                    self.build_runner(cfg)
        self.assertEqual(glob.glob(osp.join(self.temp_dir.name, '*.pth')), [])

    def test_bad_momentum_of_another_ema_type(self):
        with pytest.raises(ValueError, match='momentum'):
            SEMAHook(ema_type='ExponentialMovingAverage', momentum=2)

    def test_defaults(self):
        hook = SEMAHook()
        self.assertEqual(hook.switch_interval, 1)
        self.assertTrue(hook.switch_by_epoch)
        self.assertEqual(hook.ema_cfg, dict(type='SwitchEMAModel'))
        self.assertEqual(hook.priority, 'NORMAL')


class TestBeforeRun(SEMATestCase):

    def test_builds_the_averaged_model(self):
        for ema_type, cls_name in [('SwitchEMAModel', 'SwitchEMAModel'),
                                   ('MomentumAnnealingEMA',
                                    'MomentumAnnealingEMA')]:
            cfg = copy.deepcopy(self.epoch_based_cfg)
            cfg.custom_hooks = [
                dict(type='SEMAHook', ema_type=ema_type, momentum=0.01)
            ]
            runner = self.build_runner(cfg)
            hook = self.sema_hook(runner)
            hook.before_run(runner)
            self.assertEqual(type(hook.ema_model).__name__, cls_name)
            self.assertEqual(hook.ema_model.momentum, 0.01)
            self.assertIs(hook.src_model, runner.model)


class TestBeforeTrain(SEMATestCase):

    def resolved(self, cfg, **kwargs):
        cfg = copy.deepcopy(cfg)
        cfg.custom_hooks = [dict(type='SEMAHook', **kwargs)]
        runner = self.build_runner(cfg)
        hook = self.sema_hook(runner)
        hook.before_run(runner)
        hook.before_train(runner)
        return hook.switch_iters

    def test_interval_in_iterations(self):
        # 12 samples, batch 3: an epoch is 4 iterations
        self.assertEqual(self.resolved(self.epoch_based_cfg), 4)
        self.assertEqual(
            self.resolved(self.epoch_based_cfg, switch_interval=0.5), 2)
        self.assertEqual(
            self.resolved(self.epoch_based_cfg, switch_interval=2.5), 10)
        self.assertEqual(
            self.resolved(self.epoch_based_cfg, switch_interval=0.3),
            Fraction(6, 5))
        self.assertEqual(
            self.resolved(
                self.epoch_based_cfg, switch_interval=3,
                switch_by_epoch=False), 3)
        # an epoch is len(train_dataloader) under IterBasedTrainLoop too
        self.assertEqual(self.resolved(self.iter_based_cfg), 4)
        self.assertIsNone(
            self.resolved(self.epoch_based_cfg, switch_interval=None))

    def test_interval_below_one_iteration_fails_before_training(self):
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.custom_hooks = [
            dict(type='SEMAHook', switch_interval=0.2),
            dict(type='Probe')
        ]
        runner = self.build_runner(cfg)
        before = copy.deepcopy(runner.model.state_dict())
        with pytest.raises(ValueError,
                           match=r'switch_interval.*0\.8 iterations.*>= 0\.25'):
            runner.train()
        self.assertEqual(runner.iter, 0)
        for k, v in runner.model.state_dict().items():
            self.assertTrue(torch.equal(v, before[k]))
        self.assertEqual(glob.glob(osp.join(self.temp_dir.name, '*.pth')), [])


class TestSwitchDue(SEMATestCase):

    def test_switch_iterations(self):
        hook = SEMAHook()
        for interval, expected in [(Fraction(4), {4, 8, 12}),
                                   (Fraction(5, 2), {3, 5, 8, 10}),
                                   (Fraction(1), set(range(1, 13)))]:
            hook.switch_iters = interval
            got = {n for n in range(1, 13) if hook.switch_due(n)}
            self.assertEqual(got, expected)
            self.assertEqual(got, ceil_multiples(float(interval), 12))


class TestAfterTrainIter(SEMATestCase):
    """The runner against the hand-written loop (same data, same init)."""

    def run_and_compare(self, cfg, hook_kwargs, switch_at, num_iters=12,
                        accumulate=1, ema_start=1):
        cfg = copy.deepcopy(cfg)
        cfg.custom_hooks = [
            dict(type='SEMAHook', momentum=MOMENTUM, **hook_kwargs),
            dict(type='Probe')
        ]
        runner = self.build_runner(cfg)
        runner.train()
        probe = next(h for h in runner.hooks if type(h).__name__ == 'Probe')
        params, ema, distances = hand_loop(
            probe.initial, MOMENTUM, self.lr, num_iters, 3, switch_at,
            accumulate=accumulate, ema_start=ema_start)
        hook = self.sema_hook(runner)
        self.assert_params_close(
            self.params(runner.model), params, rtol=1e-5, atol=1e-6)
        self.assert_params_close(
            self.params(hook.ema_model.module), ema, rtol=1e-5, atol=1e-6)
        return runner, distances

    def test_epoch_interval(self):
        runner, distances = self.run_and_compare(self.epoch_based_cfg, {},
                                                 {4, 8, 12})
        self.assertEqual(len(distances), 3)
        # the model was switched after the last iteration: it is the EMA
        hook = self.sema_hook(runner)
        for p, e in zip(runner.model.parameters(),
                        hook.ema_model.module.parameters()):
            self.assertTrue(torch.equal(p, e))

    def test_fractional_epoch_interval(self):
        self.run_and_compare(self.epoch_based_cfg, dict(switch_interval=0.5),
                             {2, 4, 6, 8, 10, 12})
        self.run_and_compare(self.epoch_based_cfg,
                             dict(switch_interval=0.625), {3, 5, 8, 10})

    def test_iteration_interval(self):
        self.run_and_compare(self.epoch_based_cfg,
                             dict(switch_interval=5, switch_by_epoch=False),
                             {5, 10})

    def test_iter_based_loop(self):
        self.run_and_compare(self.iter_based_cfg, {}, {4, 8, 12})
        self.run_and_compare(self.iter_based_cfg,
                             dict(switch_interval=0.75), {3, 6, 9, 12})

    def test_no_switch(self):
        runner, _ = self.run_and_compare(self.epoch_based_cfg,
                                         dict(switch_interval=None), set())
        self.assertFalse(
            MessageHub.get_current_instance().log_scalars.get(
                'train/sema_distance'))

    def test_begin_epoch(self):
        # the EMA starts with epoch 2 (iteration 5): no switch after epoch 1
        self.run_and_compare(self.epoch_based_cfg, dict(begin_epoch=2),
                             {8, 12}, ema_start=5)

    def test_gradient_accumulation_steps_ema_once_per_optimizer_step(self):
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.optim_wrapper.accumulative_counts = 2
        runner, _ = self.run_and_compare(cfg, {}, {4, 8, 12}, accumulate=2)
        self.assertEqual(int(self.sema_hook(runner).ema_model.steps), 6)

    def test_other_averaged_models_switch(self):
        for ema_type in ('ExponentialMovingAverage', 'MomentumAnnealingEMA',
                         'mmdet.ExpMomentumEMA'):
            with self.subTest(ema_type=ema_type):
                if ema_type.startswith('mmdet.'):
                    import mmdet.models  # noqa: F401 registers ExpMomentumEMA
                cfg = copy.deepcopy(self.epoch_based_cfg)
                cfg.custom_hooks = [
                    dict(type='SEMAHook', ema_type=ema_type, momentum=0.1),
                    dict(type='Probe')
                ]
                runner = self.build_runner(cfg)
                runner.train()
                probe = next(h for h in runner.hooks
                             if type(h).__name__ == 'Probe')
                epoch_ends = [r for r in probe.records
                              if r[0] == 'after_train_epoch']
                self.assertEqual(len(epoch_ends), 3)
                for _, _, model_params, ema_params in epoch_ends:
                    self.assert_params_close(model_params, ema_params,
                                             rtol=0, atol=0)


class TestSwitchStage(SEMATestCase):

    def test_switch_before_validation_and_checkpoint(self):
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.custom_hooks = [
            dict(type='SEMAHook', momentum=MOMENTUM, switch_interval=2),
            dict(type='Probe')
        ]
        runner = self.build_runner(cfg)
        runner.train()
        probe = next(h for h in runner.hooks if type(h).__name__ == 'Probe')
        records = {(stage, epoch): (model, ema)
                   for stage, epoch, model, ema in probe.records}
        # epoch 1 (no switch): the model differs from the EMA, validation
        # sees the EMA weights, then gets the training weights back
        model1, ema1 = records[('after_train_epoch', 1)]
        self.assertFalse(all(torch.equal(a, b) for a, b in zip(model1, ema1)))
        self.assert_params_close(records[('before_val_epoch', 1)][0], ema1,
                                 rtol=0, atol=0)
        self.assert_params_close(records[('after_val_epoch', 1)][0], model1,
                                 rtol=0, atol=0)
        # epoch 2 ends with a switch, before the epoch's hooks run
        model2, ema2 = records[('after_train_epoch', 2)]
        self.assert_params_close(model2, ema2, rtol=0, atol=0)
        # the epoch-2 checkpoint holds the switched weights in both places
        ckpt = torch.load(osp.join(self.temp_dir.name, 'epoch_2.pth'))
        names = [n for n, _ in runner.model.named_parameters()]
        for name, value in zip(names, model2):
            self.assertTrue(torch.equal(ckpt['state_dict'][name], value))
            self.assertTrue(
                torch.equal(ckpt['ema_state_dict']['module.' + name], value))
        # the epoch-1 checkpoint: EMA in state_dict, the rest in ema_state
        ckpt = torch.load(osp.join(self.temp_dir.name, 'epoch_1.pth'))
        for name, m, e in zip(names, model1, ema1):
            self.assertTrue(torch.equal(ckpt['state_dict'][name], e))
            self.assertTrue(
                torch.equal(ckpt['ema_state_dict']['module.' + name], m))

    def test_switch_is_logged(self):
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.custom_hooks = [
            dict(type='SEMAHook', momentum=MOMENTUM),
            dict(type='Probe')
        ]
        runner = self.build_runner(cfg)
        runner.train()
        probe = next(h for h in runner.hooks if type(h).__name__ == 'Probe')
        _, _, distances = hand_loop(probe.initial, MOMENTUM, self.lr, 12, 3,
                                    {4, 8, 12})
        log_file = glob.glob(osp.join(runner.log_dir, '*.log'))[0]
        with open(log_file) as f:
            log = f.read()
        for k, n in enumerate((4, 8, 12), start=1):
            self.assertIn(
                f'SEMAHook: switch {k} (epoch {k}, iter {n}): '
                '||param - ema|| / ||param|| = ', log)
        self.assertEqual(log.count('SEMAHook: switch '), 3)
        hub = MessageHub.get_current_instance()
        logged = hub.log_scalars['train/sema_distance'].data[0]
        self.assertEqual(len(logged), 3)
        for got, n in zip(logged, (4, 8, 12)):
            self.assertAlmostEqual(got, distances[n], places=5)
        # and it reached the visualizer backend
        scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
        with open(scalars) as f:
            rows = [json.loads(line) for line in f]
        steps = [r['step'] for r in rows if 'sema/distance' in r]
        self.assertEqual(steps, [4, 8, 12])


class TestNonFinite(SEMATestCase):

    def poison(self, cfg, policy):
        cfg = copy.deepcopy(cfg)
        cfg.custom_hooks = [
            dict(type='SEMAHook', momentum=MOMENTUM, nonfinite=policy)
        ]
        runner = self.build_runner(cfg)
        hook = self.sema_hook(runner)

        def before_train_iter(runner, batch_idx, data_batch=None):
            if runner.iter == 3:  # the EMA turns NaN just before a switch
                hook.ema_model.module.linear1.weight.data[0, 0] = float('nan')

        hook.before_train_iter = before_train_iter
        return runner, hook

    def test_warn_keeps_the_model(self):
        runner, hook = self.poison(self.epoch_based_cfg, 'warn')
        runner.train()
        for p in runner.model.parameters():
            self.assertTrue(torch.isfinite(p).all())
        log_file = glob.glob(osp.join(runner.log_dir, '*.log'))[0]
        with open(log_file) as f:
            log = f.read()
        self.assertIn('WARNING - SEMAHook: the EMA holds NaN/Inf at the '
                      'switch (epoch 1, iter 4)', log)
        self.assertNotIn('SEMAHook: switch 1 ', log)

    def test_raise(self):
        runner, hook = self.poison(self.epoch_based_cfg, 'raise')
        with pytest.raises(RuntimeError, match='NaN/Inf'):
            runner.train()
        self.assertEqual(runner.iter, 3)
        for p in runner.model.parameters():
            self.assertTrue(torch.isfinite(p).all())


class TestNoSwitchEqualsEMAHook(SEMATestCase):

    def train(self, hook_cfg, tag):
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.train_dataloader.sampler.shuffle = True
        cfg.randomness = dict(seed=7)
        cfg.work_dir = osp.join(self.temp_dir.name, tag)
        cfg.custom_hooks = [hook_cfg]
        runner = self.build_runner(cfg)
        runner.train()
        return runner, torch.load(osp.join(cfg.work_dir, 'epoch_3.pth'))

    def test_bitwise_equal(self):
        r1, c1 = self.train(dict(type='EMAHook', momentum=MOMENTUM), 'ema')
        r2, c2 = self.train(
            dict(type='SEMAHook', momentum=MOMENTUM, switch_interval=None),
            'sema')
        self.assertIsInstance(self.sema_hook(r2).ema_model, SwitchEMAModel)
        for a, b in zip(r1.model.state_dict().values(),
                        r2.model.state_dict().values()):
            self.assertTrue(torch.equal(a, b))
        for key in ('state_dict', 'ema_state_dict'):
            self.assertEqual(c1[key].keys(), c2[key].keys())
            for k in c1[key]:
                self.assertTrue(torch.equal(c1[key][k], c2[key][k]), k)
