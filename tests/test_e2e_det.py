"""Detection + instance segmentation end to end: the shipped Mask R-CNN
SEMA config trains through tools/train.py on a generated COCO-format set,
validates with the stock CocoMetric (bbox + segm) on EMA weights, and
resumes."""
import os.path as osp
import re

import pytest
import torch

from data_gen import make_coco
from e2e_utils import CONFIGS, run_tool, switch_lines, val_records

CONFIG = osp.join(CONFIGS, 'mask_rcnn', 'mask-rcnn_r50_fpn_sema_2x_coco.py')


def overrides(root):
    """Data location, a ResNet-18 at 160 px, fewer proposals, the epochs."""
    return [
        f'train_dataloader.dataset.data_root={root}/',
        f'val_dataloader.dataset.data_root={root}/',
        f'val_evaluator.ann_file={root}/annotations/instances_val2017.json',
        'model.backbone.depth=18', 'model.backbone.init_cfg=None',
        'model.neck.in_channels=[64,128,256,512]',
        'train_dataloader.dataset.pipeline.2.scale=(200,160)',
        'val_dataloader.dataset.pipeline.1.scale=(200,160)',
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'model.train_cfg.rpn_proposal.max_per_img=100',
        'model.train_cfg.rcnn.sampler.num=32',
        'model.test_cfg.rpn.max_per_img=50',
        # an untrained detector scores below the stock 0.05 threshold
        'model.test_cfg.rcnn.score_thr=0.0',
        'model.test_cfg.rcnn.max_per_img=10',
        'default_hooks.logger.interval=1',
    ]


def test_train_val_resume(tmp_path):
    root = make_coco(str(tmp_path / 'coco'), num_train=4, num_val=2,
                     size=128)
    work = str(tmp_path / 'work')
    opts = overrides(root)
    log = run_tool(['train.py', CONFIG, '--work-dir', work, '--cfg-options',
                    *opts, 'train_cfg.max_epochs=2'], tmp_path / 'train.log')
    steps = [re.search(r'switch (\d+) \(epoch (\d+), iter (\d+)\)',
                       line).groups() for line in switch_lines(log)]
    assert steps == [('1', '1', '2'), ('2', '2', '4')]
    vals = val_records(work, 'coco')
    assert [r['step'] for r in vals] == [1, 2]
    expected = {f'coco/{t}_{k}' for t in ('bbox', 'segm')
                for k in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m',
                          'mAP_l')}
    assert expected <= set(vals[-1])

    ckpt = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu',
                      weights_only=True)
    assert 'ema_state_dict' in ckpt and ckpt['meta']['epoch'] == 2

    log = run_tool(['train.py', CONFIG, '--work-dir', work, '--resume',
                    '--cfg-options', *opts, 'train_cfg.max_epochs=3'],
                   tmp_path / 'resume.log')
    assert re.search(r'resumed epoch: 2, iter: 4', log)
    steps = [re.search(r'switch (\d+) \(epoch (\d+), iter (\d+)\)',
                       line).groups() for line in switch_lines(log)]
    assert steps == [('3', '3', '6')]
    assert [r['step'] for r in val_records(work, 'coco')][-1] == 3
    assert expected <= set(val_records(work, 'coco')[-1])
