"""Unit tests of the recipe helpers: SSLSwitchHook and the sema_mm.utils
fixes that tools/train.py and tools/test.py apply."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import ExponentialMovingAverage

import sema_mm  # noqa: F401
from sema_mm.hooks import SSLSwitchHook
from sema_mm.utils import (close_process_group, cpu_model_wrapper_cfg,
                           fix_mmcv_adjust_hue_numpy2, strip_collate_fn_scope)
from test_distributed import free_port


class TeacherStudent(nn.Module):
    """The shape of mmpretrain's MoCo / BYOL: the EMA wraps
    nn.Sequential(backbone, neck)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 3)
        self.neck = nn.Linear(3, 2)
        self.head = nn.Linear(2, 2)
        self.target_net = ExponentialMovingAverage(
            nn.Sequential(self.backbone, self.neck), momentum=0.01)


def _runner(model, it=2, epoch=0):
    hub = SimpleNamespace(update_scalar=lambda *a, **k: None)
    visualizer = SimpleNamespace(add_scalars=lambda *a, **k: None)
    return SimpleNamespace(model=model, iter=it, epoch=epoch,
                           message_hub=hub, visualizer=visualizer)


@pytest.mark.parametrize('kwargs,match', [
    (dict(direction='both'), '`direction`'),
    (dict(target=''), '`target`'),
    (dict(online=[]), '`online`'),
    (dict(online=['backbone', 3]), '`online`'),
    (dict(switch_interval=0), '`switch_interval`'),
    (dict(nonfinite='ignore'), '`nonfinite`'),
])
def test_ssl_switch_hook_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSLSwitchHook(**kwargs)


def test_ssl_switch_hook_finds_pair_automatically():
    model = TeacherStudent()
    hook = SSLSwitchHook()
    hook.before_run(_runner(model))
    assert hook.ema_model is model.target_net
    assert list(hook.src_model) == [model.backbone, model.neck]
    with pytest.raises(ValueError, match='`target`'):
        SSLSwitchHook(target='momentum_encoder').find_pair(model)
    with pytest.raises(ValueError, match='`online`'):
        SSLSwitchHook(online=['backbone', 'missing']).find_pair(model)
    with pytest.raises(ValueError, match='differ in tensor shapes'):
        SSLSwitchHook(online=['neck', 'head']).find_pair(model)
    with pytest.raises(KeyError):  # one module where the EMA wraps two
        SSLSwitchHook(online=['neck']).find_pair(model)


@pytest.mark.parametrize('direction', ['online_to_ema', 'ema_to_online'])
def test_ssl_switch_directions(direction):
    model = TeacherStudent()
    with torch.no_grad():
        for p in model.target_net.parameters():
            p.add_(1.0)
    online = [p.detach().clone() for p in
              nn.Sequential(model.backbone, model.neck).parameters()]
    ema = [p.detach().clone() for p in model.target_net.module.parameters()]
    hook = SSLSwitchHook(direction=direction, switch_interval=3,
                         switch_by_epoch=False)
    runner = _runner(model, it=2)
    hook.before_run(runner)
    hook.switch_iters = __import__('fractions').Fraction(3)
    assert not hook.switch_due(2) and hook.switch_due(3)
    assert hook.switch(runner)
    now_online = list(nn.Sequential(model.backbone, model.neck).parameters())
    now_ema = list(model.target_net.module.parameters())
    expected = online if direction == 'online_to_ema' else ema
    for a, b, e in zip(now_online, now_ema, expected):
        assert torch.equal(a, e) and torch.equal(b, e)


def test_ssl_switch_skips_nonfinite_source():
    model = TeacherStudent()
    with torch.no_grad():
        model.backbone.weight[0, 0] = float('nan')
    before = model.target_net.module[0].weight.detach().clone()
    hook = SSLSwitchHook(switch_by_epoch=False, switch_interval=1)
    runner = _runner(model)
    hook.before_run(runner)
    hook.switch_iters = __import__('fractions').Fraction(1)
    assert hook.switch(runner) is False
    assert torch.equal(model.target_net.module[0].weight, before)
    hook.nonfinite = 'raise'
    with pytest.raises(RuntimeError, match='NaN/Inf'):
        hook.switch(runner)


