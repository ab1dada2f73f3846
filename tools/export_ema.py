"""Export the EMA weights of a checkpoint as one ordinary full state dict.

Works offline (one process, no GPU, no process group) on:

- a sharded checkpoint written by ``FSDPStrategy`` with
  ``state_dict_cfg='local'`` (a directory ``epoch_N.pth/`` holding
  ``rank0.pth``, ``rank1.pth``, ...): the EMA shards that SEMAHook saved on
  every rank are stitched together, and buffers are taken from rank 0
  (FSDP does not shard buffers);
- a checkpoint directory written by ``ResumableDeepSpeedStrategy``
  (``epoch_N.pth/`` holding DeepSpeed's ``*model_states.pt``): under ZeRO-3
  every rank's file holds its EMA partitions, which are stitched together;
  under ZeRO-1/2 the file of rank 0 holds the whole EMA;
- a single-file checkpoint written by SEMAHook / EMAHook (single process,
  DDP, or ``FSDPStrategy(state_dict_cfg='full')``): its ``state_dict``
  already holds the EMA weights.

The output ``{'state_dict': ..., 'meta': ...}`` loads into the unsharded
model with ``model.load_state_dict(torch.load(out)['state_dict'])`` or
``mmengine.runner.load_checkpoint(model, out)`` (and so with
``tools/test.py --cfg-options load_from=out``).

Example::

    python tools/export_ema.py work_dirs/fsdp/epoch_12.pth ema_epoch_12.pth
"""
import argparse
import glob
import os.path as osp
import re
from collections import OrderedDict

import torch

from sema_mm.models.sharded_ema import is_sharded_ema_state, stitch_shards
from sema_mm.utils import allow_mmengine_checkpoints


def _load(path, rank=None, world_size=None):
    """``torch.load(weights_only=True)`` of an mmengine checkpoint.

    A rank file of ``FSDPStrategy(state_dict_cfg='local')`` holds FSDP's
    ShardedTensor, which only unpickles inside a process group of the
    saving world size and rank; a fake (communication-free) group of that
    shape is started for the load, so no GPU or launcher is needed.
    """
    allow_mmengine_checkpoints()
    if rank is None:
        return torch.load(path, map_location='cpu', weights_only=True)
    import torch.distributed as dist
    try:
        from torch.testing._internal.distributed.fake_pg import FakeStore
    except ImportError as e:  # pragma: no cover
        raise RuntimeError('loading FSDP local checkpoints offline needs '
                           "torch's fake process group") from e
    dist.init_process_group(
        'fake', store=FakeStore(), rank=rank, world_size=world_size)
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    finally:
        dist.destroy_process_group()


def _load_deepspeed(path):
    """``torch.load(weights_only=True)`` of a DeepSpeed model-states file
    written through mmengine (its DeepSpeed config is a ConfigDict)."""
    from mmengine.config import ConfigDict
    allow_mmengine_checkpoints()
    with torch.serialization.safe_globals([ConfigDict]):
        return torch.load(path, map_location='cpu', weights_only=True)


def _from_states(states, ckpt):
    """The full EMA state dict and meta from SEMAHook's EMA states."""
    state = OrderedDict(stitch_shards(states))
    for name, buf in states[0].get('buffers', {}).items():
        state[name] = buf  # averaged buffers (update_buffers=True)
    for name, buf in states[0].get('model_buffers', {}).items():
        state.setdefault(name, buf)
    meta = dict(ckpt.get('meta', {}))
    meta.update(
        ema_steps=int(states[0]['steps']),
        ema_world_size=max(s['layout']['world_size'] for s in states))
    return state, meta


def export(src: str) -> dict:
    """The EMA of checkpoint ``src`` as ``{'state_dict', 'meta'}``."""
    ds_files = sorted(glob.glob(osp.join(src, '*model_states.pt')))
    if osp.isdir(src) and ds_files:
        ckpts = [_load_deepspeed(f) for f in ds_files]
        states = [
            c['ema_state_dict'] for c in ckpts
            if is_sharded_ema_state(c.get('ema_state_dict'))
        ]
        if not states:
            raise ValueError(f'{src} holds no SEMAHook EMA; was it trained '
                             "with SEMAHook and 'ResumableDeepSpeedStrategy'?")
        full = [s for s in states if s['layout']['kind'] == 'full']
        state, meta = _from_states(full[:1] or states, ckpts[0])
        meta['ema_world_size'] = ckpts[0].get('dp_world_size',
                                              meta['ema_world_size'])
    elif osp.isdir(src):
        files = sorted(
            glob.glob(osp.join(src, 'rank*.pth')),
            key=lambda f: int(re.findall(r'rank(\d+)', f)[-1]))
        if not files:
            raise FileNotFoundError(f'no rank*.pth in {src}')
        ckpts = [_load(f, r, len(files)) for r, f in enumerate(files)]
        states = [c.get('ema_state_dict') for c in ckpts]
        if not all(is_sharded_ema_state(s) for s in states):
            raise ValueError(f'{src} holds no sharded SEMAHook EMA; was it '
                             'trained with SEMAHook?')
        state, meta = _from_states(states, ckpts[0])
    else:
        ckpt = _load(src)
        if 'ema_state_dict' not in ckpt:
            raise ValueError(f'{src} has no ema_state_dict: it was not '
                             'trained with SEMAHook / EMAHook')
        ema = ckpt['ema_state_dict']
        if is_sharded_ema_state(ema):
            raise ValueError(f'{src} holds one rank\'s EMA shards only; '
                             'pass the checkpoint directory')
        # EMAHook swapped the EMA into ``state_dict`` when saving
        state = OrderedDict(ckpt['state_dict'])
        meta = dict(ckpt.get('meta', {}))
        meta.update(ema_steps=int(ema['steps']) if 'steps' in ema else None)
    meta.update(exported_from=osp.abspath(src), ema_exported=True)
    return dict(state_dict=state, meta=meta)


def main():
    parser = argparse.ArgumentParser(
        description='Export the SEMA/EMA weights of a (sharded) checkpoint '
        'as one full state dict')
    parser.add_argument('checkpoint', help='checkpoint file or directory '
                        '(FSDPStrategy state_dict_cfg="local", DeepSpeed)')
    parser.add_argument('out', help='output .pth file')
    args = parser.parse_args()
    out = export(args.checkpoint)
    torch.save(out, args.out)
    n = sum(v.numel() for v in out['state_dict'].values())
    print(f'exported {len(out["state_dict"])} tensors ({n} elements) of the '
          f'EMA to {args.out}')


if __name__ == '__main__':
    main()
