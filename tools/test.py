# Copyright (c) OpenMMLab. All rights reserved. Adapted for sema_mm.
"""Test (and evaluate) a checkpoint with a config.

Shaped like ``mmpretrain/tools/test.py``; the same fixes as
``tools/train.py`` apply (gloo without a GPU, ``collate_fn`` scope,
weights-only checkpoint loading). The checkpoint of a run with ``EMAHook`` /
``SEMAHook`` holds the EMA weights in ``state_dict``, so this evaluates the
EMA weights; the training weights are in ``ema_state_dict``.
"""
import argparse
import os
import os.path as osp
import sys

import mmengine
from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import sema_mm  # noqa: E402,F401
from sema_mm.utils import build_runner, close_process_group  # noqa: E402

_OUT_ITEMS = ('metrics', 'pred')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='the file to output results.')
    parser.add_argument(
        '--out-item',
        choices=_OUT_ITEMS,
        help='To output whether metrics or predictions. '
        'Defaults to output predictions.')
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
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision test')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='whether to disable the pin_memory option in dataloaders.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Merge CLI arguments to config."""
    cfg.launcher = args.launcher

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    cfg.load_from = args.checkpoint

    if args.amp:
        cfg.test_cfg = cfg.get('test_cfg') or dict()
        cfg.test_cfg.fp16 = True

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    loader = cfg.get('test_dataloader', None)
    if loader is not None:
        if cfg.get('default_scope') == 'mmpretrain':
            loader.setdefault('collate_fn', dict(type='default_collate'))
        loader['pin_memory'] = not args.no_pin_memory
        if not loader.get('num_workers', 0):
            loader['persistent_workers'] = False
    return cfg


def main(argv=None):
    args = parse_args(argv)

    if args.out is None and args.out_item is not None:
        raise ValueError('`--out-item` needs `--out` (the file to write); '
                         f'got --out-item={args.out_item!r} and no --out')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError('`--out` must end with .pkl or .pickle, but got '
                         f'{args.out!r}')

    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)

    runner = build_runner(cfg, args.launcher)

    if args.out and args.out_item in (None, 'pred'):
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))

    metrics = runner.test()
    del runner  # before the process group goes: see close_process_group
    close_process_group()

    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    main()
