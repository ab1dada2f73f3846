"""Resume round-trips: stopping and resuming gives bitwise the same model
and EMA; checkpoints load under ``torch.load(weights_only=True)`` without
letting arbitrary globals through."""
import copy
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.logging import HistoryBuffer

from sema_mm.utils.checkpoint import history_buffer_getattr
from sema_testing import SEMATestCase

HOOK = dict(type='SEMAHook', momentum=0.2)


class TestResume(SEMATestCase):

    def train(self, cfg, tag, **overrides):
        cfg = copy.deepcopy(cfg)
        cfg.train_dataloader.sampler.shuffle = True
        cfg.randomness = dict(seed=11)
        cfg.work_dir = osp.join(self.temp_dir.name, tag)
        cfg.custom_hooks = [copy.deepcopy(HOOK)]
        for k, v in overrides.items():
            cfg[k] = v
        runner = self.build_runner(cfg)
        runner.train()
        return runner

    def assert_same_state(self, a, b):
        for x, y in zip(a.model.state_dict().values(),
                        b.model.state_dict().values()):
            self.assertTrue(torch.equal(x, y))
        ema_a = self.sema_hook(a).ema_model.state_dict()
        ema_b = self.sema_hook(b).ema_model.state_dict()
        self.assertEqual(ema_a.keys(), ema_b.keys())
        for k in ema_a:
            self.assertTrue(torch.equal(ema_a[k], ema_b[k]), k)

    def test_resume_at_epoch_boundary_is_bitwise(self):
        full = self.train(self.epoch_based_cfg, 'full')
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.train_cfg.max_epochs = 2
        self.train(cfg, 'part')
        ckpt = osp.join(self.temp_dir.name, 'part', 'epoch_2.pth')
        resumed = self.train(
            self.epoch_based_cfg, 'part', resume=True, load_from=ckpt)
        self.assertEqual(resumed.iter, 12)
        self.assertEqual(int(self.sema_hook(resumed).ema_model.steps), 12)
        self.assert_same_state(full, resumed)

    def test_resume_mid_interval_iter_based_is_bitwise(self):
        # switches every epoch = 4 iterations; stop at iteration 5
        cfg = copy.deepcopy(self.iter_based_cfg)
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=5, by_epoch=False)
        full = self.train(cfg, 'full')
        part_cfg = copy.deepcopy(cfg)
        part_cfg.train_cfg.max_iters = 5
        self.train(part_cfg, 'part')
        ckpt = osp.join(self.temp_dir.name, 'part', 'iter_5.pth')
        resumed = self.train(cfg, 'part', resume=True, load_from=ckpt)
        self.assertEqual(resumed.iter, 12)
        self.assert_same_state(full, resumed)
        with open(osp.join(resumed.log_dir,
                           osp.basename(resumed.log_dir) + '.log')) as f:
            log = f.read()
        # the switch count follows from the iteration after resume
        self.assertIn('SEMAHook: switch 2 (epoch 1, iter 8)', log)
        self.assertIn('SEMAHook: switch 3 (epoch 1, iter 12)', log)

    def test_checkpoint_loads_with_weights_only(self):
        self.train(self.epoch_based_cfg, 'run')
        ckpt = torch.load(
            osp.join(self.temp_dir.name, 'run', 'epoch_3.pth'),
            weights_only=True)
        self.assertIsInstance(ckpt['message_hub']['log_scalars']['train/loss'],
                              HistoryBuffer)
        self.assertIn('ema_state_dict', ckpt)
        # a fresh process, where no HistoryBuffer was made yet, loads it too
        code = ('import sys, torch, sema_mm; '
                'c = torch.load(sys.argv[1], weights_only=True); '
                'print(sorted(c["ema_state_dict"]))')
        out = subprocess.run(
            [sys.executable, '-c', code,
             osp.join(self.temp_dir.name, 'run', 'epoch_3.pth')],
            capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        self.assertIn("'module.linear1.weight'", out.stdout)

    def test_load_from_checkpoint_without_ema(self):
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.work_dir = osp.join(self.temp_dir.name, 'plain')
        plain = self.build_runner(cfg)
        plain.train()
        ckpt_path = osp.join(cfg.work_dir, 'epoch_3.pth')
        state = torch.load(ckpt_path)['state_dict']
        self.assertNotIn('ema_state_dict', torch.load(ckpt_path))
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.work_dir = osp.join(self.temp_dir.name, 'sema')
        cfg.load_from = ckpt_path
        cfg.custom_hooks = [copy.deepcopy(HOOK), dict(type='Probe')]
        runner = self.build_runner(cfg)
        runner.train()
        probe = next(h for h in runner.hooks if type(h).__name__ == 'Probe')
        seen = probe.initial_ema  # the EMA once the checkpoint is loaded
        self.assertEqual(seen.keys(), state.keys())
        for k in state:
            self.assertTrue(torch.equal(seen[k], state[k]), k)


class Evil:

    def __reduce__(self):
        return (os.getcwd, ())


class EvilGetattr:

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


class TestWeightsOnlyStaysOn(SEMATestCase):

    def test_arbitrary_globals_are_refused(self):
        import sema_mm  # noqa: F401 allow-lists the mmengine data types
        path = osp.join(self.temp_dir.name, 'evil.pth')
        torch.save({'state_dict': {}, 'x': Evil()}, path)
        with pytest.raises(pickle.UnpicklingError, match='getcwd'):
            torch.load(path)
        # nor through load_from, before any training step
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.load_from = path
        cfg.custom_hooks = [copy.deepcopy(HOOK)]
        runner = self.build_runner(cfg)
        with pytest.raises(pickle.UnpicklingError):
            runner.train()
        self.assertEqual(runner.iter, 0)

    def test_getattr_is_restricted_to_history_buffers(self):
        path = osp.join(self.temp_dir.name, 'evil_getattr.pth')
        torch.save({'x': EvilGetattr()}, path)
        with pytest.raises(Exception, match='refusing getattr'):
            torch.load(path)
        buf = HistoryBuffer()
        buf.update(3.0)
        self.assertEqual(history_buffer_getattr(buf, 'mean')(), 3.0)
        for obj, name in [(buf, '__class__'), (HistoryBuffer, '__init__'),
                          (os, 'system'), (buf, 'update')]:
            with pytest.raises(TypeError, match='refusing getattr'):
                history_buffer_getattr(obj, name)
