"""SEMAHook under DDP: 2 processes, gloo, CPU, through the launch helpers
that tools/train.py uses (``init_gloo_if_no_cuda``, ``cpu_model_wrapper_cfg``).

- every rank holds the same model and EMA after every switch;
- 2 processes x 3 samples equal 1 process x 6 samples (float tolerance);
- a DDP checkpoint resumes in one process, and the other way round.
"""
import os
import os.path as osp
import socket
import tempfile

import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.hooks import EMAHook, Hook
from mmengine.registry import DATASETS, HOOKS, MODELS
from mmengine.runner import Runner

from sema_mm.utils import cpu_model_wrapper_cfg, init_gloo_if_no_cuda
from sema_testing import RegressionDataset, RegressionModel

WORLD_SIZE = 2


class Recorder(Hook):
    """Keeps model and EMA parameters after every epoch-end switch."""
    priority = 'LOW'

    def __init__(self):
        self.records = []

    def after_train_epoch(self, runner):
        sema = next(h for h in runner.hooks if isinstance(h, EMAHook))
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        self.records.append(
            ([p.detach().clone() for p in model.parameters()],
             [p.detach().clone() for p in sema.ema_model.module.parameters()
              ]))


def register():
    MODELS.register_module(module=RegressionModel, force=True)
    DATASETS.register_module(module=RegressionDataset, force=True)
    HOOKS.register_module(module=Recorder, force=True)


def make_cfg(work_dir, batch_size, max_epochs, launcher, resume_from=None):
    cfg = Config(
        dict(
            work_dir=work_dir,
            model=dict(type='RegressionModel'),
            train_dataloader=dict(
                dataset=dict(type='RegressionDataset'),
                sampler=dict(type='DefaultSampler', shuffle=False),
                batch_size=batch_size,
                num_workers=0),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=dict(type='CheckpointHook', interval=1)),
            custom_hooks=[
                dict(type='SEMAHook', momentum=0.2),
                dict(type='Recorder')
            ],
            randomness=dict(seed=3),
            env_cfg=dict(dist_cfg=dict(backend='gloo')),
            launcher=launcher,
            experiment_name=f'{osp.basename(work_dir)}_{launcher}'))
    if resume_from:
        cfg.resume = True
        cfg.load_from = resume_from
    cpu_model_wrapper_cfg(cfg, launcher)
    return cfg


def train(cfg):
    register()
    runner = Runner.from_cfg(cfg)
    runner.train()
    recorder = next(h for h in runner.hooks if isinstance(h, Recorder))
    sema = next(h for h in runner.hooks if isinstance(h, EMAHook))
    # the switch interval in (global) optimizer steps, for momentum='auto'
    recorder.records.append(float(sema.switch_iters))
    return recorder.records


def dist_worker(rank, port, work_dir, max_epochs, resume_from, out):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE))
    torch.set_num_threads(1)
    init_gloo_if_no_cuda('pytorch')
    records = train(
        make_cfg(work_dir, 3, max_epochs, 'pytorch', resume_from))
    torch.save(records, f'{out}.rank{rank}')
    torch.distributed.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_ddp(work_dir, max_epochs, resume_from=None):
    out = osp.join(work_dir, 'records')
    mp.spawn(
        dist_worker,
        args=(free_port(), work_dir, max_epochs, resume_from, out),
        nprocs=WORLD_SIZE,
        join=True)
    return [torch.load(f'{out}.rank{r}') for r in range(WORLD_SIZE)]


def assert_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_ddp_matches_single_process_and_resumes_across():
    tmp = tempfile.TemporaryDirectory()
    root = tmp.name
    ddp = run_ddp(osp.join(root, 'ddp'), 3)
    # every rank holds identical model and EMA after every switch
    rank0, rank1 = ddp
    # an epoch of 12 samples is 2 global steps of 2 x 3, as of 1 x 6
    assert rank0.pop() == rank1.pop() == 2
    assert len(rank0) == len(rank1) == 3
    for (m0, e0), (m1, e1) in zip(rank0, rank1):
        for a, b in zip(m0 + e0, m1 + e1):
            assert torch.equal(a, b)
        # and each record is taken right after a switch: model == EMA
        for a, b in zip(m0, e0):
            assert torch.equal(a, b)

    single = train(make_cfg(osp.join(root, 'single'), 6, 3, 'none'))
    assert single.pop() == 2
    for (m_d, e_d), (m_s, e_s) in zip(rank0, single):
        assert_close(m_d, m_s)
        assert_close(e_d, e_s)

    # a DDP checkpoint resumes in one process ...
    resumed = train(
        make_cfg(
            osp.join(root, 'ddp_to_single'), 6, 3, 'none',
            osp.join(root, 'ddp', 'epoch_2.pth')))[:-1]
    assert len(resumed) == 1
    assert_close(resumed[0][0], single[-1][0])
    assert_close(resumed[0][1], single[-1][1])

    # ... and a single-process checkpoint resumes under DDP
    back = run_ddp(
        osp.join(root, 'single_to_ddp'), 3,
        osp.join(root, 'single', 'epoch_2.pth'))
    for rank_records in back:
        rank_records.pop()
        assert len(rank_records) == 1
        assert_close(rank_records[0][0], rank0[-1][0])
        assert_close(rank_records[0][1], rank0[-1][1])
    tmp.cleanup()
