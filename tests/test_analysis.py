"""Fast checks of tools/analysis (loss landscapes, curve overlay) on a tiny
mmpretrain classifier over 64 scikit-learn digits."""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))

pytest.importorskip('mmpretrain')
pytest.importorskip('sklearn')
pytest.importorskip('matplotlib')

import loss_landscape as ll  # noqa: E402
import plot_curves as pc  # noqa: E402


def tiny_cfg():
    from mmengine.config import Config
    pipeline = [dict(type='PackInputs')]
    return Config(dict(
        custom_imports=dict(imports=['experiments.digits.dataset']),
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10,
                                   mean=[85.0], std=[100.0], to_rgb=False),
            backbone=dict(type='ResNet_CIFAR', depth=18, in_channels=1,
                          stem_channels=4, base_channels=4),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=32,
                      loss=dict(type='CrossEntropyLoss'))),
        val_dataloader=dict(
            batch_size=32, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='SklearnDigits', split='test', subset=64,
                         pipeline=pipeline)),
        train_dataloader=dict(
            batch_size=32, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(type='SklearnDigits', split='train', subset=64,
                         pipeline=pipeline))))


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    import experiments.digits.dataset  # noqa: F401  (registers the dataset)
    tmp = tmp_path_factory.mktemp('landscape')
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model, cfg = ll.load_model(cfg)
    # A: the initial model with BN statistics that are not the defaults.
    sd_a = model.state_dict()
    for k, v in sd_a.items():
        if k.endswith('running_mean'):
            v.normal_(0, 0.1)
    ckpt_a = str(tmp / 'a.pth')
    torch.save(dict(state_dict=sd_a, meta={}), ckpt_a)
    # B: a perturbed copy; saved EMAHook-style too (ema_state_dict holds the
    # weights with the averaged model's 'module.' prefix and 'steps').
    sd_b = {k: (v + 0.05 * torch.randn_like(v)) if v.dtype.is_floating_point
            else v.clone() for k, v in sd_a.items()}
    ckpt_b = str(tmp / 'b.pth')
    torch.save(dict(state_dict=sd_b, meta={}), ckpt_b)
    ckpt_ema = str(tmp / 'ema.pth')
    ema_sd = {'module.' + k: v for k, v in sd_b.items()}
    ema_sd['steps'] = torch.tensor(7)
    torch.save(dict(state_dict=sd_a, ema_state_dict=ema_sd, meta={}),
               ckpt_ema)
    batches = ll.build_batches(cfg, 'val', 2, model)
    return dict(cfg=cfg, model=model, a=ckpt_a, b=ckpt_b, ema=ckpt_ema,
                batches=batches, tmp=tmp)


def loss_of(s, ckpt, key='state_dict'):
    ll.load_weights(s['model'], ckpt, key)
    return ll.evaluate(s['model'], s['batches'])


def test_batches_are_the_val_subset(setup):
    assert len(setup['batches']) == 2
    assert sum(b['inputs'].shape[0] for b in setup['batches']) == 64


def test_interp_endpoints_equal_checkpoint_losses(setup):
    la, acc_a = loss_of(setup, setup['a'])
    lb, acc_b = loss_of(setup, setup['b'])
    assert la != pytest.approx(lb, rel=1e-3)
    res = ll.run(setup['cfg'], [setup['a'], setup['b']], mode='interp',
                 split='val', num_batches=2, lo=0.0, hi=1.0, steps=3,
                 out=str(setup['tmp'] / 'interp.png'))
    vals = res['values'][0]
    assert vals[0][0] == pytest.approx(la, rel=1e-6, abs=1e-7)
    assert vals[-1][0] == pytest.approx(lb, rel=1e-6, abs=1e-7)
    assert vals[0][1] == pytest.approx(acc_a) and vals[-1][1] == pytest.approx(acc_b)
    assert osp.getsize(setup['tmp'] / 'interp.png') > 1000


