"""Self-supervised end to end on an ImageNet-style folder dataset.

- MoCo v2 (teacher-student): SSLSwitchHook switches the online network and
  the algorithm's own EMA (``encoder_k``) once per epoch.
- SimCLR (no EMA in the algorithm): SEMAHook on the whole model.

Both train 2 epochs through tools/train.py with only --cfg-options
overrides, save, and resume to epoch 3. Pre-training recipes have no
validation loop (the paper evaluates them by linear probing / fine-tuning).
The SSL recipes' collate_fn carries the ``_scope_`` that
``mmpretrain::`` inheritance stamps, and their colour jitter has a hue range,
so these runs also cover sema_mm.utils.config and sema_mm.utils.numpy2.
"""
import os.path as osp
import re

import pytest
import torch

from data_gen import make_imagenet
from e2e_utils import CONFIGS, run_tool, switch_lines

MOCOV2 = osp.join(CONFIGS, 'mocov2',
                  'mocov2_resnet50_8xb32-coslr_sema_200e_in1k.py')
SIMCLR = osp.join(CONFIGS, 'simclr',
                  'simclr_resnet50_16xb256-coslr_sema_200e_in1k.py')


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    return make_imagenet(str(tmp_path_factory.mktemp('imagenet')),
                         val_per_class=1)


def common(root):
    return [
        f'train_dataloader.dataset.data_root={root}',
        'train_dataloader.dataset.pipeline.1.transforms.0.0.scale=32',
        'train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
        'model.backbone.depth=18', 'model.neck.in_channels=512',
        'model.neck.hid_channels=128', 'default_hooks.logger.interval=1',
    ]


def steps_of(log, hook):
    return [re.search(r'switch (\d+) \(epoch (\d+), iter (\d+)',
                      line).groups() for line in switch_lines(log, hook)]


def train_and_resume(config, opts, tmp_path, hook):
    work = str(tmp_path / 'work')
    log = run_tool(['train.py', config, '--work-dir', work, '--cfg-options',
                    *opts, 'train_cfg.max_epochs=2'], tmp_path / 'train.log')
    assert steps_of(log, hook) == [('1', '1', '3'), ('2', '2', '6')]
    first = log
    log = run_tool(['train.py', config, '--work-dir', work, '--resume',
                    '--cfg-options', *opts, 'train_cfg.max_epochs=3'],
                   tmp_path / 'resume.log')
    assert re.search(r'resumed epoch: 2, iter: 6', log)
    assert steps_of(log, hook) == [('3', '3', '9')]
    return work, first, log


def test_mocov2_switches_online_and_momentum_encoder(imagenet, tmp_path):
    opts = common(imagenet) + ['model.queue_len=64']
    work, log, _ = train_and_resume(MOCOV2, opts, tmp_path, 'SSLSwitchHook')
    assert 'SSLSwitchHook: switching MoCo.encoder_k and backbone+neck ' \
        '(online_to_ema)' in log
    assert all('online -> ema' in line
               for line in switch_lines(log, 'SSLSwitchHook'))
    # No second EMA: the algorithm's own momentum encoder is the EMA.
    assert 'SSLSwitchHook: switching every 1 epoch(s) = 3 optimizer ' \
        'steps' in log
    assert 'SEMAHook' not in log
    # Right after the last switch (end of epoch 3) the momentum encoder
    # equals the online network.
    sd = torch.load(osp.join(work, 'epoch_3.pth'), map_location='cpu',
                    weights_only=True)['state_dict']
    assert 'ema_state_dict' not in sd
    for key in ('backbone.conv1.weight', 'neck.mlp.0.weight'):
        idx = '0' if key.startswith('backbone') else '1'
        ema_key = f'encoder_k.module.{idx}.' + key.split('.', 1)[1]
        assert torch.equal(sd[key], sd[ema_key]), key


def test_simclr_sema_on_whole_model(imagenet, tmp_path):
    opts = common(imagenet)
    work, log, _ = train_and_resume(SIMCLR, opts, tmp_path, 'SEMAHook')
    ckpt = torch.load(osp.join(work, 'epoch_3.pth'), map_location='cpu',
                      weights_only=True)
    assert ckpt['meta']['epoch'] == 3
    assert any(k.startswith('module.neck.') for k in ckpt['ema_state_dict'])
