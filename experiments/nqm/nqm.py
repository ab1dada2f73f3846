"""Item 3 (paper Prop. 1): the noisy quadratic model.

L(theta) = 1/2 h (theta - c)^2 with c ~ N(0, sigma^2) drawn afresh every
step (one eigen-direction of A; a diagonal A decouples into these).
With a = eta*h and lambda = 1 - alpha (the weight of the new iterate, the
paper's appendix notation):

    SGD : theta_t = theta_{t-1} - eta h (theta_{t-1} - c_t)
    EMA : e_t = (1 - lambda) e_{t-1} + lambda theta_t
    SEMA: as EMA, and every T steps theta <- e (the switch). The paper's
          proof (App. A.1) uses T = 1, where SEMA is SGD with lr lambda*eta.

Closed forms of Prop. 1 (sigma^2 = 1):
    V_SGD  = a / (2 - a)
    V_EMA  = lambda/(2-lambda) * (2-lambda-(1-lambda)a)/(lambda+(1-lambda)a) * V_SGD
    V_SEMA = lambda a / (2 - lambda a)                           (T = 1)

For each (a, lambda, T) this script reports the Monte-Carlo stationary
variance (many independent chains, phase-averaged over the switch period),
the exact stationary variance of the linear recursion (2x2 covariance
iterated to its periodic fixed point) and the closed form.

    python experiments/nqm/nqm.py --out work_dirs/sema_results/nqm
"""
import argparse
import json
import os
import os.path as osp
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
AS = (0.05, 0.2, 1.0, 1.5)
LAMBDAS = (0.01, 0.1, 0.5)
TS = (1, 32)


def closed_forms(a, lam):
    v_sgd = a / (2 - a)
    j = lam / (2 - lam) * (2 - lam - (1 - lam) * a) / (lam + (1 - lam) * a)
    v_sema = lam * a / (2 - lam * a)
    return dict(SGD=v_sgd, EMA=j * v_sgd, SEMA_T1=v_sema)


def exact(a, lam, T):
    """Exact stationary variances of (theta, ema), phase-averaged."""
    M = np.array([[1 - a, 0.0], [lam * (1 - a), 1 - lam]])
    b = np.array([a, lam * a])
    S = np.array([[0.0, 1.0], [0.0, 1.0]])
    C = np.zeros((2, 2))
    tau = 1.0 / min(a * (2 - a), lam * a, lam)
    n_periods = int(40 * tau / T) + 50
    for _ in range(n_periods):
        acc = np.zeros(2)
        for k in range(T):
            C = M @ C @ M.T + np.outer(b, b)
            if k == T - 1:
                C = S @ C @ S.T
            acc += np.diag(C)
    return acc / T  # [var(theta), var(ema)] averaged over the period


def monte_carlo(a, lam, T, chains, rng):
    """Stationary variance of SGD, EMA (of SGD) and SEMA, phase-averaged."""
    tau = 1.0 / min(a * (2 - a), lam * a, lam)
    burn = int(8 * tau) + 200
    burn = (burn // T + 1) * T
    measure = max(20 * T, 2000)
    measure = (measure // T) * T
    th = np.zeros(chains); e = np.zeros(chains)       # SGD + its EMA
    ths = np.zeros(chains); es = np.zeros(chains)     # SEMA pair
    s_sgd = s_ema = s_sema = s_fast = 0.0
    for t in range(burn + measure):
        c = rng.standard_normal(chains)
        th = (1 - a) * th + a * c
        e = (1 - lam) * e + lam * th
        c2 = rng.standard_normal(chains)
        ths = (1 - a) * ths + a * c2
        es = (1 - lam) * es + lam * ths
        if (t + 1) % T == 0:
            ths = es.copy()
        if t >= burn:
            s_sgd += th.var(); s_ema += e.var()
            s_sema += es.var(); s_fast += ths.var()
    return dict(SGD=s_sgd / measure, EMA=s_ema / measure,
                SEMA=s_sema / measure, SEMA_fast=s_fast / measure,
                steps=burn + measure)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--chains', type=int, default=1000)
    p.add_argument('--out', default=osp.join(ROOT, 'work_dirs', 'sema_results',
                                             'nqm'))
    a_ = p.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.time()
    rows = []
    for a in AS:
        for lam in LAMBDAS:
            cf = closed_forms(a, lam)
            for T in TS:
                mc = monte_carlo(a, lam, T, a_.chains, rng)
                ex = exact(a, lam, T)
                rows.append(dict(a=a, lam=lam, T=T, closed=cf, mc=mc,
                                 exact_sema=float(ex[1]),
                                 exact_sema_fast=float(ex[0])))
                print(f'a={a:<5} lam={lam:<5} T={T:<3} | SGD mc {mc["SGD"]:.4g} '
                      f'cf {cf["SGD"]:.4g} | EMA mc {mc["EMA"]:.4g} cf '
                      f'{cf["EMA"]:.4g} | SEMA mc {mc["SEMA"]:.4g} exact '
                      f'{ex[1]:.4g} cf(T=1) {cf["SEMA_T1"]:.4g}', flush=True)
    os.makedirs(a_.out, exist_ok=True)
    with open(osp.join(a_.out, 'summary.json'), 'w') as f:
        json.dump(dict(rows=rows, chains=a_.chains, wall_s=time.time() - t0),
                  f, indent=1)
    print(f'[nqm] wall {time.time() - t0:.0f}s')


if __name__ == '__main__':
    main()
