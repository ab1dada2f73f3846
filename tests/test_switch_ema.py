"""SwitchEMAModel against hand-computed values and mmengine's EMA."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage
from mmengine.registry import MODELS
from torch.profiler import ProfilerActivity, profile

from sema_mm import SwitchEMAModel
from sema_mm.models import copy_ema_to, switch_statistics


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def perturb(model, scale=1.0):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    model.train()
    model(torch.randn(5, 4))  # moves BN running stats and its counter


def test_registered_in_root_registry():
    assert MODELS.get('SwitchEMAModel') is SwitchEMAModel
    ema = MODELS.build(
        dict(type='SwitchEMAModel', momentum=0.01),
        default_args=dict(model=make_model()))
    assert isinstance(ema, SwitchEMAModel)
    assert ema.momentum == 0.01


@pytest.mark.parametrize('bad', [0, 1, 0.0, 1.0, -0.5, 1.5, float('nan')])
def test_momentum_out_of_range(bad):
    with pytest.raises(ValueError, match=r'momentum.*\(0, 1\)'):
        SwitchEMAModel(make_model(), momentum=bad)


@pytest.mark.parametrize('bad', ['0.1', None, True, [0.1]])
def test_momentum_not_a_number(bad):
    with pytest.raises(TypeError, match='momentum'):
        SwitchEMAModel(make_model(), momentum=bad)


@pytest.mark.parametrize('bad', [0, -1, 1.5, True])
def test_interval_invalid(bad):
    with pytest.raises(ValueError, match='interval'):
        SwitchEMAModel(make_model(), interval=bad)


def test_update_matches_hand_computation():
    m = 0.1
    model = make_model()
    ema = SwitchEMAModel(model, momentum=m)
    expected = None
    for step in range(6):
        perturb(model)
        ema.update_parameters(model)
        params = [p.detach().clone() for p in model.parameters()]
        if expected is None:  # the first update copies
            expected = params
        else:
            expected = [(1 - m) * e + m * p for e, p in zip(expected, params)]
        for e, got in zip(expected, ema.module.parameters()):
            torch.testing.assert_close(got, e, rtol=1e-6, atol=1e-7)
        # update_buffers=False: buffers are copies of the model's buffers
        for b_ema, b in zip(ema.module.buffers(), model.buffers()):
            assert torch.equal(b_ema, b)
    assert int(ema.steps) == 6


def test_exact_numbers_scalar_model():
    # a 1-parameter model: ema after updates at w = 1, 2, 3 with m = 0.5
    # is 1 -> 1.5 -> 2.25
    model = nn.Linear(1, 1, bias=False)
    ema = SwitchEMAModel(model, momentum=0.5)
    got = []
    for w in (1.0, 2.0, 3.0):
        model.weight.data.fill_(w)
        ema.update_parameters(model)
        got.append(ema.module.weight.item())
    assert got == [1.0, 1.5, 2.25]


@pytest.mark.parametrize('update_buffers', [False, True])
@pytest.mark.parametrize('interval', [1, 3])
def test_bitwise_equal_to_mmengine(update_buffers, interval):
    model = make_model()
    ref = ExponentialMovingAverage(
        model, momentum=0.03, interval=interval, update_buffers=update_buffers)
    ours = SwitchEMAModel(
        model, momentum=0.03, interval=interval, update_buffers=update_buffers)
    for _ in range(10):
        perturb(model)
        ref.update_parameters(model)
        ours.update_parameters(model)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert ref_sd.keys() == our_sd.keys()
    for k in ref_sd:
        if k.endswith('num_batches_tracked') and update_buffers:
            continue  # mmengine freezes it, we copy it (next test)
        assert torch.equal(ref_sd[k], our_sd[k]), k


def test_non_float_tensors_copied_not_averaged():
    model = make_model()
    ema = SwitchEMAModel(model, momentum=0.1, update_buffers=True)
    for _ in range(4):
        perturb(model)
        ema.update_parameters(model)
    bn, bn_ema = model[1], ema.module[1]
    assert bn_ema.num_batches_tracked.dtype == torch.long
    assert int(bn_ema.num_batches_tracked) == int(bn.num_batches_tracked) == 4
    # the float running stats are averaged, so they differ from the model's
    assert not torch.equal(bn_ema.running_mean, bn.running_mean)


def test_no_device_sync_on_update():
    """A branch on a tensor value needs ``.item()``, which meta tensors
    refuse: the update runs entirely on the meta device."""
    model = make_model().to('meta')
    ema = SwitchEMAModel(model, device='meta')
    for _ in range(3):
        ema.update_parameters(model)
    assert ema._num_updates == 3
    # mmengine's update tests ``self.steps == 0`` on the host: it cannot.
    ref = ExponentialMovingAverage(model, device='meta')
    with pytest.raises(RuntimeError, match='meta'):
        ref.update_parameters(model)


def test_update_allocates_nothing():
    model = make_model()
    ema = SwitchEMAModel(model, momentum=0.1)
    ema.update_parameters(model)  # builds the cached tensor lists
    ema.update_parameters(model)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        ema.update_parameters(model)
    allocated = [e for e in p.events() if e.cpu_memory_usage > 0]
    assert allocated == []
    # mmengine's update, measured the same way, does allocate
    ref = ExponentialMovingAverage(model)
    ref.update_parameters(model)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        ref.update_parameters(model)
    assert [e for e in p.events() if e.cpu_memory_usage > 0]


def test_load_state_dict_restores_host_counter():
    model = make_model()
    ema = SwitchEMAModel(model, momentum=0.1)
    for _ in range(3):
        perturb(model)
        ema.update_parameters(model)
    fresh = SwitchEMAModel(make_model(seed=1), momentum=0.1)
    fresh.load_state_dict(ema.state_dict())
    assert fresh._num_updates == 3
    perturb(model)
    ema.update_parameters(model)
    fresh.update_parameters(model)  # must average, not copy (steps != 0)
    for a, b in zip(ema.module.parameters(), fresh.module.parameters()):
        assert torch.equal(a, b)


def test_subclass_avg_func_is_honoured():

    class HalfWay(SwitchEMAModel):

        def avg_func(self, averaged_param, source_param, steps):
            averaged_param.lerp_(source_param, 0.5)

    model = nn.Linear(1, 1, bias=False)
    ema = HalfWay(model, momentum=0.01)
    for w in (0.0, 4.0):
        model.weight.data.fill_(w)
        ema.update_parameters(model)
    assert ema.module.weight.item() == 2.0


@pytest.mark.parametrize('update_buffers', [False, True])
def test_copy_to_keeps_parameter_objects_and_optimizer(update_buffers):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    ema = SwitchEMAModel(model, momentum=0.1, update_buffers=update_buffers)
    for _ in range(3):
        perturb(model)
        ema.update_parameters(model)
    ids = [id(p) for p in model.parameters()]
    bufs = [b.clone() for b in model.buffers()]
    momentum_buffers = [opt.state[p]['momentum_buffer'].clone()
                        for p in model.parameters()]
    ema.copy_to(model)
    assert [id(p) for p in model.parameters()] == ids
    assert all(p.requires_grad for p in model.parameters())
    assert [id(p) for p in opt.param_groups[0]['params']] == ids
    for p, p_ema in zip(model.parameters(), ema.module.parameters()):
        assert torch.equal(p, p_ema)
    for p, mb in zip(model.parameters(), momentum_buffers):
        assert torch.equal(opt.state[p]['momentum_buffer'], mb)
    if update_buffers:  # averaged buffers go in as well
        for b, b_ema in zip(model.buffers(), ema.module.buffers()):
            assert torch.equal(b, b_ema)
        assert not torch.equal(model[1].running_mean, bufs[0])
    else:  # buffers are left as they were
        for b, old in zip(model.buffers(), bufs):
            assert torch.equal(b, old)
    # the model keeps training from the EMA point
    model(torch.randn(5, 4)).sum().backward()
    opt.step()


def test_copy_ema_to_any_averaged_model():
    model = make_model()
    ema = ExponentialMovingAverage(model, momentum=0.2)
    for _ in range(3):
        perturb(model)
        ema.update_parameters(model)
    copy_ema_to(ema, model)
    for p, p_ema in zip(model.parameters(), ema.module.parameters()):
        assert torch.equal(p, p_ema)


def test_switch_statistics():
    model = nn.Linear(2, 1, bias=False)
    model.weight.data = torch.tensor([[3.0, 4.0]])
    ema = SwitchEMAModel(model)
    ema.module.weight.data = torch.tensor([[3.0, 4.0 - 2.5]])
    distance, finite = switch_statistics(ema, model)
    assert finite
    assert distance == pytest.approx(0.5)  # ||(0, 2.5)|| / ||(3, 4)||
    ema.module.weight.data[0, 0] = float('nan')
    assert switch_statistics(ema, model)[1] is False
    ema.module.weight.data[0, 0] = float('inf')
    assert switch_statistics(ema, model)[1] is False


def test_deepcopy_and_cache_reset():
    model = make_model()
    ema = SwitchEMAModel(model, momentum=0.5)
    ema.update_parameters(model)
    other = copy.deepcopy(model)
    perturb(other)
    ema.update_parameters(other)  # a new source model rebuilds the lists
    for e, a, b in zip(ema.module.parameters(), model.parameters(),
                       other.parameters()):
        torch.testing.assert_close(e, 0.5 * a + 0.5 * b)


def test_torch_without_foreach_copy(monkeypatch):
    """torch 2.0 has ``_foreach_lerp_`` but not ``_foreach_copy_``."""
    monkeypatch.delattr(torch, '_foreach_copy_')
    model = make_model()
    ema = SwitchEMAModel(model, momentum=0.5, update_buffers=True)
    ema.update_parameters(model)  # first update: copy
    perturb(model)
    ema.update_parameters(model)
    assert int(ema.module[1].num_batches_tracked) == 1
    copy_ema_to(ema, model)
    for p, p_ema in zip(model.parameters(), ema.module.parameters()):
        assert torch.equal(p, p_ema)
