"""Every shipped config loads, inherits a stock recipe, builds its model,
hooks and optimizer wrapper without data, and carries the paper's momenta.

Momenta are in mmengine's convention m = 1 - alpha (paper alpha 0.999 ->
momentum 1e-3). The expected values below are written from the paper
(Table A1 and Appendix B; see docs/recipes.md), not read from the configs.
"""
import glob
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS, MODELS, DefaultScope

import sema_mm  # noqa: F401  (registers SEMAHook, SSLSwitchHook)

ROOT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')
IMPORTS = ("custom_imports = dict(imports=['sema_mm'], "
           "allow_failed_imports=False)")
EMA_HOOKS = ('EMAHook', 'SEMAHook', 'SSLSwitchHook')

# recipe (directory/stem..tail) -> stock base, EMA momentum, SEMA momentum,
# and for self-teaching SSL the attribute holding the algorithm's EMA, the
# config key of its momentum, and the stock value kept by the basic variant.
RECIPES = {
    'resnet/resnet50_8xb32-coslr_{}_in1k':
    dict(base='mmpretrain::resnet/resnet50_8xb32-coslr_in1k.py',
         ema=1e-4, sema=1e-3),
    'deit/deit-small_4xb256_{}_in1k':
    dict(base='mmpretrain::deit/deit-small_4xb256_in1k.py',
         ema=1e-4, sema=1e-3),
    'swin_transformer/swin-tiny_16xb64_{}_in1k':
    dict(base='mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
         ema=1e-4, sema=1e-3),
    'convnext/convnext-tiny_32xb128_{}_in1k':
    dict(base='mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
         ema=1e-4, sema=1e-3),
    'resnet/resnet50_8xb256-rsb-a3_{}_100e_in1k':
    dict(base='mmpretrain::resnet/resnet50_8xb256-rsb-a3-100e_in1k.py',
         ema=1e-4, sema=1e-3),
    'resnet/resnet18_8xb16_{}_cifar100':
    dict(base='mmpretrain::resnet/resnet50_8xb16_cifar100.py',
         ema=1e-2, sema=1e-2),
    'retinanet/retinanet_r50_fpn_{}_2x_coco':
    dict(base='mmdet::retinanet/retinanet_r50_fpn_2x_coco.py',
         ema=1e-4, sema=1e-3),
    'mask_rcnn/mask-rcnn_r50_fpn_{}_2x_coco':
    dict(base='mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py',
         ema=1e-4, sema=1e-3),
    'cascade_rcnn/cascade-mask-rcnn_r50_fpn_{}_ms-3x_coco':
    dict(base='mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py',
         ema=1e-4, sema=1e-3),
    'yolox/yolox_s_8xb8_{}_300e_coco':
    dict(base='mmdet::yolox/yolox_s_8xb8-300e_coco.py',
         ema=1e-4, sema=1e-3, ema_type='ExpMomentumEMA'),
    'mocov2/mocov2_resnet50_8xb32-coslr_{}_200e_in1k':
    dict(base='mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py',
         ema=1e-3, sema=1e-4, teacher='encoder_k', key='momentum',
         stock=1e-3),
    'byol/byol_resnet50_16xb256-coslr_{}_200e_in1k':
    dict(base='mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py',
         ema=4e-5, sema=1e-4, teacher='target_net', key='base_momentum',
         stock=1e-2),
    'mocov3/mocov3_vit-small-p16_16xb256-amp-coslr_{}_300e_in1k':
    dict(base='mmpretrain::mocov3/'
         'mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py',
         ema=4e-5, sema=1e-4, teacher='momentum_encoder',
         key='base_momentum', stock=1e-2),
    'simclr/simclr_resnet50_16xb256-coslr_{}_200e_in1k':
    dict(base='mmpretrain::simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py',
         ema=4e-5, sema=1e-4),
    'barlowtwins/barlowtwins_resnet50_8xb256-coslr_{}_300e_in1k':
    dict(base='mmpretrain::barlowtwins/'
         'barlowtwins_resnet50_8xb256-coslr-300e_in1k.py',
         ema=4e-5, sema=1e-4),
    'simmim/simmim_swin-base-w6_16xb128-amp-coslr_{}_800e_in1k-192px':
    dict(base='mmpretrain::simmim/'
         'simmim_swin-base-w6_16xb128-amp-coslr-800e_in1k-192px.py',
         ema=1e-3, sema=1e-3),
    'mae/mae_vit-base-p16_8xb512-amp-coslr_{}_800e_in1k':
    dict(base='mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py',
         ema=1e-3, sema=1e-3),
}
VARIANTS = ('basic', 'ema', 'sema')
CASES = [(recipe.format(v), v, spec) for recipe, spec in RECIPES.items()
         for v in VARIANTS]
IDS = [name for name, _, _ in CASES]


# sharded-training variants of a shipped SEMA config -> (the config they
# inherit, strategy type)
SHARDED = {
    'resnet/resnet50_8xb32-coslr_sema_deepspeed-zero3_in1k':
    ('./resnet50_8xb32-coslr_sema_in1k.py', 'ResumableDeepSpeedStrategy'),
    'resnet/resnet50_8xb32-coslr_sema_fsdp_in1k':
    ('./resnet50_8xb32-coslr_sema_in1k.py', 'ResumableFSDPStrategy'),
}


def _path(name):
    return osp.join(ROOT, name + '.py')


def test_every_shipped_config_is_covered():
    shipped = {
        osp.relpath(p, ROOT)[:-3]
        for p in glob.glob(osp.join(ROOT, '**', '*.py'), recursive=True)
        if '_base_' not in p
    }
    assert shipped == set(IDS) | set(SHARDED)


