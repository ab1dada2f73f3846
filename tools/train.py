# Copyright (c) OpenMMLab. All rights reserved. Adapted for sema_mm.
"""Train a model from a config (mmpretrain / mmdet / sema_mm configs).

Shaped like ``mmpretrain/tools/train.py``. On top of it:

- ``import sema_mm`` registers ``SEMAHook`` / ``SSLSwitchHook`` /
  ``SwitchEMAModel`` and allow-lists mmengine checkpoints for
  ``torch.load(weights_only=True)``, so ``--resume`` works on torch >= 2.6;
- ``--launcher pytorch|slurm`` works without a GPU: the process group is
  started with gloo and DDP gets ``device_ids=None``
  (:mod:`sema_mm.utils.dist`);
- the ``_scope_`` that ``mmpretrain::`` inheritance stamps into
  ``collate_fn`` is removed (:mod:`sema_mm.utils.config`).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

# Allow `python tools/train.py` from a checkout without installing sema_mm.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import sema_mm  # noqa: E402,F401  (registers hooks, allow-lists checkpoints)
from sema_mm.utils import build_runner, close_process_group  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='whether not to evaluate the checkpoint during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='whether to auto scale the learning rate according to the '
        'actual batch size and the original batch size.')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='whether to disable the pin_memory option in dataloaders.')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='whether to disable the persistent_workers option in dataloaders.'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes `--local-rank`; torchrun sets the
    # LOCAL_RANK environment variable instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def set_dataloader_defaults(cfg, args):
    """Dataloader defaults of the downstream tools, and the CLI switches.

    mmpretrain's ``tools/train.py`` gives every dataloader
    ``collate_fn=dict(type='default_collate')`` (its dataset configs rely on
    it); mmdet's keeps mmengine's ``pseudo_collate``. This follows the
    config's ``default_scope``.
    """
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field, None)
        if loader is None:
            continue
        if cfg.get('default_scope') == 'mmpretrain':
            loader.setdefault('collate_fn', dict(type='default_collate'))
        loader.setdefault('pin_memory', True)
        if args.no_pin_memory:
            loader['pin_memory'] = False
        if args.no_persistent_workers or not loader.get('num_workers', 0):
            loader['persistent_workers'] = False


def merge_args(cfg, args):
    """Merge CLI arguments to config."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    cfg.launcher = args.launcher

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    # enable automatic-mixed-precision training
    if args.amp is True:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    # resume training
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # enable auto scale learning rate
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    set_dataloader_defaults(cfg, args)
    return cfg


def main(argv=None):
    args = parse_args(argv)

    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)

    runner = build_runner(cfg, args.launcher)
    runner.train()
    del runner  # before the process group goes: see close_process_group
    close_process_group()


if __name__ == '__main__':
    main()
