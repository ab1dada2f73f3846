"""1-D / 2-D loss landscapes of mm checkpoints (any mmengine config).

Three modes, all written as PNG (and optionally JSON):

* ``interp``: linear interpolation between two checkpoints
  (Goodfellow et al., 2015), ``theta(t) = (1 - t) theta_A + t theta_B``
  over every floating tensor of the state (BN running statistics included,
  held at the nearer end outside [0, 1] so variances stay positive);
  t = 0 and t = 1 are the two checkpoints exactly.
* ``1d``: ``L(theta* + s d)`` along one random filter-normalised direction
  (Li et al., 2018), for each checkpoint (paper Fig. 2 style: loss on the
  left axis, top-1 on the right when the model is a classifier).
* ``2d``: ``L(theta* + x d1 + y d2)`` on a grid, two filter-normalised
  random directions, one contour panel per checkpoint.

Filter normalisation: for every weight with >= 2 dims, each filter
``d[i]`` (slice along dim 0) is rescaled to the norm of ``theta[i]``;
1-dim tensors (biases, norm affine parameters) get a zero direction
(Li et al.'s ``ignore='biasbn'``). Buffers (BN statistics) stay at the
checkpoint's values. The loss is the model's own training loss
(``model(..., mode='loss')`` + ``parse_losses``) in eval mode, averaged
over the first ``--num-batches`` batches of the config's val (or train)
dataloader, preprocessed with ``training=False``.

    python tools/analysis/loss_landscape.py CONFIG --ckpts a.pth b.pth \
        --labels base sema --mode 1d --out landscape_1d.png

``--state-key ema_state_dict`` loads the *training* weights that
``EMAHook`` / ``SEMAHook`` checkpoints keep there (``state_dict`` holds the
EMA weights).
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys

import numpy as np
import torch


# ----------------------------------------------------------------------
# model, data, loss
def load_model(config, checkpoint=None, state_key='state_dict',
               cfg_options=None):
    """Build the model of an mmengine config and load a checkpoint.

    Returns:
        tuple: ``(model, cfg)`` with the model in eval mode on CPU.
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_weights(model, checkpoint, state_key)
    return model.eval(), cfg


def load_weights(model, checkpoint, state_key='state_dict'):
    from mmengine.runner.checkpoint import (_load_checkpoint,
                                            _load_checkpoint_to_model,
                                            load_checkpoint)
    if state_key == 'state_dict':
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        revise_keys=[(r'^module\.', '')])
        return model
    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    if state_key not in ckpt:
        raise KeyError(f'{checkpoint} has no {state_key!r} '
                       f'(keys: {list(ckpt)})')
    sd = {k: v for k, v in ckpt[state_key].items() if k != 'steps'}
    # mmengine averaged models prefix the wrapped model's keys with 'module.'
    _load_checkpoint_to_model(model, dict(state_dict=sd), strict=True,
                              revise_keys=[(r'^module\.', '')])
    return model


def build_batches(cfg, split='val', num_batches=4, model=None):
    """The first ``num_batches`` batches of the config's ``{split}_dataloader``,
    preprocessed once by ``model.data_preprocessor`` (``training=False``)."""
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(cfg.get(f'{split}_dataloader'))
    if loader_cfg is None:
        raise KeyError(f'the config has no {split}_dataloader')
    loader_cfg['num_workers'] = 0
    loader_cfg['persistent_workers'] = False
    if split == 'train':  # a fixed subset, not a random one
        loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    batches = []
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= num_batches:
                break
            batches.append(model.data_preprocessor(batch, False)
                           if model is not None else batch)
    return batches


def _batch_size(data):
    inputs = data['inputs']
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0]
    return len(inputs)


