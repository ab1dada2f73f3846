"""EMA memory per rank: DDP (full copy) vs sharded (FSDP / FSDP2 shards,
DeepSpeed ZeRO-2 / ZeRO-3 partitions).

Starts ``--nproc`` CPU processes with gloo, builds the same MLP under DDP,
FSDP (``use_orig_params=True``, as mmengine's FSDPStrategy wraps it) and
FSDP2 (``fully_shard`` per layer and at the root), takes one training step,
builds the EMA each way and prints, per rank, the bytes of the model's local
parameters, the bytes of the EMA and the time of one EMA update:

- DDP + SwitchEMAModel: the EMA is a full copy on every rank;
- FSDP + deep copy (what mmengine's EMAHook does): copies whatever local
  views FSDP exposes;
- FSDP / FSDP2 + ShardedEMAModel (what SEMAHook builds): the local shards;
- DeepSpeed ZeRO-2 / ZeRO-3 + ShardedEMAModel (when DeepSpeed is installed;
  ``--no-deepspeed`` skips it): this rank's part of the fp32 master
  weights. "local params" is what the model holds on the rank: all of it
  under ZeRO-2 (only gradients and optimizer state are partitioned), the
  ``ds_tensor`` partitions under ZeRO-3.

Bytes are counted from the tensors themselves (``numel * element_size``).

Example::

    python tools/benchmark/sharded_memory.py --nproc 2 --width 1024 --depth 8
"""
import argparse
import copy
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn


def mlp(width, depth):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def nbytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def step(model, width):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(4, width)
    model(x).square().mean().backward()
    opt.step()
    opt.zero_grad()


def time_update(ema, model, repeat):
    ema.update_parameters(model)  # first update copies
    start = time.perf_counter()
    for _ in range(repeat):
        ema.update_parameters(model)
    return (time.perf_counter() - start) / repeat * 1e3


def deepspeed_rows(width, depth, repeat):
    """ZeRO-2 and ZeRO-3 rows (one engine at a time)."""
    import deepspeed

    from sema_mm.models import ShardedEMAModel
    rows = []
    for stage in (2, 3):
        model = mlp(width, depth)
        engine, *_ = deepspeed.initialize(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=1e-3),
            config=dict(
                train_micro_batch_size_per_gpu=4,
                zero_optimization=dict(stage=stage),
                zero_allow_untested_optimizer=True,
                steps_per_print=10**12))
        loss = engine(torch.randn(4, width)).square().mean()
        engine.backward(loss)
        engine.step()
        params = list(engine.module.parameters())
        local = nbytes(p.ds_tensor for p in params) if stage == 3 else \
            nbytes(params)
        ema = ShardedEMAModel(engine.module, momentum=0.001, root=engine)
        ms = time_update(ema, engine.module, repeat)
        rows.append((f'DeepSpeed ZeRO-{stage} + ShardedEMAModel (SEMAHook)',
                     local, ema.ema_bytes(), ms))
        del engine, ema, model, params
    return rows


def worker(rank, world, port, width, depth, repeat, use_deepspeed, queue):
    os.environ.update(
        MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
        LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel as DDP

    from sema_mm.models import ShardedEMAModel, SwitchEMAModel
    rows = []

    ddp = DDP(mlp(width, depth))
    step(ddp, width)
    ema = SwitchEMAModel(ddp.module, momentum=0.001)
    ms = time_update(ema, ddp.module, repeat)
    rows.append(('DDP + SwitchEMAModel (full copy)',
                 nbytes(ddp.module.parameters()),
                 nbytes(ema.avg_parameters.values()), ms))
    del ddp, ema

    fsdp = FSDP(mlp(width, depth), use_orig_params=True,
                device_id=torch.device('cpu'))
    step(fsdp, width)
    local = nbytes(p.data for p in fsdp.parameters())
    deep = copy.deepcopy(fsdp.module)  # mmengine EMAHook's averaged model
    rows.append(('FSDP + EMAHook deep copy (stock)', local,
                 nbytes(deep.parameters()), float('nan')))
    del deep
    ema = ShardedEMAModel(fsdp.module, momentum=0.001, root=fsdp)
    ms = time_update(ema, fsdp.module, repeat)
    rows.append(('FSDP + ShardedEMAModel (SEMAHook)', local,
                 ema.ema_bytes(), ms))
    del fsdp, ema

    model = mlp(width, depth)
    mesh = init_device_mesh('cpu', (world, ))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    step(model, width)
    ema = ShardedEMAModel(model, momentum=0.001)
    ms = time_update(ema, model, repeat)
    rows.append(('FSDP2 + ShardedEMAModel (SEMAHook)',
                 nbytes(p.to_local() for p in model.parameters()),
                 ema.ema_bytes(), ms))
    del model, ema
    if use_deepspeed:
        rows += deepspeed_rows(width, depth, repeat)
    queue.put((rank, rows))
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--nproc', type=int, default=2)
    parser.add_argument('--width', type=int, default=1024)
    parser.add_argument('--depth', type=int, default=8)
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--no-deepspeed', action='store_true',
                        help='skip the DeepSpeed rows')
    args = parser.parse_args()
    use_deepspeed = not args.no_deepspeed
    if use_deepspeed:
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            print('DeepSpeed is not installed: no DeepSpeed rows')
            use_deepspeed = False
    ctx = mp.get_context('spawn')
    queue = ctx.SimpleQueue()
    mp.spawn(
        worker,
        args=(args.nproc, free_port(), args.width, args.depth, args.repeat,
              use_deepspeed, queue),
        nprocs=args.nproc,
        join=True)
    results = dict(queue.get() for _ in range(args.nproc))
    full = sum(p.numel() * 4 for p in mlp(args.width, args.depth).parameters())
    print(f'MLP width {args.width} depth {args.depth}: '
          f'{full / 2**20:.2f} MiB of fp32 parameters; {args.nproc} CPU '
          'processes, gloo\n')
    print('| setup | rank | local params (MiB) | EMA (MiB) | EMA / full '
          'params | update (ms) |')
    print('|---|---|---|---|---|---|')
    for i in range(len(results[0])):
        for rank in sorted(results):
            name, local, ema, ms = results[rank][i]
            print(f'| {name} | {rank} | {local / 2**20:.2f} | '
                  f'{ema / 2**20:.2f} | {ema / full:.3f} | {ms:.2f} |')


if __name__ == '__main__':
    main()
