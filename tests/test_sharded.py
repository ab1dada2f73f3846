"""SEMAHook on sharded models: 2 processes, gloo, CPU.

- mmengine FlexibleRunner + FSDPStrategy (use_orig_params=True): the EMA
  holds this rank's shards only; after every epoch-end switch the gathered
  model and EMA equal those of the DDP run (2 x 3 samples) and of one
  process with 6 samples; the EMA is swapped in for validation; a resume
  from the sharded checkpoint is bitwise equal to the uninterrupted run;
  tools/export_ema.py stitches the saved shards into one state dict that
  loads into the unsharded model and equals the gathered EMA.
- FSDP2 (``fully_shard``), hand-written loop: ShardedEMAModel's update,
  switch and swap on DTensor shards equal SwitchEMAModel on the unsharded
  model; its state stitches offline.
"""
import os
import os.path as osp
import subprocess
import sys
import tempfile

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS

from sema_mm.models import (ShardedEMAModel, SwitchEMAModel,
                            gather_full_state_dict)
from sema_mm.utils import init_gloo_if_no_cuda
from sema_testing import RegressionDataset, RegressionModel, make_data
from test_distributed import free_port, run_ddp
from test_distributed import train as train_runner
from test_distributed import make_cfg

WORLD_SIZE = 2
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class ShardRecorder(Hook):
    """After every epoch (after the switch): the gathered model and EMA
    (a collective, off the training path), the local EMA size, and the
    model as validation sees it."""
    priority = 'LOW'

    def __init__(self):
        self.records = []
        self.val_seen = []

    def _sema(self, runner):
        from sema_mm.hooks import SEMAHook
        return next(h for h in runner.hooks if isinstance(h, SEMAHook))

    def after_train_epoch(self, runner):
        sema = self._sema(runner)
        model = gather_full_state_dict(runner.model, sema.ema_model.kind)
        ema = sema.ema_model.full_state_dict(sema.src_model)
        self.records.append((model, ema, sema.ema_model.ema_bytes(),
                             int(sema.ema_model.steps)))

    def before_val_epoch(self, runner):
        # SEMAHook (NORMAL) has swapped the EMA in already
        sema = self._sema(runner)
        self.val_seen.append(gather_full_state_dict(runner.model,
                                                    sema.ema_model.kind))


def register():
    """Register the toy model, data, metric and recorder (in every
    spawned process)."""
    from mmengine.testing.runner_test_case import ToyMetric
    METRICS.register_module(module=ToyMetric, force=True)
    MODELS.register_module(module=RegressionModel, force=True)
    DATASETS.register_module(module=RegressionDataset, force=True)
    HOOKS.register_module(module=ShardRecorder, force=True)


def fsdp_cfg(work_dir, max_epochs, resume_from=None, state_dict_cfg='local'):
    cfg = Config(
        dict(
            work_dir=work_dir,
            model=dict(type='RegressionModel'),
            train_dataloader=dict(
                dataset=dict(type='RegressionDataset'),
                sampler=dict(type='DefaultSampler', shuffle=False),
                batch_size=3,
                num_workers=0),
            val_dataloader=dict(
                dataset=dict(type='RegressionDataset'),
                sampler=dict(type='DefaultSampler', shuffle=False),
                batch_size=3,
                num_workers=0),
            val_evaluator=dict(type='ToyMetric'),
            val_cfg=dict(),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs,
                           val_interval=1),
            strategy=dict(
                type='ResumableFSDPStrategy',
                state_dict_cfg=state_dict_cfg,
                model_wrapper=dict(
                    use_orig_params=True, device_id=torch.device('cpu'))),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=dict(type='CheckpointHook', interval=1)),
            custom_hooks=[
                dict(type='SEMAHook', momentum=0.2),
                dict(type='ShardRecorder')
            ],
            randomness=dict(seed=3),
            env_cfg=dict(dist_cfg=dict(backend='gloo')),
            launcher='pytorch',
            experiment_name=f'{osp.basename(work_dir)}_fsdp'))
    if resume_from:
        cfg.resume = True
        cfg.load_from = resume_from
    return cfg


def _env(rank, port):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE))
    torch.set_num_threads(1)


def fsdp_worker(rank, port, work_dir, max_epochs, resume_from, out,
                state_dict_cfg='local'):
    _env(rank, port)
    init_gloo_if_no_cuda('pytorch')
    from mmengine.runner._flexible_runner import FlexibleRunner
    register()
    runner = FlexibleRunner.from_cfg(
        fsdp_cfg(work_dir, max_epochs, resume_from, state_dict_cfg))
    runner.train()
    rec = next(h for h in runner.hooks if isinstance(h, ShardRecorder))
    torch.save((rec.records, rec.val_seen), f'{out}.rank{rank}')
    torch.distributed.destroy_process_group()


