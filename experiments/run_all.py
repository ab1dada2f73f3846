"""Reproduce every result of docs/results.md with one command.

    python experiments/run_all.py            # ~15-30 min on 2 CPU cores

Stages (each a separate command, printed as it runs; outputs under
work_dirs/sema_results/, figures under docs/figures/, the page
docs/results.md is regenerated at the end):

1. digits: baseline / EMA / SEMA with the real mmengine Runner, 5 seeds,
   side by side with 2. toy decision boundaries (circles, moons), 10 seeds
3. noisy quadratic model (Prop. 1)
4. loss landscapes of the digits models (tools/analysis/loss_landscape.py)
5. cost: throughput and memory of no hook / EMAHook / SEMAHook
6. docs/results.md

``--only digits toy`` runs a subset; ``--skip-report`` leaves the page alone.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
R = osp.join('work_dirs', 'sema_results')
FIG = osp.join('docs', 'figures')
PY = sys.executable
CFG = 'experiments/digits/config.py'


def digits_ckpts(names):
    with open(osp.join(ROOT, R, 'digits', 'summary.json')) as f:
        summ = json.load(f)['conditions']
    ckpts = []
    for n in names:  # the final checkpoint mmengine recorded for seed 0
        with open(osp.join(summ[n]['work_dirs'][0], 'last_checkpoint')) as f:
            ckpts.append(f.read().strip())
    return [osp.relpath(c, ROOT) if osp.isabs(c) else c for c in ckpts]


def stages():
    land = ['baseline', 'EMA a=0.9', 'SEMA a=0.9 T=1', 'SEMA a=0.999 T=1']
    tool = [PY, 'tools/analysis/loss_landscape.py', CFG]
    return [
        # digits (3 runner workers) and the toy run side by side
        ('digits+toy', lambda: [
            [PY, 'experiments/digits/sweep.py', '--seeds', '5', '--workers',
             '3', '--out', f'{R}/digits'],
            [PY, 'experiments/toy/toy.py', '--seeds', '10', '--out',
             f'{R}/toy']]),
        ('nqm', lambda: [[PY, 'experiments/nqm/nqm.py', '--out', f'{R}/nqm']]),
        ('landscape', lambda: [
            tool + ['--ckpts', *digits_ckpts(land), '--labels', *land,
                    '--mode', '1d', '--steps', '17', '--out',
                    f'{FIG}/digits_landscape_1d.png', '--json',
                    f'{R}/landscape_1d.json', '--title',
                    'digits val loss / top-1 along a filter-normalised '
                    'direction (seed 0)'],
            tool + ['--ckpts', *digits_ckpts(land[:3]), '--labels', *land[:3],
                    '--mode', '2d', '--steps', '7', '--out',
                    f'{FIG}/digits_landscape_2d.png', '--json',
                    f'{R}/landscape_2d.json'],
            tool + ['--ckpts', *digits_ckpts(['baseline', 'SEMA a=0.9 T=1']),
                    '--labels', 'baseline', 'SEMA a=0.9 T=1', '--mode',
                    'interp', '--steps', '21', '--out',
                    f'{FIG}/digits_interp_baseline_sema.png', '--json',
                    f'{R}/landscape_interp.json'],
        ]),
        ('cost', lambda: [[PY, 'experiments/cost/cost.py', '--epochs', '2',
                           '--repeats', '3', '--out', f'{R}/cost']]),
        ('report', lambda: [[PY, 'experiments/make_report.py']]),
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--only', nargs='+')
    p.add_argument('--skip-report', action='store_true')
    a = p.parse_args()
    os.chdir(ROOT)
    os.makedirs(R, exist_ok=True)
    os.makedirs(FIG, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    tpath = osp.join(R, 'timings.json')
    timings = json.load(open(tpath)) if osp.exists(tpath) else {}
    t_all = time.time()
    for name, cmds in stages():
        if a.only and name not in a.only:
            continue
        if name == 'report' and a.skip_report:
            continue
        t0 = time.time()
        parallel = '+' in name
        procs = []
        for cmd in cmds():
            print('$ ' + ' '.join(f"'{c}'" if ' ' in c else c for c in cmd),
                  flush=True)
            log = open(osp.join(R, f'{osp.basename(cmd[1])[:-3]}.log'), 'a')
            proc = subprocess.Popen(cmd, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            procs.append((proc, log, cmd))
            if not parallel:
                proc.wait()
        for proc, log, cmd in procs:
            if proc.wait() != 0:
                raise SystemExit(f'failed ({proc.returncode}): {cmd}')
            log.close()
        timings[name] = time.time() - t0
        print(f'== {name}: {timings[name]:.0f}s', flush=True)
        with open(tpath, 'w') as f:
            json.dump(timings, f, indent=1)
    if not a.only:
        timings['total'] = time.time() - t_all
        with open(tpath, 'w') as f:
            json.dump(timings, f, indent=1)
        # the page shows the total too
        if not a.skip_report:
            subprocess.run([PY, 'experiments/make_report.py'], check=True,
                           env=env)
    print(f'== total {time.time() - t_all:.0f}s')


if __name__ == '__main__':
    main()
