"""Fill experiments/results_template.md with the numbers in
work_dirs/sema_results/*/summary.json -> docs/results.md."""
import json
import os.path as osp
import re

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
R = osp.join(ROOT, 'work_dirs', 'sema_results')


def load(name):
    p = osp.join(R, name, 'summary.json') if not name.endswith('.json') \
        else osp.join(R, name)
    return json.load(open(p)) if osp.exists(p) else None


def pm(m, s, nd=2):
    return f'{m:.{nd}f} ± {s:.{nd}f}'


def toy_table():
    t = load('toy')
    if t is None:
        return '(not run)'
    out = []
    for ds in ('circles', 'moons'):
        out += [f'\n**{ds}** ({t["seeds"]} seeds, 500 test points)\n',
                '| method | test top-1 (%) | ECE (%) | boundary width |',
                '|---|---|---|---|']
        for key, s in t['summary'].items():
            d, name = key.split('|')
            if d == ds:
                out.append(f'| {name} | {pm(*s["acc"])} | {pm(*s["ece"])} | '
                           f'{pm(*s["width"], nd=3)} |')
    return '\n'.join(out)


def digits_table():
    d = load('digits')
    if d is None:
        return '(not run)'
    out = [f'| run | rho = T·16·(1-alpha) | final top-1 (%) | best top-1 (%) | '
           f'epochs to {d["target"]:g}% (reached) | per-seed final |',
           '|---|---|---|---|---|---|']
    for name, s in d['conditions'].items():
        m = re.search(r'a=([0-9.]+)', name)
        t = re.search(r'T=([0-9.]+)', name)
        if m and t:
            rho = f'{16 * float(t.group(1)) * (1 - float(m.group(1))):.3g}'
        else:
            rho = '–'
        ep = (pm(s['ep_mean'], s['ep_std'], 1) if s['ep_mean'] is not None
              else 'never')
        out.append(f'| {name} | {rho} | {pm(s["final_mean"], s["final_std"])} '
                   f'| {pm(s["best_mean"], s["best_std"])} | {ep} '
                   f'({s["reached"]}/{s["n"]}) | '
                   f'{", ".join(f"{v:.1f}" for v in s["final"])} |')
    return '\n'.join(out)


def nqm_table():
    n = load('nqm')
    if n is None:
        return '(not run)'
    out = ['| a = eta·h | lambda = 1-alpha | T | V_SGD sim / Prop. 1 | '
           'V_EMA sim / Prop. 1 | V_SEMA sim / exact / Prop. 1 | '
           'V_SEMA / V_EMA (sim) |', '|---|---|---|---|---|---|---|']
    for r in n['rows']:
        mc, cf = r['mc'], r['closed']
        out.append(
            f'| {r["a"]} | {r["lam"]} | {r["T"]} | {mc["SGD"]:.4g} / '
            f'{cf["SGD"]:.4g} | {mc["EMA"]:.4g} / {cf["EMA"]:.4g} | '
            f'{mc["SEMA"]:.4g} / {r["exact_sema"]:.4g} / {cf["SEMA_T1"]:.4g} '
            f'| {mc["SEMA"] / mc["EMA"]:.3f} |')
    return '\n'.join(out)


def cost_table():
    c = load('cost')
    if c is None:
        return '(not run)'
    out = [f'{c["epochs"]} epochs ({c["variants"]["no hook"]["iters"]} '
           f'iterations) per run, {c["repeats"]} interleaved repeats, median.\n',
           '| hook | iterations/s | time vs no hook | hook after_train_iter '
           '(ms/iter) | EMA bytes | parameter bytes | EMA / params |',
           '|---|---|---|---|---|---|---|']
    for name, s in c['variants'].items():
        m = s['mem']
        mem = (f'{m["ema_bytes"]:,} | {m["param_bytes"]:,} | '
               f'{m["ema_bytes"] / m["param_bytes"]:.3f}' if m else '– | – | –')
        out.append(f'| {name} | {s["iters_per_s"]:.1f} | '
                   f'{s["time_ratio"]:.3f} | {s["hook_ms_per_iter"]:.2f} | '
                   f'{mem} |')
    return '\n'.join(out)


def timing_table():
    t = load('timings.json')
    if t is None:
        return '(not measured)'
    out = ['| stage | wall (s) |', '|---|---|']
    out += [f'| {k} | {v:.0f} |' for k, v in t.items()]
    return '\n'.join(out)


def main():
    tpl = open(osp.join(ROOT, 'experiments', 'results_template.md')).read()
    for key, fn in [('TOY', toy_table), ('DIGITS', digits_table),
                    ('NQM', nqm_table), ('COST', cost_table),
                    ('TIMINGS', timing_table)]:
        tpl = tpl.replace('{{' + key + '}}', fn())
    with open(osp.join(ROOT, 'docs', 'results.md'), 'w') as f:
        f.write(tpl)
    print('wrote docs/results.md')


if __name__ == '__main__':
    main()