def run_fsdp(work_dir, max_epochs, resume_from=None, state_dict_cfg='local'):
    out = osp.join(work_dir, 'records')
    os.makedirs(work_dir, exist_ok=True)
    mp.spawn(
        fsdp_worker,
        args=(free_port(), work_dir, max_epochs, resume_from, out,
              state_dict_cfg),
        nprocs=WORLD_SIZE,
        join=True)
    return [torch.load(f'{out}.rank{r}') for r in range(WORLD_SIZE)]


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def assert_resumed_bitwise(resumed, reference, steps):
    """The resumed run's one record per rank (model, EMA, EMA bytes, EMA
    steps) equals the uninterrupted run's last one, bitwise."""
    for (m, e, _, s), (m_ref, e_ref, _, s_ref) in zip(resumed, reference):
        assert s == s_ref == steps
        for n in m_ref:
            assert torch.equal(m[n], m_ref[n]) and torch.equal(e[n], e_ref[n])


def export_ema(ckpt, root):
    """Run tools/export_ema.py on ``ckpt``; the exported EMA loads strictly
    into the unsharded model. Returns the exported file's contents."""
    out = osp.join(root, 'ema.pth')
    subprocess.run([
        sys.executable, osp.join(ROOT, 'tools', 'export_ema.py'), ckpt, out
    ], check=True, cwd=ROOT)
    exported = torch.load(out, weights_only=True)
    RegressionModel().load_state_dict(exported['state_dict'], strict=True)
    return exported


def test_fsdp_flexible_runner_matches_ddp_single_resume_export():
    tmp = tempfile.TemporaryDirectory()
    root = tmp.name
    (rec0, val0), (rec1, val1) = run_fsdp(osp.join(root, 'fsdp'), 3)
    assert len(rec0) == len(rec1) == 3
    names = list(RegressionModel().state_dict())
    total_bytes = sum(RegressionModel().state_dict()[n].numel() * 4
                      for n in names)
    for (m0, e0, b0, s0), (m1, e1, b1, s1) in zip(rec0, rec1):
        # both ranks gather the same full model and EMA ...
        for n in names:
            assert torch.equal(m0[n], m1[n]) and torch.equal(e0[n], e1[n])
            # ... taken right after a switch: model == EMA
            assert torch.equal(m0[n], e0[n])
        # each rank holds its shard only: the two halves make one model
        assert b0 + b1 == total_bytes and b0 < total_bytes
        assert s0 == s1
    assert [r[3] for r in rec0] == [2, 4, 6]
    # validation sees the EMA: after the switch it equals the model
    for v, (m, _, _, _) in zip(val0, rec0):
        for n in names:
            assert torch.equal(v[n], m[n])

    # the same as DDP (2 x 3) and one process (1 x 6)
    ddp = run_ddp(osp.join(root, 'ddp'), 3)[0]
    ddp.pop()
    single = train_runner(make_cfg(osp.join(root, 'single'), 6, 3, 'none'))
    single.pop()
    for (m_f, e_f, _, _), (m_d, e_d), (m_s, e_s) in zip(rec0, ddp, single):
        for i, n in enumerate(n for n in names):
            close(m_f[n], m_d[i])
            close(e_f[n], e_d[i])
            close(m_f[n], m_s[i])
            close(e_f[n], e_s[i])

    # resume from the sharded checkpoint of epoch 2: bitwise equal
    ckpt = osp.join(root, 'fsdp', 'epoch_2.pth')
    assert sorted(os.listdir(ckpt)) == ['rank0.pth', 'rank1.pth']
    (res0, _), (res1, _) = run_fsdp(osp.join(root, 'resume'), 3, ckpt)
    assert len(res0) == 1
    assert_resumed_bitwise([res0[0], res1[0]], [rec0[-1], rec1[-1]], 6)

    # export: stitched offline into one state dict for the unsharded model
    exported = export_ema(osp.join(root, 'fsdp', 'epoch_3.pth'), root)
    for n in names:
        assert torch.equal(exported['state_dict'][n], rec0[-1][1][n])
    tmp.cleanup()