@pytest.mark.parametrize('name', list(SHARDED))
def test_sharded_config_changes_the_strategy_only(name):
    """The FSDP / DeepSpeed configs inherit the SEMA config next to them and
    change how the model is run, not the recipe or the hook; they add
    mmengine's SyncBuffersHook, because neither engine broadcasts buffers as
    DDP does."""
    base, strategy = SHARDED[name]
    text = open(_path(name)).read()
    assert re.search(r"^_base_ = '([^']+)'$", text, re.M).group(1) == base
    cfg = Config.fromfile(_path(name))
    ref = Config.fromfile(osp.join(osp.dirname(_path(name)), base))
    assert cfg.runner_type == 'FlexibleRunner'
    assert cfg.strategy.type == strategy
    assert cfg.custom_hooks == ref.custom_hooks
    assert cfg.default_hooks.sync_buffers == dict(type='SyncBuffersHook')
    assert 'sync_buffers' not in ref.default_hooks
    for key in ref.default_hooks:
        assert cfg.default_hooks[key] == ref.default_hooks[key]
    assert cfg.custom_imports == ref.custom_imports
    for key in ('model', 'train_dataloader', 'param_scheduler', 'train_cfg'):
        assert cfg[key] == ref[key]
    assert cfg.optim_wrapper.optimizer == ref.optim_wrapper.optimizer


@pytest.mark.parametrize('name,variant,spec', CASES, ids=IDS)
def test_config_text(name, variant, spec):
    """A few lines inheriting the stock recipe by scope, never a copy."""
    text = open(_path(name)).read()
    assert re.search(r"^_base_ = '([^']+)'$", text, re.M).group(1) == \
        spec['base']
    assert IMPORTS in text
    assert len(text.splitlines()) < 40


def _ema_hooks(cfg):
    return [h for h in cfg.get('custom_hooks', None) or []
            if h['type'] in EMA_HOOKS]


@pytest.mark.parametrize('name,variant,spec', CASES, ids=IDS)
def test_momentum_matches_paper(name, variant, spec):
    cfg = Config.fromfile(_path(name))
    assert cfg.custom_imports == dict(
        imports=['sema_mm'], allow_failed_imports=False)
    hooks = _ema_hooks(cfg)
    teacher = spec.get('teacher')
    if variant == 'basic':
        assert hooks == []
        if teacher:
            assert cfg.model[spec['key']] == spec['stock']
        return
    if teacher:
        # The algorithm's own EMA carries the paper's momentum.
        assert cfg.model[spec['key']] == spec[variant]
        if variant == 'ema':
            assert hooks == []
        else:
            assert [h['type'] for h in hooks] == ['SSLSwitchHook']
            assert hooks[0]['switch_interval'] == 1
            assert hooks[0].get('switch_by_epoch', True) is True
        return
    assert len(hooks) == 1
    hook = hooks[0]
    assert hook['type'] == ('EMAHook' if variant == 'ema' else 'SEMAHook')
    assert hook['momentum'] == spec[variant]
    assert hook.get('ema_type', 'default') == spec.get(
        'ema_type', 'default')
    if variant == 'sema':
        assert hook['switch_interval'] == 1
        assert hook.get('switch_by_epoch', True) is True


def _build_optim_wrapper(model, optim_cfg):
    optim_cfg = optim_cfg.copy()
    if optim_cfg.get('type') == 'AmpOptimWrapper' and \
            not torch.cuda.is_available():
        # AmpOptimWrapper refuses to build without an accelerator; the
        # optimizer, its constructor and paramwise_cfg are what is checked.
        optim_cfg['type'] = 'OptimWrapper'
        optim_cfg.pop('loss_scale', None)
        optim_cfg.pop('dtype', None)
    return build_optim_wrapper(model, optim_cfg)


@pytest.mark.parametrize('name,variant,spec', CASES, ids=IDS)
def test_builds_without_data(name, variant, spec):
    cfg = Config.fromfile(_path(name))
    scope = cfg.default_scope
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
        wrapper = _build_optim_wrapper(model, cfg.optim_wrapper)
        assert len(wrapper.optimizer.param_groups) >= 1
        runner = SimpleNamespace(model=model)
        built = []
        for hook_cfg in cfg.get('custom_hooks', None) or []:
            hook_cfg = hook_cfg.copy()
            hook_cfg.pop('priority', None)  # the Runner takes it off too
            hook = HOOKS.build(hook_cfg)
            built.append(hook)
            if hook_cfg['type'] in ('EMAHook', 'SEMAHook', 'SSLSwitchHook'):
                hook.before_run(runner)
    by_type = {type(h).__name__: h for h in built}
    teacher = spec.get('teacher')
    if teacher:
        ema = getattr(model, teacher)
        expected = spec['stock'] if variant == 'basic' else spec[variant]
        assert ema.momentum == pytest.approx(expected)
        if variant == 'sema':
            hook = by_type['SSLSwitchHook']
            assert hook.ema_model is ema
            assert hook.direction == 'online_to_ema'
            # The online side is backbone + neck, tensor for tensor.
            assert [m for m in hook.src_model] == [model.backbone, model.neck]
        return
    if variant == 'basic':
        assert not set(by_type) & set(EMA_HOOKS)
        return
    hook = by_type['EMAHook' if variant == 'ema' else 'SEMAHook']
    assert hook.ema_model.momentum == pytest.approx(spec[variant])
    assert type(hook.ema_model).__name__ == spec.get(
        'ema_type',
        'ExponentialMovingAverage' if variant == 'ema' else 'SwitchEMAModel')
    if variant == 'sema':
        assert hook.switch_interval == 1 and hook.switch_by_epoch
