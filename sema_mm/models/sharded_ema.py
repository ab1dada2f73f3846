"""Switch EMA for sharded models: the EMA lives on each rank's local shard.

Under FSDP the parameters of a model are split across ranks, and an EMA that
deep-copies the module (mmengine's averaged models) copies whatever local
views FSDP happens to expose and cannot be saved, resumed or exported as one
model. :class:`ShardedEMAModel` instead keeps one plain tensor per parameter
holding exactly this rank's part of it, so EMA memory per rank is the
parameter bytes divided by the world size:

- FSDP (``FullyShardedDataParallel``, as built by mmengine's
  ``FSDPStrategy``) with ``use_orig_params=True``: every original parameter's
  ``.data`` is a 1-D view of its part of the rank's flat shard (size 0 where
  the rank holds none of it);
- FSDP2 (``torch.distributed.fsdp.fully_shard``): every parameter is a
  ``DTensor`` whose local tensor is the rank's shard (dim-0 chunks);
- DeepSpeed ZeRO stage 3 (kind ``'zero3'``): the rank's partition of every
  parameter in the optimizer's fp32 master weights (a 1-D piece of the
  flattened parameter, padded at the end), written back to
  ``param.ds_tensor`` after a switch or swap;
- DeepSpeed ZeRO stage 1 and 2, and the bf16 optimizer (kind ``'zero'``):
  the fragments of the fp32 master weights this rank's optimizer owns
  (``param._hp_mapping``); the full low-precision parameters are rebuilt
  from them (``optimizer.update_lp_params()``, an all-gather) after a switch
  or swap.

Under DeepSpeed the EMA follows the fp32 master weights, not the
(possibly 16-bit) model parameters, and the switch writes the master
weights, which the next optimizer step would otherwise copy back over the
model.

Every operation on the training path works on those local tensors, fetched
afresh at each call (a Python loop over the parameters: no tensor reads, no
collectives, except the DeepSpeed write-back noted above):

- :meth:`ShardedEMAModel.update_parameters`: one ``torch._foreach_lerp_``
  (the first update copies), exactly as :class:`SwitchEMAModel`;
- :meth:`ShardedEMAModel.copy_to` (the switch) and
  :meth:`ShardedEMAModel.swap` (validation / test): in place, shard-wise;
- :meth:`ShardedEMAModel.switch_statistics`: one ``all_reduce`` of three
  numbers, at a switch only, so that every rank takes the same decision.

Gathering the EMA into one full state dict (:meth:`full_state_dict`) is a
collective for evaluation and export, never called on the per-iteration path.

Buffers are not sharded by FSDP; with ``update_buffers=True`` floating
buffers are averaged (whole, on every rank) and the others copied, as in
:class:`SwitchEMAModel`.
"""
import numbers
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from .switch_ema import check_momentum, foreach_copy_

__all__ = [
    'ShardedEMAModel', 'sharded_kind', 'local_shard',
    'clean_name', 'gather_full_state_dict', 'is_sharded_ema_state',
    'stitch_shards', 'deepspeed_engine',
    'SHARDED_EMA_TYPES'
]

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover
    DTensor = None

#: The ``ema_type`` values whose maths ShardedEMAModel reproduces (a
#: constant-momentum EMA, first update copies).
SHARDED_EMA_TYPES = ('SwitchEMAModel', 'ExponentialMovingAverage',
                     'ShardedEMAModel')

#: Kinds whose local shard is a 1-D piece of the flattened parameter.
FLAT_KINDS = ('fsdp', 'zero', 'zero3')

# Prefixes FSDP and activation checkpointing put into parameter names.
_WRAPPER_PREFIXES = ('_fsdp_wrapped_module.', '_checkpoint_wrapped_module.',
                     '_orig_mod.')