def test_strip_collate_fn_scope():
    cfg = Config(dict(
        train_dataloader=dict(collate_fn=dict(type='default_collate',
                                              _scope_='mmpretrain')),
        val_dataloader=dict(collate_fn=dict(type='pseudo_collate')),
        test_dataloader=None))
    assert strip_collate_fn_scope(cfg) == ['train_dataloader']
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
    assert strip_collate_fn_scope(cfg) == []


def _ssl_on_sharded_model(rank, out):
    import os
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()),
                      RANK='0', WORLD_SIZE='1', LOCAL_RANK='0')
    torch.distributed.init_process_group('gloo')
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    model = TeacherStudent()
    fully_shard(model, mesh=init_device_mesh('cpu', (1, )))
    try:
        SSLSwitchHook().before_run(SimpleNamespace(model=model))
        result = None
    except NotImplementedError as e:
        result = str(e)
    torch.save(result, out)
    torch.distributed.destroy_process_group()


def test_ssl_switch_hook_refuses_sharded_models(tmp_path):
    out = str(tmp_path / 'result')
    torch.multiprocessing.spawn(_ssl_on_sharded_model, args=(out, ),
                                nprocs=1, join=True)
    assert "sharded models ('fsdp2')" in torch.load(out)


def _close_group(rank, out):
    import os
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()),
                      RANK='0', WORLD_SIZE='1', LOCAL_RANK='0')
    torch.distributed.init_process_group('gloo')
    close_process_group()
    closed = not torch.distributed.is_initialized()
    close_process_group()  # nothing left: a no-op
    torch.save(closed, out)


def test_close_process_group(tmp_path):
    out = str(tmp_path / 'closed')
    torch.multiprocessing.spawn(_close_group, args=(out, ), nprocs=1,
                                join=True)
    assert torch.load(out) is True


def test_cpu_model_wrapper_cfg():
    with pytest.raises(ValueError, match='`launcher`'):
        cpu_model_wrapper_cfg(Config(), 'torchrun')
    cfg = Config()
    assert cpu_model_wrapper_cfg(cfg, 'none') is False
    assert 'model_wrapper_cfg' not in cfg
    changed = cpu_model_wrapper_cfg(cfg, 'pytorch')
    if torch.cuda.is_available():
        assert changed is False
    else:
        assert changed is True
        assert cfg.model_wrapper_cfg == dict(
            type='MMDistributedDataParallel', device_ids=None)
    # FlexibleRunner + FSDP: the strategy's wrapper gets the CPU device,
    # unless the config names one
    cfg = Config(dict(runner_type='FlexibleRunner', strategy=dict(
        type='ResumableFSDPStrategy',
        model_wrapper=dict(use_orig_params=True))))
    changed = cpu_model_wrapper_cfg(cfg, 'pytorch')
    assert 'model_wrapper_cfg' not in cfg
    if not torch.cuda.is_available():
        assert changed is True
        assert cfg.strategy.model_wrapper == dict(
            use_orig_params=True, device_id=torch.device('cpu'))
        assert cpu_model_wrapper_cfg(cfg, 'pytorch') is False


@pytest.mark.parametrize('backend', ['pillow', 'cv2'])
def test_adjust_hue_negative_shift_under_numpy2(backend):
    import mmcv
    fix_mmcv_adjust_hue_numpy2()
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3),
                                            dtype=np.uint8)
    out = mmcv.adjust_hue(img, -0.08, backend=backend)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
    with pytest.raises(ValueError, match='hue_factor'):
        mmcv.adjust_hue(img, 0.7, backend=backend)
