"""The ratio sweep's bookkeeping (no training): every SEMA condition has
rho = T * m as labelled, the hook configs resolve to that interval, and the
"kept" fraction has its limits."""
import math

import pytest

from experiments.ratio_sweep.report import kept, recipe_rows
from experiments.ratio_sweep.sweep import (ITERS_PER_EPOCH, RHOS, conditions,
                                           hooks)


def test_conditions_rho():
    conds = conditions()
    for arm in 'AB':
        got = sorted(c['rho'] for c in conds.values() if c['arm'] == arm)
        assert got == sorted(RHOS)
    for name, c in conds.items():
        if c['method'] != 'sema':
            continue
        assert c['T_iters'] * c['momentum'] == pytest.approx(c['rho'])
        (h, ) = hooks(c)
        assert h['type'] == 'SEMAHook' and h['momentum'] == c['momentum']
        T = h['switch_interval'] * (ITERS_PER_EPOCH if h['switch_by_epoch']
                                    else 1)
        assert T == c['T_iters'], name
    ema = [c for c in conds.values() if c['method'] == 'ema']
    assert all(c['partners'] for c in ema)


def test_kept_limits():
    assert kept(0.1, 1) == pytest.approx(0.1)            # T = 1: just m
    m = 1e-6                                              # continuous limit
    for rho in (0.01, 0.1, 1, 10, 100):
        T = round(rho / m)
        assert kept(m, T) == pytest.approx(
            1 - (1 - math.exp(-rho)) / rho, rel=1e-3)
    assert kept(1e-5, 1000) == pytest.approx(0.005, rel=0.01)   # ~ rho / 2
    assert kept(1e-3, 10 ** 5) == pytest.approx(0.99, rel=1e-3)  # 1 - 1/rho


def test_recipe_rows():
    rows = {r['recipe']: r for r in recipe_rows()}
    r50 = rows['IN-1K R-50, PyTorch SGD 100 ep']
    assert r50['T'] == 5005 and r50['rho'] == pytest.approx(5.005)
    cascade = rows['COCO Cascade Mask R-CNN R-50 ms-3x']
    assert cascade['T'] == 3 * 7330
