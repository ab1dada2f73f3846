"""Classification end to end: a shipped SEMA config trains through
tools/train.py on an ImageNet-style folder dataset, validates with the stock
Accuracy metric on EMA weights, resumes, and runs as 2 processes (gloo)."""
import os.path as osp
import re

import pytest
import torch

from data_gen import make_imagenet
from e2e_utils import (CONFIGS, free_port, run_tool, scalars, switch_lines,
                       val_records)

CONFIG = osp.join(CONFIGS, 'resnet', 'resnet50_8xb32-coslr_sema_in1k.py')


def overrides(root, batch_size=8):
    """Only data location, a smaller backbone / input and the epochs."""
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'model.backbone.depth=18', 'model.head.in_channels=512',
        'model.head.num_classes=6', 'data_preprocessor.num_classes=6',
        'train_dataloader.dataset.pipeline.1.scale=32',
        'val_dataloader.dataset.pipeline.1.scale=36',
        'val_dataloader.dataset.pipeline.2.crop_size=32',
        'test_dataloader.dataset.pipeline.1.scale=36',
        'test_dataloader.dataset.pipeline.2.crop_size=32',
        f'train_dataloader.batch_size={batch_size}',
        'val_dataloader.batch_size=12', 'test_dataloader.batch_size=12',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0', 'default_hooks.logger.interval=1',
    ]


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    return make_imagenet(str(tmp_path_factory.mktemp('imagenet')))


def test_train_val_resume_test(imagenet, tmp_path):
    work = str(tmp_path / 'work')
    opts = overrides(imagenet)
    log = run_tool(['train.py', CONFIG, '--work-dir', work, '--cfg-options',
                    *opts, 'train_cfg.max_epochs=2'], tmp_path / 'train.log')
    # 24 images / batch 8 = 3 iterations per epoch; one switch per epoch.
    lines = switch_lines(log)
    assert [re.search(r'switch (\d+) \(epoch (\d+), iter (\d+)\)',
                      line).groups() for line in lines] == [('1', '1', '3'),
                                                             ('2', '2', '6')]
    vals = val_records(work, 'accuracy')
    assert [r['step'] for r in vals] == [1, 2]
    assert {'accuracy/top1', 'accuracy/top5'} <= set(vals[-1])
    assert 'train/sema_distance' not in vals[-1]
    assert any('sema_distance' in r for r in scalars(work))

    # The checkpoint holds the EMA in state_dict and the training weights
    # in ema_state_dict; right after a switch they are the same weights.
    ckpt = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu',
                      weights_only=True)
    ema_sd = {k[len('module.'):]: v for k, v in
              ckpt['ema_state_dict'].items() if k.startswith('module.')}
    w = 'backbone.conv1.weight'
    assert torch.equal(ckpt['state_dict'][w], ema_sd[w])

    # tools/test.py on that checkpoint reproduces the epoch-2 validation,
    # i.e. validation ran on the EMA weights the checkpoint stores.
    test_log = run_tool([
        'test.py', CONFIG, osp.join(work, 'epoch_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *opts
    ], tmp_path / 'test.log')
    top1 = float(re.findall(r'accuracy/top1: ([\d.]+)', test_log)[-1])
    assert top1 == pytest.approx(vals[-1]['accuracy/top1'], abs=1e-3)

    # Resume (weights-only torch.load) and train a third epoch.
    log = run_tool(['train.py', CONFIG, '--work-dir', work, '--resume',
                    '--cfg-options', *opts, 'train_cfg.max_epochs=3'],
                   tmp_path / 'resume.log')
    assert re.search(r'resumed epoch: 2, iter: 6', log)
    assert [re.search(r'switch (\d+) \(epoch (\d+), iter (\d+)\)',
                      line).groups()
            for line in switch_lines(log)] == [('3', '3', '9')]
    assert osp.exists(osp.join(work, 'epoch_3.pth'))
    assert [r['step'] for r in val_records(work, 'accuracy')][-1] == 3


def test_dist_train_user_config(imagenet, tmp_path):
    """2 processes on CPU through tools/dist_train.sh (torchrun, gloo), on a
    user's own config that inherits the shipped SEMA config."""
    user_cfg = tmp_path / 'my_resnet_sema.py'
    user_cfg.write_text(
        f"_base_ = ['{CONFIG}']\n"
        "model = dict(backbone=dict(depth=18),\n"
        "             head=dict(in_channels=512, num_classes=6))\n"
        "train_cfg = dict(max_epochs=2)\n"
        "custom_hooks = [dict(type='SEMAHook', momentum=0.01)]\n")
    work = str(tmp_path / 'work')
    opts = [o for o in overrides(imagenet, batch_size=4)
            if not o.startswith('model.')]
    import os
    os.environ['PORT'] = str(free_port())
    try:
        log = run_tool(['dist_train.sh', str(user_cfg), '2', '--work-dir',
                        work, '--cfg-options', *opts],
                       tmp_path / 'dist.log')
    finally:
        os.environ.pop('PORT', None)
    # 24 images over 2 ranks of batch 4: 3 iterations per epoch.
    assert 'world_size: 2' in log or 'Distributed launcher: pytorch' in log
    steps = [re.search(r'switch (\d+) \(epoch (\d+), iter (\d+)\)',
                       line).groups() for line in switch_lines(log)]
    assert steps == [('1', '1', '3'), ('2', '2', '6')]
    vals = val_records(work, 'accuracy')
    assert [r['step'] for r in vals] == [1, 2]
    assert {'accuracy/top1', 'accuracy/top5'} <= set(vals[-1])
    ckpt = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu',
                      weights_only=True)
    assert ckpt['meta']['epoch'] == 2


