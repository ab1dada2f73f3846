"""SEMAHook under DeepSpeed ZeRO (stages 2 and 3): mmengine FlexibleRunner
+ DeepSpeedStrategy, 2 processes, gloo, CPU.

For ZeRO-2, ZeRO-3, and ZeRO-3 with no persistent (never partitioned)
parameters and gradient accumulation inside the engine: the EMA follows this
rank's part of the fp32 master weights only and moves once per optimizer
step; after every epoch-end switch the gathered model and EMA are the same
on both ranks and equal those of one process with the same global batch
and (without accumulation) of the DDP run; validation sees
the EMA; resuming from the DeepSpeed checkpoint of epoch 2 gives a bitwise
identical epoch 3; tools/export_ema.py turns the checkpoint directory into
one state dict that loads into the unsharded model and equals the gathered
EMA. ZeRO-2 fragments that split a parameter between ranks are averaged
and cut exactly. With bf16, the EMA is that of the fp32 master weights,
and a switch writes the master weights and the bf16 parameters. What
SEMAHook cannot keep right (the stock DeepSpeedStrategy, ZeRO stage 0) is
refused before the first step.

The first DeepSpeed run on a machine JIT-compiles DeepSpeed's CPU
communication op (``scripts/install_stack.sh`` does it at install time).
"""
import math
import os
import os.path as osp
import tempfile

import deepspeed  # noqa: F401  (installed by scripts/install_stack.sh)
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from sema_mm.models import gather_full_state_dict
from sema_mm.utils import close_process_group, init_gloo_if_no_cuda
from sema_testing import RegressionModel
from test_distributed import free_port, make_cfg, run_ddp
from test_distributed import train as train_runner
from test_sharded import ShardRecorder, WORLD_SIZE, _env, close
from test_sharded import (assert_resumed_bitwise, export_ema, fsdp_cfg,
                          register)


#: (ZeRO stage, gradient accumulation steps, ZeRO-3 persistence threshold:
#: parameters below it stay gathered between steps; DeepSpeed's default is
#: 1e5 elements, i.e. all of the toy model's).
CASES = {
    'zero2': (2, 1, None),
    'zero3': (3, 1, None),
    'zero3-partitioned-accumulate2': (3, 2, 0),
}
#: What SEMAHook refuses.
REFUSED_CASES = {'zero0': (0, 1, None)}


def deepspeed_cfg(work_dir, case, max_epochs, resume_from=None,
                  strategy='ResumableDeepSpeedStrategy'):
    stage, accumulate, persistence = {**CASES, **REFUSED_CASES}[case]
    cfg = fsdp_cfg(work_dir, max_epochs, resume_from)
    zero = dict(stage=stage)
    if persistence is not None:
        zero['stage3_param_persistence_threshold'] = persistence
    cfg.strategy = dict(
        type=strategy,
        # torch's SGD is not one of DeepSpeed's own optimizers
        config=dict(zero_allow_untested_optimizer=True),
        zero_optimization=zero,
        # DeepSpeed 0.19.8 clips gradients at norm 1.0 unless told not to;
        # the reference runs do not clip
        gradient_clipping=0.0,
        train_micro_batch_size_per_gpu=3,
        gradient_accumulation_steps=accumulate)
    cfg.optim_wrapper = dict(
        type='DeepSpeedOptimWrapper', optimizer=dict(type='SGD', lr=0.05))
    cfg.experiment_name = f'{osp.basename(work_dir)}_{case}'
    return cfg


def worker(rank, port, work_dir, case, max_epochs, resume_from, out):
    _env(rank, port)
    init_gloo_if_no_cuda('pytorch')
    import sema_mm  # noqa: F401  (DeepSpeedStrategy fix, SEMAHook)
    from mmengine.runner._flexible_runner import FlexibleRunner
    register()
    runner = FlexibleRunner.from_cfg(
        deepspeed_cfg(work_dir, case, max_epochs, resume_from))
    runner.train()
    rec = next(h for h in runner.hooks if isinstance(h, ShardRecorder))
    sema = rec._sema(runner)
    torch.save((rec.records, rec.val_seen, sema.ema_model.kind),
               f'{out}.rank{rank}')
    del runner, rec, sema
    close_process_group()