def test_fsdp_full_state_dict_checkpoints_resume_and_export():
    """FSDPStrategy(state_dict_cfg='full'): one checkpoint file holding the
    gathered EMA (in ``state_dict``, as EMAHook stores it) and the training
    weights (in ``ema_state_dict``); resuming cuts the EMA into this
    rank's shards and is bitwise equal to the uninterrupted run."""
    tmp = tempfile.TemporaryDirectory()
    root = tmp.name
    (rec0, _), (rec1, _) = run_fsdp(osp.join(root, 'full'), 3,
                                    state_dict_cfg='full')
    names = list(RegressionModel().state_dict())
    ckpt = osp.join(root, 'full', 'epoch_2.pth')
    assert osp.isfile(ckpt)
    saved = torch.load(ckpt, weights_only=True)
    _, e2, _, s2 = rec0[1]
    assert int(saved['ema_state_dict']['steps']) == s2 == 4
    for n in names:  # the EMA is what `state_dict` holds
        assert torch.equal(saved['state_dict'][n], e2[n])
    (res0, _), (res1, _) = run_fsdp(osp.join(root, 'resume'), 3, ckpt,
                                    state_dict_cfg='full')
    assert len(res0) == 1
    assert_resumed_bitwise([res0[0], res1[0]], [rec0[-1], rec1[-1]], 6)
    exported = export_ema(osp.join(root, 'full', 'epoch_3.pth'),
                          root)['state_dict']
    for n in names:
        assert torch.equal(exported[n], rec0[-1][1][n])
    tmp.cleanup()


# ----------------------------------------------------------------------
# FSDP2: ShardedEMAModel in a hand-written loop vs SwitchEMAModel
def hand_steps(model, ema, opt, num_iters, switch_every, batch, rank=None,
               world=1):
    x, y = make_data()
    for n in range(num_iters):
        start = (n * batch * world) % len(x)
        xb = x[start:start + batch * world]
        yb = y[start:start + batch * world]
        if rank is not None:
            xb = xb[rank * batch:(rank + 1) * batch]
            yb = yb[rank * batch:(rank + 1) * batch]
        opt.zero_grad()
        F.mse_loss(model(xb), yb).backward()
        opt.step()
        ema.update_parameters(model)
        if (n + 1) % switch_every == 0:
            ema.copy_to(model)


def fsdp2_worker(rank, port, state, out):
    _env(rank, port)
    init_gloo_if_no_cuda('pytorch')
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    model = RegressionModel()
    model.load_state_dict(state)
    fully_shard(model, mesh=init_device_mesh('cpu', (WORLD_SIZE, )))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ema = ShardedEMAModel(model, momentum=0.2)
    assert ema.kind == 'fsdp2'
    hand_steps(model, ema, opt, 5, 2, 3, rank, WORLD_SIZE)
    distance, finite = ema.switch_statistics(model)
    before = gather_full_state_dict(model, 'fsdp2')
    ema.swap(model)
    swapped = gather_full_state_dict(model, 'fsdp2')
    ema.swap(model)
    assert all(
        torch.equal(a, b)
        for a, b in zip(before.values(),
                        gather_full_state_dict(model, 'fsdp2').values()))
    torch.save(
        dict(model=before, ema=ema.full_state_dict(model), swapped=swapped,
             distance=distance, finite=finite, local=ema.state_dict(),
             bytes=ema.ema_bytes()), f'{out}.rank{rank}')
    torch.distributed.destroy_process_group()


def test_fsdp2_sharded_ema_matches_switch_ema():
    tmp = tempfile.TemporaryDirectory()
    torch.manual_seed(0)
    state = RegressionModel().state_dict()
    out = osp.join(tmp.name, 'fsdp2')
    mp.spawn(fsdp2_worker, args=(free_port(), state, out),
             nprocs=WORLD_SIZE, join=True)
    res = [torch.load(f'{out}.rank{r}') for r in range(WORLD_SIZE)]

    model = RegressionModel()
    model.load_state_dict(state)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ema = SwitchEMAModel(model, momentum=0.2)
    hand_steps(model, ema, opt, 5, 2, 6)
    ref_model = model.state_dict()
    ref_ema = ema.module.state_dict()
    for r in res:
        for n in ref_model:
            close(r['model'][n], ref_model[n])
            close(r['ema'][n], ref_ema[n])
            close(r['swapped'][n], ref_ema[n])
        assert r['finite']
    num = sum(((ref_model[n] - ref_ema[n])**2).sum() for n in ref_model)
    den = sum((ref_model[n]**2).sum() for n in ref_model)
    assert abs(res[0]['distance'] - float((num / den).sqrt())) < 1e-5
    assert res[0]['distance'] == res[1]['distance']
    # each rank holds its dim-0 chunks only
    assert sum(r['bytes'] for r in res) == sum(
        t.numel() * 4 for t in ref_model.values())
    # the local states stitch offline into the gathered EMA
    from sema_mm.models.sharded_ema import stitch_shards
    full = stitch_shards([r['local'] for r in res])
    for n in ref_model:
        assert torch.equal(full[n], res[0]['ema'][n])
    tmp.cleanup()