def clean_name(name: str) -> str:
    """The name of a tensor in the unwrapped model."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, '')
    return name


def _fsdp1_class():
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover
        return None
    return FullyShardedDataParallel


def _is_dtensor(t) -> bool:
    return DTensor is not None and isinstance(t, DTensor)


def deepspeed_engine(model) -> Optional[nn.Module]:
    """The ``DeepSpeedEngine`` behind ``model``: the engine itself or
    mmengine's ``MMDeepSpeedEngineWrapper`` around it; None otherwise (and
    always when DeepSpeed has not been imported)."""
    ds = sys.modules.get('deepspeed')
    engine_cls = getattr(ds, 'DeepSpeedEngine', None)
    if engine_cls is None:
        return None
    for m in (model, getattr(model, 'model', None)):
        if isinstance(m, engine_cls):
            return m
    return None


def _deepspeed_kind(engine) -> str:
    """``'zero3'`` or ``'zero'``."""
    opt = engine.optimizer
    if getattr(opt, 'offload_optimizer', False) or getattr(
            opt, 'cpu_offload', False):
        raise NotImplementedError(
            'SEMAHook does not support DeepSpeed optimizer offload '
            '(zero_optimization.offload_optimizer) yet')
    if engine.zero_optimization_partition_weights():
        return 'zero3'
    if any(hasattr(p, '_hp_mapping') for p in engine.module.parameters()):
        return 'zero'
    raise NotImplementedError(
        'SEMAHook under DeepSpeed needs ZeRO stage 1, 2 or 3 '
        '(zero_optimization.stage); stage 0 is plain data parallelism: use '
        'DDP (the default runner) for it')


def sharded_kind(model: nn.Module) -> Optional[str]:
    """How ``model`` is sharded.

    Args:
        model (nn.Module): A model, wrapped or not (a DeepSpeed engine or
            mmengine's wrapper of it included).

    Returns:
        str, optional: ``'fsdp'`` (FSDP1 wrapper somewhere in the model),
        ``'fsdp2'`` (DTensor parameters, e.g. from ``fully_shard``),
        ``'zero3'`` (DeepSpeed ZeRO stage 3), ``'zero'`` (DeepSpeed ZeRO
        stage 1/2 or its bf16 optimizer: fp32 master weights partitioned)
        or None (not sharded: use :class:`SwitchEMAModel`).

    Raises:
        ValueError: For FSDP1 without ``use_orig_params=True``, whose
            original parameters are not visible.
        NotImplementedError: For DeepSpeed set-ups the EMA does not follow
            (optimizer offload, ZeRO stage 0).
    """
    engine = deepspeed_engine(model)
    if engine is not None:
        return _deepspeed_kind(engine)
    fsdp = _fsdp1_class()
    if fsdp is not None:
        units = [m for m in model.modules() if isinstance(m, fsdp)]
        if units:
            if not all(getattr(m, '_use_orig_params', False) for m in units):
                raise ValueError(
                    'SEMAHook supports FSDP only with use_orig_params=True '
                    "(FSDPStrategy(model_wrapper=dict(use_orig_params=True,"
                    ' ...))); without it the original parameters are '
                    'hidden in flat parameters')
            return 'fsdp'
    if any(_is_dtensor(p) for p in model.parameters()):
        return 'fsdp2'
    return None


def local_shard(param: Tensor) -> Tensor:
    """This rank's part of ``param`` as a plain tensor sharing its storage.

    In-place writes to the result reach the parameter (and so the optimizer
    and the FSDP flat parameter).
    """
    if _is_dtensor(param):
        return param._local_tensor
    return param.data


def _zero3_local(param: Tensor) -> Tensor:
    """ZeRO-3: this rank's partition of ``param`` in the optimizer's fp32
    master weights (a view into its flat group); a frozen parameter has no
    master copy, its partition ``ds_tensor`` is the weight."""
    if param.requires_grad:
        return param._z3_optimizer.get_local_fp32_param(param)
    return param.ds_tensor.data


def _zero_local(param: Tensor, rank: int) -> Tensor:
    """ZeRO-1/2: the fragment of ``param``'s fp32 master weights that this
    rank's optimizer owns (empty if none). Frozen parameters are not in
    the optimizer and are full on every rank: rank 0 keeps them."""
    mapping = getattr(param, '_hp_mapping', None)
    if mapping is not None:
        return mapping.get_hp_fragment()
    if not param.requires_grad and rank == 0:
        return param.data
    return param.data.new_empty(0)


def _zero_layout(params, kind: str):
    """Unsharded shapes and flat start offsets of the local pieces under
    DeepSpeed (``kind`` ``'zero3'`` or ``'zero'``)."""
    shapes, offsets = {}, {}
    for n, p in params:
        if kind == 'zero3':
            shapes[n] = tuple(p.ds_shape)
            group_rank = dist.get_rank(group=p.ds_process_group)
            offsets[n] = (group_rank * p.ds_tensor.ds_numel, )
        else:
            shapes[n] = tuple(p.shape)
            mapping = getattr(p, '_hp_mapping', None)
            offsets[n] = ((mapping.lp_fragment_address.start, )
                          if mapping is not None else (0, ))
    return shapes, offsets


def _fsdp1_shard_infos(root: nn.Module) -> Dict[int, object]:
    """``id(original parameter) -> (_ShardParamInfo, unsharded shape)`` for
    every FSDP1 unit (under FSDP1 a parameter's own shape is that of its
    local 1-D piece)."""
    fsdp = _fsdp1_class()
    infos = {}
    for m in root.modules():
        handle = getattr(m, '_handle', None) if isinstance(m, fsdp) else None
        if handle is None:
            continue
        flat = handle.flat_param
        for p, info, shape in zip(flat._params or [],
                                  flat._shard_param_infos, flat._shapes):
            infos[id(p)] = (info, tuple(shape))
    return infos


def _shard_offset(param: Tensor, info=None) -> Tuple[int, ...]:
    """Where :func:`local_shard` of ``param`` starts in the full tensor:
    a flat index for FSDP1 (the local shard is a 1-D piece of the flattened
    parameter), the global offset per dimension for DTensors."""
    if _is_dtensor(param):
        from torch.distributed.tensor._utils import \
            compute_local_shape_and_global_offset
        _, offset = compute_local_shape_and_global_offset(
            param.shape, param.device_mesh, param.placements)
        return tuple(int(o) for o in offset)
    if info is None or not info[0].in_shard:
        return (0, )
    return (int(info[0].intra_param_start_idx), )


def stitch_shards(states: List[dict]) -> Dict[str, Tensor]:
    """Rebuild the full EMA parameters from the saved local states of all
    ranks, offline (no process group).

    Args:
        states (list[dict]): :meth:`ShardedEMAModel.state_dict` of every
            rank, in any order.

    Returns:
        dict[str, Tensor]: Full tensors by unwrapped parameter name.
    """
    if not states or not all(is_sharded_ema_state(s) for s in states):
        raise ValueError('expected the ShardedEMAModel states of all ranks')
    world = states[0]['layout']['world_size']
    ranks = sorted(s['layout']['rank'] for s in states)
    if ranks != list(range(world)):
        raise ValueError(f'need the states of ranks 0..{world - 1}, got '
                         f'{ranks}')
    kind = states[0]['layout']['kind']
    out = OrderedDict()
    for name, shape in states[0]['layout']['full_shapes'].items():
        # the dtype of a piece that holds values (an empty one may be a
        # placeholder of another dtype)
        first = next((s['params'][name] for s in states
                      if s['params'][name].numel()),
                     states[0]['params'][name])
        full = torch.zeros(shape, dtype=first.dtype)
        seen = torch.zeros(shape, dtype=torch.bool)
        for s in states:
            piece = s['params'][name]
            if not piece.numel():
                continue
            offset = s['layout']['offsets'][name]
            if kind in FLAT_KINDS:
                start = offset[0]
                # ZeRO-3 pads the partitions to equal sizes
                n = min(piece.numel(), full.numel() - start)
                if n <= 0:
                    continue
                full.view(-1)[start:start + n] = piece.reshape(-1)[:n]
                seen.view(-1)[start:start + n] = True
            else:
                index = tuple(
                    slice(o, o + n) for o, n in zip(offset, piece.shape))
                full[index] = piece
                seen[index] = True
        if not bool(seen.all()):
            raise ValueError(f'the saved shards do not cover {name!r}')
        out[name] = full
    return out


class ShardedEMAModel(nn.Module):
    r"""Exponential moving average of a sharded model, on local shards.

    The maths are those of :class:`SwitchEMAModel` (mmengine momentum
    convention :math:`\theta_{ema} \leftarrow (1 - m)\theta_{ema} + m\theta`,
    the first update copies, then every ``interval``-th update averages; a
    host-side counter mirrored in the ``steps`` buffer), applied to this
    rank's shard of every parameter. See the module docstring.

    Args:
        model (nn.Module): The sharded model (FSDP1 wrapper or its module,
            a model with FSDP2 ``DTensor`` parameters, or a DeepSpeed
            engine's module, with the engine as ``root``).
        momentum (float): The mmengine momentum ``m`` in (0, 1).
            Defaults to 0.001 (the paper's alpha = 0.999).
        interval (int): Average every ``interval`` updates. Defaults to 1.
        device: Accepted for config compatibility; must be None (the EMA
            stays with the shards).
        update_buffers (bool): Average floating buffers and copy the others
            (whole tensors: FSDP does not shard buffers). Defaults to False.
        root (nn.Module, optional): The outermost wrapper: the FSDP1
            wrapper (needed for :meth:`full_state_dict` under FSDP1 when
            ``model`` is the unwrapped module) or the DeepSpeed engine (or
            mmengine's wrapper of it; needed under DeepSpeed). Defaults to
            None (``model``).
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 0.001,
                 interval: int = 1,
                 device=None,
                 update_buffers: bool = False,
                 root: Optional[nn.Module] = None) -> None:
        super().__init__()
        if device is not None:
            raise ValueError('ShardedEMAModel keeps the EMA next to the '
                             f'shards; `device` must be None, got {device!r}')
        self.momentum = check_momentum(momentum)
        if isinstance(interval, bool) or not isinstance(
                interval, numbers.Integral) or interval < 1:
            raise ValueError('`interval` must be an integer >= 1, but got '
                             f'{interval!r}')
        self.interval = int(interval)
        self.update_buffers = bool(update_buffers)
        self.kind = sharded_kind(root if root is not None else model)
        if self.kind is None:
            raise ValueError('ShardedEMAModel needs a model sharded with '
                             'FSDP (use_orig_params=True), FSDP2 or '
                             'DeepSpeed ZeRO; use SwitchEMAModel for other '
                             'models')
        self._root = root if root is not None else model
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = (dist.get_world_size()
                           if dist.is_initialized() else 1)
        model = self._unwrap(model)

        params = [(clean_name(n), p) for n, p in model.named_parameters()]
        # Where each local shard sits in its full parameter, so that saved
        # shards can be stitched together offline (tools/export_ema.py).
        if self.kind in ('zero', 'zero3'):
            self.full_shapes, self.offsets = _zero_layout(params, self.kind)
        else:
            infos = (_fsdp1_shard_infos(self._root)
                     if self.kind == 'fsdp' else {})
            self.full_shapes = {
                n: infos[id(p)][1] if id(p) in infos else tuple(p.shape)
                for n, p in params
            }
            self.offsets = {n: _shard_offset(p, infos.get(id(p)))
                            for n, p in params}
        self.shards: Dict[str, Tensor] = OrderedDict(
            (n, t.detach().clone())
            for (n, _), t in zip(params, self._sources(p for _, p in params)))
        self.buffer_names: List[str] = []
        self.buffer_avg: Dict[str, Tensor] = OrderedDict()
        if self.update_buffers:
            for n, b in model.named_buffers():
                self.buffer_names.append(clean_name(n))
                self.buffer_avg[clean_name(n)] = local_shard(
                    b).detach().clone()
        # Positions (in the fetched list) of non-empty floating tensors,
        # which the fused update touches, and of non-floating ones, copied.
        ema = self._ema_list()
        self._avg_idx = [
            i for i, e in enumerate(ema)
            if e.numel() and e.dtype.is_floating_point
        ]
        self._copy_idx = [
            i for i, e in enumerate(ema)
            if e.numel() and not e.dtype.is_floating_point
        ]
        self._avg_ema = [ema[i] for i in self._avg_idx]
        self._copy_ema = [ema[i] for i in self._copy_idx]
        self.register_buffer('steps', torch.tensor(0, dtype=torch.long))
        self._one = torch.ones_like(self.steps)
        self._num_updates = 0  # host mirror of ``steps``

    # ------------------------------------------------------------------
    # tensors
    def _ema_list(self) -> List[Tensor]:
        return list(self.shards.values()) + list(self.buffer_avg.values())

    def _unwrap(self, model):
        """The module whose parameters the EMA follows (a DeepSpeed engine
        stands for its ``module``)."""
        engine = deepspeed_engine(model)
        return engine.module if engine is not None else model

    def _sources(self, params) -> List[Tensor]:
        """The local tensors the EMA follows, one per parameter."""
        if self.kind == 'zero3':
            return [_zero3_local(p) for p in params]
        if self.kind == 'zero':
            return [_zero_local(p, self.rank) for p in params]
        return [local_shard(p) for p in params]

    def _model_list(self, model: nn.Module) -> List[Tensor]:
        """This rank's current local tensors of ``model``, aligned with
        :meth:`_ema_list` (fetched afresh: FSDP re-creates the views)."""
        model = self._unwrap(model)
        out = self._sources(model.parameters())
        if self.update_buffers:
            out += [local_shard(b) for b in model.buffers()]
        if len(out) != len(self.shards) + len(self.buffer_avg):
            raise RuntimeError('the model does not have the tensors the '
                               'EMA was built from')
        return out

    @staticmethod
    def model_buffers(model: nn.Module) -> Dict[str, Tensor]:
        """Copies of ``model``'s persistent buffers by unwrapped name (FSDP
        does not shard buffers), saved beside the shards for export."""
        out = OrderedDict()
        for prefix, module in model.named_modules():
            for name, buf in module._buffers.items():
                if buf is None or name in module._non_persistent_buffers_set:
                    continue
                key = clean_name(f'{prefix}.{name}' if prefix else name)
                out[key] = local_shard(buf).detach().clone()
        return out

    def ema_bytes(self) -> int:
        """Bytes this rank's EMA holds (parameters and averaged buffers)."""
        return sum(t.numel() * t.element_size() for t in self._ema_list())

    # ------------------------------------------------------------------
    # training path (no collectives)
    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Advance the EMA by one step towards ``model`` (local shards).

        Args:
            model (nn.Module): The sharded training model.
        """
        src = self._model_list(model)
        avg_s = [src[i] for i in self._avg_idx]
        if self._num_updates == 0:
            foreach_copy_(self._avg_ema, avg_s)
        elif self._num_updates % self.interval == 0:
            torch._foreach_lerp_(self._avg_ema, avg_s, self.momentum)
        if self._copy_ema:
            foreach_copy_(self._copy_ema, [src[i] for i in self._copy_idx])
        self.steps.add_(self._one)
        self._num_updates += 1

    @torch.no_grad()
    def reset_to(self, model: nn.Module) -> None:
        """Make the EMA equal to ``model`` (before the EMA starts)."""
        src = self._model_list(model)
        idx = self._avg_idx + self._copy_idx
        foreach_copy_([self._ema_list()[i] for i in idx],
                      [src[i] for i in idx])

    def _pairs(self, model: nn.Module) -> Tuple[List[Tensor], List[Tensor]]:
        ema, src = self._ema_list(), self._model_list(model)
        n = len(self.shards) if not self.update_buffers else len(ema)
        keep = [i for i in range(n) if ema[i].numel()]
        return [ema[i] for i in keep], [src[i] for i in keep]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """The switch: copy the EMA into ``model``'s shards in place.

        Args:
            model (nn.Module): The sharded training model.
        """
        ema, src = self._pairs(model)
        if ema:
            foreach_copy_(src, ema)
        self._write_back(model)

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the EMA and ``model``'s shards in place (val / test)."""
        ema, src = self._pairs(model)
        for e, s in zip(ema, src):
            tmp = e.clone()
            e.copy_(s)
            s.copy_(tmp)
        self._write_back(model)

    @torch.no_grad()
    def _write_back(self, model: nn.Module) -> None:
        """Under DeepSpeed, make the model parameters follow the fp32 master
        weights that :meth:`copy_to` / :meth:`swap` just wrote (the next
        optimizer step would do it, too late for the forward passes
        before it). A collective for ``'zero'`` and for ZeRO-3's persistent
        (never partitioned) parameters; a no-op for FSDP."""
        if self.kind == 'zero3':
            opt = deepspeed_engine(self._root).optimizer
            # release the gathered copies of the persistent parameters ...
            opt.checkpoint_event_prologue()
            for p in self._unwrap(model).parameters():
                if p.requires_grad:
                    p.ds_tensor.data.copy_(_zero3_local(p))
            # ... and gather them again from the new partitions
            opt.checkpoint_event_epilogue()
        elif self.kind == 'zero':
            deepspeed_engine(self._root).optimizer.update_lp_params()

    @torch.no_grad()
    def switch_statistics(self, model: nn.Module) -> Tuple[float, bool]:
        """Relative distance ``||param - ema|| / ||param||`` over all ranks
        and whether the whole EMA is finite: one ``all_reduce`` of three
        numbers, so that every rank takes the same decision at a switch.

        Args:
            model (nn.Module): The sharded training model.

        Returns:
            tuple[float, bool]: The distance and the finiteness.
        """
        ema, src = self._pairs(model)
        pairs = [(e, s) for e, s in zip(ema, src)
                 if e.dtype.is_floating_point]
        device = self.steps.device
        if pairs:
            device = pairs[0][0].device
            ema_f = [e.float() for e, _ in pairs]
            src_f = [s.float() for _, s in pairs]
            diff_sq = torch.stack(torch._foreach_norm(
                torch._foreach_sub(src_f, ema_f))).square().sum()
            src_sq = torch.stack(torch._foreach_norm(src_f)).square().sum()
            bad = (~torch.isfinite(
                torch.stack(torch._foreach_norm(ema_f)).sum())).float()
            stats = torch.stack([diff_sq, src_sq, bad])
        else:
            stats = torch.zeros(3, device=device)
        if dist.is_initialized() and self.world_size > 1:
            dist.all_reduce(stats)
        diff_sq, src_sq, bad = stats.tolist()
        diff, ref = diff_sq**0.5, src_sq**0.5
        return (diff / ref if ref > 0 else diff), bad == 0

    # ------------------------------------------------------------------
    # state
    def layout(self) -> dict:
        """What a saved local state must match to be loaded here."""
        return dict(
            kind=self.kind,
            rank=self.rank,
            world_size=self.world_size,
            full_shapes=dict(self.full_shapes),
            offsets=dict(self.offsets),
            shapes={
                n: tuple(t.shape)
                for n, t in self.shards.items()
            })

    def state_dict(self, *args, **kwargs) -> dict:  # noqa: D102
        """This rank's EMA: ``steps``, ``layout`` and the local shards as
        plain tensors (loadable with ``torch.load(weights_only=True)``)."""
        return dict(
            sharded_ema=1,
            steps=self.steps.detach().clone(),
            layout=self.layout(),
            params=OrderedDict(
                (n, t.detach().clone()) for n, t in self.shards.items()),
            buffers=OrderedDict(
                (n, t.detach().clone()) for n, t in self.buffer_avg.items()))

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict, strict: bool = True):
        """Load a state saved by :meth:`state_dict` on the same rank of the
        same sharding, or one written by :meth:`full_state` (any sharding).

        Args:
            state_dict (dict): The saved local (or full) state.
            strict (bool): Accepted for interface compatibility; the layout
                must match whatever its value.
        """
        if not is_sharded_ema_state(state_dict):
            raise ValueError('not a ShardedEMAModel state; use '
                             'load_full_state_dict for a full EMA')
        saved = state_dict['layout']
        if saved.get('kind') == 'full':
            full = OrderedDict(state_dict['params'])
            full.update(state_dict.get('buffers', {}))
            self.load_full_state_dict(full, steps=int(state_dict['steps']))
            return None
        mine = self.layout()
        for key in ('kind', 'rank', 'world_size', 'shapes'):
            if saved.get(key) != mine[key]:
                raise ValueError(
                    f'the saved sharded EMA was written with {key}='
                    f'{saved.get(key)!r}, this run has {mine[key]!r}: resume '
                    'with the same sharding, or export the EMA to a full '
                    'state dict (tools/export_ema.py) and load that')
        for n, t in self.shards.items():
            t.copy_(state_dict['params'][n])
        for n, t in self.buffer_avg.items():
            t.copy_(state_dict['buffers'][n])
        self.steps.copy_(state_dict['steps'])
        self._num_updates = int(self.steps.item())
        return None

    def _cut(self, name: str, full: Tensor) -> Tensor:
        """This rank's piece of the full tensor ``full`` of parameter
        ``name``, shaped as its EMA shard (no communication)."""
        shape = self.full_shapes[name]
        if tuple(full.shape) != tuple(shape):
            raise ValueError(f'{name}: shape {tuple(full.shape)} does not '
                             f'match the parameter {tuple(shape)}')
        local, offset = self.shards[name], self.offsets[name]
        if self.kind in FLAT_KINDS:
            start = offset[0]
            piece = full.reshape(-1)[start:start + local.numel()]
            if piece.numel() < local.numel():  # ZeRO-3 partition padding
                piece = torch.cat(
                    [piece, piece.new_zeros(local.numel() - piece.numel())])
            return piece.view(local.shape)
        return full[tuple(
            slice(o, o + n) for o, n in zip(offset, local.shape))]

    @torch.no_grad()
    def load_full_state_dict(self,
                             full: Dict[str, Tensor],
                             model: Optional[nn.Module] = None,
                             steps: Optional[int] = None) -> None:
        """Fill the local shards from a full (unsharded) state dict, e.g. an
        exported EMA or the ``ema_state_dict`` of a DDP checkpoint (its
        ``module.`` prefix is stripped). No communication.

        Args:
            full (dict[str, Tensor]): Full tensors by unwrapped name.
            model (nn.Module, optional): Unused (the layout recorded at
                construction says where this rank's pieces are); accepted
                for compatibility. Defaults to None.
            steps (int, optional): The update count to set. Defaults to
                None (``full['steps']`` if present, else unchanged).
        """
        full = {(k[7:] if k.startswith('module.') else k): v
                for k, v in full.items()}
        missing = [n for n in self.shards if n not in full]
        if missing:
            raise KeyError(f'the full state dict lacks {missing[:5]}')
        for n, t in self.shards.items():
            t.copy_(self._cut(n, full[n]))
        for n, t in self.buffer_avg.items():
            if n in full:
                t.copy_(full[n])
        if steps is None and 'steps' in full:
            steps = int(full['steps'])
        if steps is not None:
            self.steps.fill_(steps)
            self._num_updates = int(steps)

    # ------------------------------------------------------------------
    # gathering (collective; evaluation and export only)
    @torch.no_grad()
    def full_state_dict(self, model: nn.Module) -> Dict[str, Tensor]:
        """The EMA as one full state dict of the unwrapped model, on every
        rank (parameters from the EMA, buffers from the model unless
        ``update_buffers=True``). A collective: call it on all ranks, off
        the training path.

        Args:
            model (nn.Module): The sharded model the EMA belongs to.

        Returns:
            dict[str, Tensor]: Full CPU tensors keyed as the unwrapped
            model's ``state_dict``.
        """
        if self.kind in ('zero', 'zero3'):
            return self._stitched_state_dict(model)
        self.swap(model)
        try:
            return gather_full_state_dict(self._root, self.kind)
        finally:
            self.swap(model)

    def _stitched_state_dict(self, model: nn.Module) -> Dict[str, Tensor]:
        """:meth:`full_state_dict` by gathering every rank's local state
        (``all_gather_object``) and stitching it (DeepSpeed)."""
        states = [None] * self.world_size
        if self.world_size > 1:
            dist.all_gather_object(states, self.state_dict())
        else:
            states = [self.state_dict()]
        params = stitch_shards(states)
        model = self._unwrap(model)
        buffers = self.model_buffers(model)
        out = OrderedDict()
        for key in model.state_dict().keys():  # ZeRO-3: placeholders
            key = clean_name(key)
            if key in params:
                out[key] = params[key]
            elif key in states[0]['buffers']:
                out[key] = states[0]['buffers'][key].cpu()
            elif key in buffers:
                out[key] = buffers[key].cpu()
        return out

    def full_state(self, model: nn.Module) -> dict:
        """The whole EMA as one state of layout kind ``'full'``, which
        :meth:`load_state_dict` cuts into any sharding. A collective: what
        a checkpoint holds when one rank writes it for all (DeepSpeed ZeRO
        stage 1/2 saves the client state of rank 0 only).

        Args:
            model (nn.Module): The sharded model the EMA belongs to.

        Returns:
            dict: A state like :meth:`state_dict`'s, for world size 1.
        """
        full = self.full_state_dict(model)
        shapes = {n: tuple(full[n].shape) for n in self.shards}
        return dict(
            sharded_ema=1,
            steps=self.steps.detach().clone(),
            layout=dict(
                kind='full',
                rank=0,
                world_size=1,
                full_shapes=shapes,
                offsets={n: (0, ) * len(s)
                         for n, s in shapes.items()},
                shapes=dict(shapes)),
            params=OrderedDict((n, full[n]) for n in self.shards),
            buffers=OrderedDict((n, full[n]) for n in self.buffer_avg))


def gather_full_state_dict(root: nn.Module, kind: str) -> Dict[str, Tensor]:
    """The full state dict of a sharded model on every rank (collective).

    Args:
        root (nn.Module): The outermost FSDP1 wrapper, the FSDP2 model, or
            the DeepSpeed engine (or mmengine's wrapper of it).
        kind (str): ``'fsdp'``, ``'fsdp2'``, ``'zero'`` or ``'zero3'``.

    Returns:
        dict[str, Tensor]: Full CPU tensors keyed by unwrapped names.
    """
    engine = deepspeed_engine(root)
    if engine is not None:
        root = engine.module
    if kind == 'zero3':
        import deepspeed
        with deepspeed.zero.GatheredParameters(list(root.parameters())):
            state = OrderedDict(
                (k, v.detach().cpu().clone())
                for k, v in root.state_dict().items())
    elif kind == 'fsdp':
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        fsdp = _fsdp1_class()
        with fsdp.state_dict_type(
                root, StateDictType.FULL_STATE_DICT,
                FullStateDictConfig(offload_to_cpu=False, rank0_only=False)):
            state = root.state_dict()
    elif kind == 'fsdp2':
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, get_model_state_dict)
        state = get_model_state_dict(
            root, options=StateDictOptions(full_state_dict=True))
    else:
        state = root.state_dict()
    return OrderedDict((clean_name(k), (v.full_tensor() if _is_dtensor(v)
                                        else v).detach().cpu().clone())
                       for k, v in state.items())


def is_sharded_ema_state(state) -> bool:
    """Whether ``state`` was written by :meth:`ShardedEMAModel.state_dict`."""
    return isinstance(state, dict) and state.get('sharded_ema') == 1