def run(work_dir, case, max_epochs, resume_from=None):
    out = osp.join(work_dir, 'records')
    os.makedirs(work_dir, exist_ok=True)
    mp.spawn(
        worker,
        args=(free_port(), work_dir, case, max_epochs, resume_from, out),
        nprocs=WORLD_SIZE,
        join=True)
    return [torch.load(f'{out}.rank{r}') for r in range(WORLD_SIZE)]


@pytest.fixture(scope='module')
def ddp_records(tmp_path_factory):
    """The DDP run (2 x 3 samples, SEMAHook) the ZeRO runs are compared
    with, once for the module."""
    records = run_ddp(str(tmp_path_factory.mktemp('ddp')), 3)[0]
    records.pop()
    return records


@pytest.mark.parametrize('case', list(CASES))
def test_deepspeed_matches_single_resumes_and_exports(case, ddp_records):
    stage, accumulate, _ = CASES[case]
    tmp = tempfile.TemporaryDirectory()
    root = tmp.name
    (rec0, val0, kind0), (rec1, val1, kind1) = run(
        osp.join(root, 'ds'), case, 3)
    assert kind0 == kind1 == {2: 'zero', 3: 'zero3'}[stage]
    assert len(rec0) == len(rec1) == 3
    names = list(RegressionModel().state_dict())
    total_bytes = sum(t.numel() * 4
                      for t in RegressionModel().state_dict().values())
    for (m0, e0, b0, s0), (m1, e1, b1, s1) in zip(rec0, rec1):
        for n in names:
            # both ranks gather the same full model and EMA ...
            assert torch.equal(m0[n], m1[n]) and torch.equal(e0[n], e1[n])
            # ... taken right after a switch: model == EMA
            assert torch.equal(m0[n], e0[n])
        # each rank holds its part of the master weights only
        assert b0 < total_bytes and b1 < total_bytes
        if stage == 2:
            assert b0 + b1 == total_bytes
        else:  # ZeRO-3 pads every parameter to world-size equal parts
            padded = sum(-(-t.numel() // WORLD_SIZE) * WORLD_SIZE * 4
                         for t in RegressionModel().state_dict().values())
            assert b0 == b1 and b0 + b1 == padded
        assert s0 == s1
    # EMA steps == optimizer steps: 2 iterations per epoch
    steps = [2 // accumulate * e for e in (1, 2, 3)]
    assert [r[3] for r in rec0] == steps
    for v, (m, _, _, _) in zip(val0, rec0):
        for n in names:  # validation sees the EMA (== model after switch)
            assert torch.equal(v[n], m[n])

    # the same as one process with the same global batch (1 x 6 x accum.)
    single = train_runner(
        make_cfg(osp.join(root, 'single'), 6 * accumulate, 3, 'none'))
    single.pop()
    for (m_d, e_d, _, _), (m_s, e_s) in zip(rec0, single):
        for i, n in enumerate(names):
            close(m_d[n], m_s[i])
            close(e_d[n], e_s[i])
    if accumulate == 1:  # and as DDP (2 x 3)
        for (m_d, e_d, _, _), (m_p, e_p) in zip(rec0, ddp_records):
            for i, n in enumerate(names):
                close(m_d[n], m_p[i])
                close(e_d[n], e_p[i])

    # resume from DeepSpeed's checkpoint of epoch 2: bitwise equal
    ckpt = osp.join(root, 'ds', 'epoch_2.pth')
    assert osp.isdir(ckpt)
    (res0, _, _), (res1, _, _) = run(osp.join(root, 'resume'), case, 3, ckpt)
    assert len(res0) == 1
    assert_resumed_bitwise([res0[0], res1[0]], [rec0[-1], rec1[-1]],
                           steps[-1])

    # export: one state dict for the unsharded model
    exported = export_ema(osp.join(root, 'ds', 'epoch_3.pth'), root)
    for n in names:
        assert torch.equal(exported['state_dict'][n], rec0[-1][1][n])
    assert exported['meta']['ema_steps'] == steps[-1]
    tmp.cleanup()


class MasterRecorder(Hook):
    """After every epoch (after the switch): the fp32 master weights, the
    EMA and the model's (bf16) parameters, all gathered (collectives, off
    the training path)."""
    priority = 'LOW'

    def __init__(self):
        self.records = []

    def after_train_epoch(self, runner):
        from deepspeed.utils import safe_get_full_fp32_param

        from sema_mm.hooks import SEMAHook
        sema = next(h for h in runner.hooks if isinstance(h, SEMAHook))
        module = sema.src_model
        master = {
            n: safe_get_full_fp32_param(p).detach().cpu().clone()
            for n, p in module.named_parameters()
        }
        self.records.append(
            (master, sema.ema_model.full_state_dict(module),
             gather_full_state_dict(runner.model, sema.ema_model.kind)))


def bf16_worker(rank, port, work_dir, case, out):
    _env(rank, port)
    init_gloo_if_no_cuda('pytorch')
    import sema_mm  # noqa: F401
    from mmengine.runner._flexible_runner import FlexibleRunner
    register()
    HOOKS.register_module(module=MasterRecorder, force=True)
    cfg = deepspeed_cfg(work_dir, case, 2)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.strategy.update(bf16=dict(enabled=True), inputs_to_half=['inputs'])
    cfg.custom_hooks = [dict(type='SEMAHook', momentum=0.2),
                        dict(type='MasterRecorder')]
    runner = FlexibleRunner.from_cfg(cfg)
    runner.train()
    rec = next(h for h in runner.hooks if isinstance(h, MasterRecorder))
    torch.save(rec.records, f'{out}.rank{rank}')
    del runner, rec
    close_process_group()


@pytest.mark.parametrize('case', ['zero2', 'zero3'])
def test_deepspeed_bf16_ema_follows_fp32_master_weights(case):
    """With bf16 the EMA averages the fp32 master weights, and the switch
    writes them (else the next optimizer step would copy the old master
    weights back) and the bf16 parameters from them."""
    with tempfile.TemporaryDirectory() as root:
        out = osp.join(root, 'records')
        mp.spawn(bf16_worker,
                 args=(free_port(), osp.join(root, 'work'), case, out),
                 nprocs=WORLD_SIZE, join=True)
        records = [torch.load(f'{out}.rank{r}') for r in range(WORLD_SIZE)]
    names = list(RegressionModel().state_dict())
    for master, ema, model in records[0]:
        for n in names:
            assert ema[n].dtype == master[n].dtype == torch.float32
            assert model[n].dtype == torch.bfloat16
            assert torch.equal(master[n], ema[n])
            assert torch.equal(model[n], ema[n].to(torch.bfloat16))
    (_, ema1, _), (_, ema2, _) = records[0]
    assert any(not torch.equal(ema1[n], ema2[n]) for n in names)
    for (m0, e0, p0), (m1, e1, p1) in zip(*records):
        for n in names:
            assert torch.equal(e0[n], e1[n]) and torch.equal(p0[n], p1[n])


def zero2_loop_worker(rank, port, state, out):
    """ZeRO-2 on an MLP whose parameters straddle the two ranks' partitions,
    in a hand-written loop: update every step, switch every 2."""
    _env(rank, port)
    init_gloo_if_no_cuda('pytorch')
    from sema_mm.models import ShardedEMAModel
    model = mlp()
    model.load_state_dict(state)
    engine, *_ = deepspeed.initialize(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        config=dict(train_micro_batch_size_per_gpu=3,
                    zero_optimization=dict(stage=2), gradient_clipping=0.0,
                    zero_allow_untested_optimizer=True,
                    steps_per_print=10**12))
    ema = ShardedEMAModel(engine.module, momentum=0.2, root=engine)
    x, y = mlp_data()
    for n in range(5):
        xb, yb = x[6 * n:6 * n + 6], y[6 * n:6 * n + 6]
        loss = (engine(xb[rank::2]).squeeze(-1) - yb[rank::2]).square()
        engine.backward(loss.mean())
        engine.step()
        ema.update_parameters(engine.module)
        if n % 2 == 1:
            ema.copy_to(engine.module)
    # parameters whose master weights are split between the ranks
    split = [n for n, s in ema.shards.items()
             if 0 < s.numel() < math.prod(ema.full_shapes[n])]
    full = ema.full_state(engine.module)
    before = {n: t.clone() for n, t in ema.shards.items()}
    for t in ema.shards.values():
        t.zero_()
    ema.load_state_dict(full)  # cut back into this rank's fragments
    reloaded = all(torch.equal(before[n], t) for n, t in ema.shards.items())
    torch.save(dict(split=split, ema=full['params'], reloaded=reloaded,
                    model=gather_full_state_dict(engine, ema.kind),
                    bytes=ema.ema_bytes()), f'{out}.rank{rank}')
    del engine, ema, model
    close_process_group()


def mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def mlp_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(30, 8, generator=g), torch.randn(30, generator=g)


def test_zero2_fragments_split_inside_parameters():
    """ZeRO-2 cuts the flat master weights between ranks in the middle of
    parameters: the EMA of the fragments equals SwitchEMAModel on one
    process, the model after the switches too, and a 'full' state cuts back
    into the same fragments."""
    from sema_mm.models import SwitchEMAModel
    torch.manual_seed(0)
    model = mlp()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as root:
        out = osp.join(root, 'zero2')
        mp.spawn(zero2_loop_worker, args=(free_port(), state, out),
                 nprocs=WORLD_SIZE, join=True)
        res = [torch.load(f'{out}.rank{r}') for r in range(WORLD_SIZE)]
    assert res[0]['split'] and res[0]['split'] == res[1]['split']
    assert all(r['reloaded'] for r in res)
    numel = sum(t.numel() for t in state.values())
    assert res[0]['bytes'] + res[1]['bytes'] == numel * 4
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ema = SwitchEMAModel(model, momentum=0.2)
    x, y = mlp_data()
    for n in range(5):
        opt.zero_grad()
        (model(x[6 * n:6 * n + 6]).squeeze(-1) -
         y[6 * n:6 * n + 6]).square().mean().backward()
        opt.step()
        ema.update_parameters(model)
        if n % 2 == 1:
            ema.copy_to(model)
    ref_ema = ema.module.state_dict()
    for n, t in model.state_dict().items():
        close(res[0]['ema'][n], ref_ema[n])
        close(res[0]['model'][n], t)
        assert torch.equal(res[0]['ema'][n], res[1]['ema'][n])


def refusal_worker(rank, port, work_dir, case, strategy, out):
    _env(rank, port)
    os.environ['WORLD_SIZE'] = '1'
    init_gloo_if_no_cuda('pytorch')
    import sema_mm  # noqa: F401
    from mmengine.runner._flexible_runner import FlexibleRunner
    register()
    cfg = deepspeed_cfg(work_dir, case, 1, strategy=strategy)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = FlexibleRunner.from_cfg(cfg)
    try:
        runner.train()
        result = None
    except (ValueError, NotImplementedError) as e:
        result = (type(e).__name__, str(e))
    torch.save((result, os.listdir(work_dir)), out)
    del runner
    close_process_group()


@pytest.mark.parametrize('case,strategy,error,words', [
    ('zero2', 'DeepSpeedStrategy', 'ValueError',
     "type='ResumableDeepSpeedStrategy'"),
    ('zero0', 'ResumableDeepSpeedStrategy', 'NotImplementedError',
     'ZeRO stage 1, 2 or 3'),
])
def test_deepspeed_refused_before_training(case, strategy, error, words):
    """What SEMAHook cannot keep right under DeepSpeed is refused before the
    first step, with nothing written: mmengine's stock DeepSpeedStrategy
    (which never lets hooks save or load), and ZeRO stage 0."""
    with tempfile.TemporaryDirectory() as root:
        out = osp.join(root, 'result')
        work_dir = osp.join(root, 'work')
        mp.spawn(refusal_worker,
                 args=(free_port(), work_dir, case, strategy, out), nprocs=1,
                 join=True)
        (name, msg), files = torch.load(out)
        assert name == error and words in msg
        assert not [f for f in files if f.endswith('.pth')]
