"""Shared pieces of the hook, resume and distributed tests: a small
regression model, a fixed data set, and a hand-written PyTorch training loop
that is the reference the runner is compared with."""
import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import EMAHook, Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS
from mmengine.testing import RunnerTestCase
from torch.utils.data import Dataset

NUM_SAMPLES = 12


class RegressionModel(BaseModel):
    """Two linear layers with a mean-squared-error loss (a mean over the
    batch, so 2 x 3 samples under DDP equal 1 x 6 in one process)."""

    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.linear1 = nn.Linear(3, 4)
        self.linear2 = nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if isinstance(inputs, list):
            inputs = torch.stack(inputs)
        out = self.linear2(torch.tanh(self.linear1(inputs))).squeeze(-1)
        if mode == 'loss':
            if isinstance(data_samples, list):
                data_samples = torch.stack(data_samples)
            return dict(loss=F.mse_loss(out, data_samples))
        return out


def make_data():
    g = torch.Generator().manual_seed(2024)
    x = torch.randn(NUM_SAMPLES, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(
        NUM_SAMPLES, generator=g)
    return x, y


class RegressionDataset(Dataset):
    METAINFO = dict()
    data, label = make_data()

    @property
    def metainfo(self):
        return self.METAINFO

    def __len__(self):
        return NUM_SAMPLES

    def __getitem__(self, index):
        return dict(inputs=self.data[index], data_samples=self.label[index])


class Probe(Hook):
    """Records what a test wants to see, at the stages it is asked to."""
    priority = 'LOW'  # after SEMAHook (NORMAL), before CheckpointHook

    def __init__(self):
        self.initial = None
        self.records = []

    def before_train(self, runner):
        self.initial = copy.deepcopy(runner.model.state_dict())
        self.initial_ema = copy.deepcopy(
            self._sema(runner).ema_model.module.state_dict())

    def _sema(self, runner):
        return next(h for h in runner.hooks if isinstance(h, EMAHook))

    def _params(self, module):
        return [p.detach().clone() for p in module.parameters()]

    def after_train_epoch(self, runner):
        sema = self._sema(runner)
        # the loop counts the epoch up only after this stage
        self.records.append(('after_train_epoch', runner.epoch + 1,
                             self._params(runner.model),
                             self._params(sema.ema_model.module)))

    def before_val_epoch(self, runner):
        self.records.append(('before_val_epoch', runner.epoch,
                             self._params(runner.model), None))

    def after_val_epoch(self, runner, metrics=None):
        self.records.append(('after_val_epoch', runner.epoch,
                             self._params(runner.model), None))


def hand_loop(initial_state, momentum, lr, num_iters, batch_size, switch_at,
              accumulate=1, ema_start=1):
    """Plain PyTorch: SGD step -> EMA update (the first copies) -> copy the
    EMA into the model after the iterations in ``switch_at``.

    Samples are taken in order (``shuffle=False``), ``len / batch_size``
    batches per epoch. Returns ``(params, ema, distances)`` where
    ``distances[n]`` is ||param - ema|| / ||param|| just before the switch
    after iteration ``n``.
    """
    x, y = make_data()
    model = RegressionModel()
    model.load_state_dict(initial_state)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=lr)
    iters_per_epoch = NUM_SAMPLES // batch_size
    ema, distances = None, {}
    for n in range(1, num_iters + 1):
        start = ((n - 1) % iters_per_epoch) * batch_size
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        loss = F.mse_loss(model(xb), yb) / accumulate
        loss.backward()
        if n % accumulate:
            continue
        opt.step()
        opt.zero_grad()
        current = [p.detach().clone() for p in params]
        if ema is None or n <= ema_start:
            ema = current
        else:
            ema = [(1 - momentum) * e + momentum * p
                   for e, p in zip(ema, current)]
        if n in switch_at and n >= ema_start:
            num = math.sqrt(sum(((p - e)**2).sum() for p, e in zip(
                current, ema)))
            den = math.sqrt(sum((p**2).sum() for p in current))
            distances[n] = num / den
            with torch.no_grad():
                for p, e in zip(params, ema):
                    p.copy_(e)
    return [p.detach().clone() for p in params], ema, distances


def ceil_multiples(interval_iters, num_iters):
    """The iterations ``ceil(k * T)`` <= num_iters, k = 1, 2, ..."""
    out, k = set(), 1
    while math.ceil(k * interval_iters - 1e-9) <= num_iters:
        out.add(math.ceil(k * interval_iters - 1e-9))
        k += 1
    return out


class SEMATestCase(RunnerTestCase):
    """RunnerTestCase with the regression model, data in order, SGD."""

    lr = 0.05

    def setUp(self):
        super().setUp()
        MODELS.register_module(module=RegressionModel, force=True)
        DATASETS.register_module(module=RegressionDataset, force=True)
        HOOKS.register_module(module=Probe, force=True)
        for cfg in (self.epoch_based_cfg, self.iter_based_cfg):
            cfg.model = dict(type='RegressionModel')
            cfg.train_dataloader.dataset = dict(type='RegressionDataset')
            cfg.train_dataloader.sampler.shuffle = False
            cfg.val_dataloader.dataset = dict(type='RegressionDataset')
            cfg.test_dataloader.dataset = dict(type='RegressionDataset')
            cfg.optim_wrapper = dict(optimizer=dict(type='SGD', lr=self.lr))
            cfg.env_cfg = dict(dist_cfg=dict(backend='gloo'))
        self.epoch_based_cfg.train_cfg = dict(
            by_epoch=True, max_epochs=3, val_interval=1)

    def tearDown(self):
        MODELS.module_dict.pop('RegressionModel', None)
        DATASETS.module_dict.pop('RegressionDataset', None)
        HOOKS.module_dict.pop('Probe', None)
        super().tearDown()

    def sema_hook(self, runner):
        return next(h for h in runner.hooks if isinstance(h, EMAHook))

    def params(self, module):
        return [p.detach().clone() for p in module.parameters()]

    def assert_params_close(self, got, expected, **kw):
        self.assertEqual(len(got), len(expected))
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, **kw)
