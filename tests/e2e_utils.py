"""Run tools/train.py / tools/test.py / tools/dist_train.sh as a user would,
and read what they leave in the work directory."""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import sema_mm  # noqa: F401  (allow-lists checkpoints for weights_only)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')


def _env():
    env = dict(os.environ)
    env['PYTHONWARNINGS'] = 'ignore'
    env['OMP_NUM_THREADS'] = '1'
    env.setdefault('MKL_NUM_THREADS', '1')
    return env


def run_tool(args, log_path, timeout=600):
    """Run a tools/ entry point in a subprocess; fail with its log tail."""
    if args[0].endswith('.py'):
        cmd = [sys.executable, osp.join(REPO, 'tools', args[0])] + args[1:]
    else:
        cmd = ['bash', osp.join(REPO, 'tools', args[0])] + args[1:]
    with open(log_path, 'w') as log:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout)
    out = open(log_path).read()
    assert proc.returncode == 0, f'{" ".join(cmd)} failed:\n{out[-6000:]}'
    return out


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scalars(work_dir):
    """Every record of the json scalar logs of all runs in ``work_dir``."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def val_records(work_dir, prefix):
    """The validation records: those with a metric named ``prefix/...``."""
    return [r for r in scalars(work_dir)
            if any(k.startswith(prefix + '/') for k in r)]


def switch_lines(text, hook='SEMAHook'):
    return [line for line in text.splitlines()
            if f'{hook}: switch ' in line and '||param - ema||' in line]