def test_1d_and_2d_centre_equal_checkpoint_loss(setup):
    lb, _ = loss_of(setup, setup['b'])
    r1 = ll.run(setup['cfg'], [setup['b']], mode='1d', num_batches=2,
                lo=-1, hi=1, steps=3, out=str(setup['tmp'] / 'l1.png'))
    losses = [v[0] for v in r1['values'][0]]
    assert losses[1] == pytest.approx(lb, rel=1e-6, abs=1e-7)
    assert losses[0] != pytest.approx(lb, rel=1e-3)  # it did move
    r2 = ll.run(setup['cfg'], [setup['b']], mode='2d', num_batches=2,
                lo=-0.5, hi=0.5, steps=3, out=str(setup['tmp'] / 'l2.png'))
    grid = np.array(r2['values'][0])
    assert grid.shape == (3, 3)
    assert grid[1, 1] == pytest.approx(lb, rel=1e-6, abs=1e-7)
    assert osp.getsize(setup['tmp'] / 'l2.png') > 1000


def test_walks_restore_the_model(setup):
    m = ll.load_weights(setup['model'], setup['a'])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    d = ll.filter_normalized_direction(m, 0)
    ll.landscape_1d(m, setup['batches'], [0.5], d)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_filter_normalisation(setup):
    m = ll.load_weights(setup['model'], setup['b'])
    d = ll.filter_normalized_direction(m, seed=3)
    for k, p in m.named_parameters():
        if p.dim() <= 1:
            assert torch.count_nonzero(d[k]) == 0, k
        else:
            torch.testing.assert_close(d[k].flatten(1).norm(dim=1),
                                       p.detach().flatten(1).norm(dim=1),
                                       rtol=1e-4, atol=1e-6)
    d2 = ll.filter_normalized_direction(m, seed=3)
    assert all(torch.equal(d[k], d2[k]) for k in d)  # seeded


def test_state_key_loads_ema_state_dict(setup):
    lb, _ = loss_of(setup, setup['b'])
    la, _ = loss_of(setup, setup['a'])
    assert loss_of(setup, setup['ema'], 'ema_state_dict')[0] == \
        pytest.approx(lb, rel=1e-6)
    assert loss_of(setup, setup['ema'])[0] == pytest.approx(la, rel=1e-6)


def _write_run(root, top1, loss, fmt='scalars'):
    if fmt == 'scalars':
        d = osp.join(root, '20240101_000000', 'vis_data')
        os.makedirs(d)
        path = osp.join(d, 'scalars.json')
        recs = []
        for e, (acc, lo) in enumerate(zip(top1, loss), 1):
            recs.append({'lr': 0.1, 'loss': lo, 'epoch': e, 'iter': 4 * e,
                         'step': 4 * e})
            recs.append({'accuracy/top1': acc, 'step': e})
    else:
        os.makedirs(root)
        path = osp.join(root, 'x.log.json')
        recs = [{'env_info': 'x'}]
        for e, (acc, lo) in enumerate(zip(top1, loss), 1):
            recs.append({'mode': 'train', 'epoch': e, 'iter': 4, 'loss': lo})
            recs.append({'mode': 'val', 'epoch': e, 'accuracy/top1': acc})
    with open(path, 'w') as f:
        for r in recs:
            f.write(json.dumps(r) + '\n')


def test_curves_read_the_metrics_given(tmp_path):
    runs = {'a1': [50., 60., 70.], 'a2': [52., 64., 72.], 'b1': [10., 20., 30.]}
    losses = {'a1': [3., 2., 1.], 'a2': [3., 2., 1.5], 'b1': [1., 1., 1.]}
    paths = []
    for i, (name, acc) in enumerate(runs.items()):
        p = str(tmp_path / name)
        _write_run(p, acc, losses[name], 'scalars' if i < 2 else 'logjson')
        paths.append(p)
    xs, ys = pc.extract(pc.load_scalars(paths[0]), 'accuracy/top1')
    assert xs.tolist() == [1, 2, 3] and ys.tolist() == runs['a1']
    xs, ys = pc.extract(pc.load_scalars(paths[2]), 'accuracy/top1')
    assert xs.tolist() == [1, 2, 3] and ys.tolist() == runs['b1']
    out = str(tmp_path / 'c.png')
    res = pc.plot(paths, ['a', 'a', 'b'], ['accuracy/top1', 'loss'], out)
    xs, m, s, n = res['accuracy/top1']['a']
    assert n == 2 and m.tolist() == [51., 62., 71.] and s.tolist() == [1., 2., 1.]
    xs, m, s, n = res['loss']['a']
    assert xs.tolist() == [1, 2, 3] and m.tolist() == [3., 2., 1.25]
    assert osp.getsize(out) > 1000