@torch.no_grad()
def evaluate(model, batches, with_acc=True):
    """Mean loss (sample-weighted) and top-1 (%) when the model predicts
    labels (mmpretrain classifiers); top-1 is None otherwise."""
    model.eval()
    tot, n, correct, counted = 0.0, 0, 0, 0
    for data in batches:
        losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        bs = _batch_size(data)
        tot += loss.item() * bs
        n += bs
        if with_acc:
            try:
                preds = model(**data, mode='predict')
                for p in preds:
                    if hasattr(p, 'pred_label') and hasattr(p, 'gt_label'):
                        correct += int(p.pred_label.view(-1)[0] ==
                                       p.gt_label.view(-1)[0])
                        counted += 1
            except Exception:  # not a classifier: loss only
                with_acc = False
    acc = 100.0 * correct / counted if counted else None
    return tot / n, acc


# ----------------------------------------------------------------------
# directions and walks
def float_state(model, params_only=False):
    if params_only:
        return {k: v.detach().clone() for k, v in model.named_parameters()}
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if v.dtype.is_floating_point}


def filter_normalized_direction(model, seed=0):
    """A random direction over the parameters, filter-normalised."""
    g = torch.Generator().manual_seed(seed)
    d = {}
    for k, p in model.named_parameters():
        if p.dim() <= 1:
            d[k] = torch.zeros_like(p)
            continue
        r = torch.randn(p.shape, generator=g, dtype=p.dtype)
        pn = p.detach().flatten(1).norm(dim=1)
        rn = r.flatten(1).norm(dim=1)
        scale = (pn / (rn + 1e-10)).view(-1, *([1] * (p.dim() - 1)))
        d[k] = r * scale
    return d


@torch.no_grad()
def _set(model, base, dirs_coefs):
    sd = model.state_dict()
    for k, v in base.items():
        new = v.clone()
        for d, c in dirs_coefs:
            if k in d and c != 0:
                new.add_(d[k], alpha=c)
        sd[k].copy_(new)


@torch.no_grad()
def interpolate(model, state_a, state_b, ts, batches):
    """Losses (and top-1) along (1 - t) A + t B over all float state."""
    out = []
    params = {k for k, _ in model.named_parameters()}
    for t in ts:
        sd = model.state_dict()
        for k in state_a:
            # Buffers (BN running mean / var) are interpolated but not
            # extrapolated: outside [0, 1] a running variance can turn
            # negative. Parameters follow t everywhere.
            tk = t if k in params else min(max(t, 0.0), 1.0)
            sd[k].copy_(state_a[k] * (1 - tk) + state_b[k] * tk)
        out.append(evaluate(model, batches))
    _set(model, state_a, [])
    return out


def landscape_1d(model, batches, ss, direction):
    base = float_state(model, params_only=True)
    out = []
    for s in ss:
        _set(model, base, [(direction, s)])
        out.append(evaluate(model, batches))
    _set(model, base, [])
    return out


def landscape_2d(model, batches, xs, ys, d1, d2):
    base = float_state(model, params_only=True)
    loss = np.zeros((len(ys), len(xs)))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            _set(model, base, [(d1, x), (d2, y)])
            loss[i, j] = evaluate(model, batches, with_acc=False)[0]
    _set(model, base, [])
    return loss


# ----------------------------------------------------------------------
# plots
def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_1d(xs, curves, labels, out, xlabel, title=None):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax2 = None
    for lab, vals in zip(labels, curves):
        loss = [v[0] for v in vals]
        line, = ax.plot(xs, loss, label=f'{lab} loss')
        accs = [v[1] for v in vals]
        if all(a is not None for a in accs):
            ax2 = ax2 or ax.twinx()
            ax2.plot(xs, accs, '--', color=line.get_color(),
                     label=f'{lab} top-1')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('loss (solid)')
    ax.set_yscale('log')
    if ax2 is not None:
        ax2.set_ylabel('top-1 % (dashed)')
    h, lab = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        h, lab = h + h2, lab + l2
    ax.legend(h, lab, fontsize=7, loc='upper center')
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_2d(xs, ys, grids, labels, out, title=None):
    plt = _plt()
    n = len(grids)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.9), squeeze=False)
    lo = min(g.min() for g in grids)
    hi = max(np.percentile(g, 95) for g in grids)
    levels = np.geomspace(max(lo, 1e-4), max(hi, lo * 1.01 + 1e-6), 15)
    for ax, g, lab in zip(axes[0], grids, labels):
        cs = ax.contour(xs, ys, np.clip(g, None, levels[-1]), levels=levels,
                        cmap='viridis')
        ax.clabel(cs, cs.levels[::3], fontsize=6, fmt='%.2g')
        ax.plot([0], [0], 'r*', ms=9)
        ax.set_title(f'{lab}\ncentre loss {g[len(ys) // 2, len(xs) // 2]:.3g}',
                     fontsize=9)
        ax.set_xlabel('d1')
        ax.set_ylabel('d2')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------