SHARDED = {
    'deepspeed-zero3': 'resnet50_8xb32-coslr_sema_deepspeed-zero3_in1k.py',
    'fsdp': 'resnet50_8xb32-coslr_sema_fsdp_in1k.py',
}


@pytest.mark.parametrize('engine', list(SHARDED))
def test_dist_train_sharded_config_resume_export(engine, imagenet, tmp_path):
    """A user's config inheriting the shipped FSDP / DeepSpeed ZeRO-3 config
    trains on 2 processes through tools/dist_train.sh, validates the EMA,
    resumes from its sharded checkpoint, and the exported EMA reproduces the
    last validation through tools/test.py with the unsharded config (the
    shipped config's SyncBuffersHook gives both the same BatchNorm
    statistics; without it each rank validates with its own)."""
    user_cfg = tmp_path / 'my_sharded_sema.py'
    user_cfg.write_text(
        f"_base_ = ['{osp.join(CONFIGS, 'resnet', SHARDED[engine])}']\n"
        "model = dict(backbone=dict(depth=18),\n"
        "             head=dict(in_channels=512, num_classes=6))\n"
        "custom_hooks = [dict(type='SEMAHook', momentum=0.01)]\n")
    work = str(tmp_path / 'work')
    opts = [o for o in overrides(imagenet, batch_size=4)
            if not o.startswith('model.')]
    import os

    def dist_train(max_epochs, *extra):
        os.environ['PORT'] = str(free_port())
        try:
            return run_tool(['dist_train.sh', str(user_cfg), '2',
                             '--work-dir', work, *extra, '--cfg-options',
                             *opts, f'train_cfg.max_epochs={max_epochs}'],
                            tmp_path / f'dist{max_epochs}.log')
        finally:
            os.environ.pop('PORT', None)

    log = dist_train(2)
    # 24 images over 2 ranks of batch 4: 3 iterations per epoch.
    steps = [re.search(r'switch (\d+) \(epoch (\d+), iter (\d+)\)',
                       line).groups() for line in switch_lines(log)]
    assert steps == [('1', '1', '3'), ('2', '2', '6')]
    assert osp.isdir(osp.join(work, 'epoch_2.pth'))  # one file per rank

    log = dist_train(3, '--resume')
    assert re.search(r'resumed epoch: 2, iter: 6', log)
    assert [line.split('SEMAHook: ')[1].split(':')[0]
            for line in switch_lines(log)] == ['switch 3 (epoch 3, iter 9)']
    vals = val_records(work, 'accuracy')
    assert [r['step'] for r in vals] == [1, 2, 3]

    out = str(tmp_path / 'ema.pth')
    run_tool(['export_ema.py', osp.join(work, 'epoch_3.pth'), out],
             tmp_path / 'export.log')
    test_log = run_tool([
        'test.py', CONFIG, out, '--work-dir', str(tmp_path / 'test'),
        '--cfg-options', *overrides(imagenet)
    ], tmp_path / 'test.log')
    top1 = float(re.findall(r'accuracy/top1: ([\d.]+)', test_log)[-1])
    assert top1 == pytest.approx(vals[-1]['accuracy/top1'], abs=1e-3)