def run(config, ckpts, mode='1d', labels=None, split='val', num_batches=4,
        lo=-1.0, hi=1.0, steps=21, seed=0, state_key='state_dict', out=None,
        title=None):
    """Compute (and plot if ``out``) a landscape. Returns a JSON-able dict."""
    import torch as _t
    labels = labels or [osp.splitext(osp.basename(c))[0] for c in ckpts]
    model, cfg = load_model(config, ckpts[0], state_key)
    batches = build_batches(cfg, split, num_batches, model)
    xs = np.linspace(lo, hi, steps)
    res = dict(mode=mode, xs=xs.tolist(), labels=labels, ckpts=list(ckpts),
               split=split, num_batches=num_batches)
    if mode == 'interp':
        assert len(ckpts) == 2, 'interp needs exactly two checkpoints'
        sa = float_state(model)
        load_weights(model, ckpts[1], state_key)
        sb = float_state(model)
        vals = interpolate(model, sa, sb, xs.tolist(), batches)
        res['values'] = [vals]
        if out:
            plot_1d(xs, [vals], [f'{labels[0]} (t=0) -> {labels[1]} (t=1)'],
                    out, 't', title)
    elif mode == '1d':
        curves = []
        for c in ckpts:
            load_weights(model, c, state_key)
            d = filter_normalized_direction(model, seed)
            curves.append(landscape_1d(model, batches, xs.tolist(), d))
        res['values'] = curves
        if out:
            plot_1d(xs, curves, labels, out,
                    'step along a filter-normalised random direction', title)
    elif mode == '2d':
        grids = []
        for c in ckpts:
            load_weights(model, c, state_key)
            d1 = filter_normalized_direction(model, seed)
            d2 = filter_normalized_direction(model, seed + 1)
            grids.append(landscape_2d(model, batches, xs, xs, d1, d2))
        res['values'] = [g.tolist() for g in grids]
        if out:
            plot_2d(xs, xs, grids, labels, out, title)
    else:
        raise ValueError(mode)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--ckpts', nargs='+', required=True)
    p.add_argument('--labels', nargs='+')
    p.add_argument('--mode', choices=['interp', '1d', '2d'], default='1d')
    p.add_argument('--split', choices=['val', 'train', 'test'], default='val')
    p.add_argument('--num-batches', type=int, default=4)
    p.add_argument('--range', nargs=2, type=float, default=None,
                   help='default: -1 1 (1d/2d), -0.5 1.5 (interp)')
    p.add_argument('--steps', type=int, default=21)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--state-key', default='state_dict')
    p.add_argument('--title')
    p.add_argument('--out', required=True, help='PNG path')
    p.add_argument('--json', help='also write the values here')
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lo, hi = a.range or ((-0.5, 1.5) if a.mode == 'interp' else (-1.0, 1.0))
    res = run(a.config, a.ckpts, a.mode, a.labels, a.split, a.num_batches, lo,
              hi, a.steps, a.seed, a.state_key, a.out, a.title)
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(res, f)
    print(f'wrote {a.out}')


if __name__ == '__main__':
    main()
