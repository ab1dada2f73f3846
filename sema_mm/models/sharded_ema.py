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
  ``DTensor`` whose local tensor is the rank's shard (dim-0 chunks).

Every operation on the training path works on those local tensors, fetched
afresh at each call (a Python loop over the parameters: no tensor reads, no
collectives):

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
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from .switch_ema import check_momentum, foreach_copy_

__all__ = [
    'ShardedEMAModel', 'sharded_kind', 'local_shard', 'shard_like',
    'clean_name', 'gather_full_state_dict', 'is_sharded_ema_state',
    'stitch_shards',
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


def sharded_kind(model: nn.Module) -> Optional[str]:
    """How ``model`` is sharded.

    Args:
        model (nn.Module): A model, wrapped or not.

    Returns:
        str, optional: ``'fsdp'`` (FSDP1 wrapper somewhere in the model),
        ``'fsdp2'`` (DTensor parameters, e.g. from ``fully_shard``) or None
        (not sharded: use :class:`SwitchEMAModel`).

    Raises:
        ValueError: For FSDP1 without ``use_orig_params=True``, whose
            original parameters are not visible.
    """
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


def shard_like(full: Tensor, param: Tensor, info=None) -> Tensor:
    """Cut this rank's part out of a full (unsharded) tensor, without
    communication.

    Args:
        full (Tensor): The full tensor, shaped as the unsharded parameter.
        param (Tensor): The sharded parameter (FSDP1 view or DTensor).
        info (tuple, optional): FSDP1's record of which part of the
            parameter this rank holds and the parameter's unsharded shape
            (from ``_fsdp1_shard_infos``); needed for FSDP1.

    Returns:
        Tensor: A tensor shaped as :func:`local_shard` of ``param``.
    """
    if _is_dtensor(param):
        from torch.distributed.tensor._utils import \
            compute_local_shape_and_global_offset
        if tuple(full.shape) != tuple(param.shape):
            raise ValueError(f'shape {tuple(full.shape)} does not match the '
                             f'sharded parameter {tuple(param.shape)}')
        shape, offset = compute_local_shape_and_global_offset(
            param.shape, param.device_mesh, param.placements)
        index = tuple(slice(o, o + s) for o, s in zip(offset, shape))
        return full[index]
    if info is None:  # not sharded
        return full
    info, shape = info
    if tuple(full.shape) != shape:
        raise ValueError(f'shape {tuple(full.shape)} does not match the '
                         f'sharded parameter {shape}')
    if not info.in_shard:
        return full.new_empty(0)
    return full.reshape(-1)[info.intra_param_start_idx:info.
                            intra_param_end_idx + 1]


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
        first = states[0]['params'][name]
        full = torch.zeros(shape, dtype=first.dtype)
        seen = torch.zeros(shape, dtype=torch.bool)
        for s in states:
            piece = s['params'][name]
            if not piece.numel():
                continue
            offset = s['layout']['offsets'][name]
            if kind == 'fsdp':
                start = offset[0]
                full.view(-1)[start:start + piece.numel()] = piece.reshape(-1)
                seen.view(-1)[start:start + piece.numel()] = True
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
            or a model with FSDP2 ``DTensor`` parameters).
        momentum (float): The mmengine momentum ``m`` in (0, 1).
            Defaults to 0.001 (the paper's alpha = 0.999).
        interval (int): Average every ``interval`` updates. Defaults to 1.
        device: Accepted for config compatibility; must be None (the EMA
            stays with the shards).
        update_buffers (bool): Average floating buffers and copy the others
            (whole tensors: FSDP does not shard buffers). Defaults to False.
        root (nn.Module, optional): The outermost FSDP1 wrapper, needed for
            :meth:`full_state_dict` under FSDP1 when ``model`` is the
            unwrapped module. Defaults to None (``model``).
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
                             'FSDP (use_orig_params=True) or FSDP2; use '
                             'SwitchEMAModel for other models')
        self._root = root if root is not None else model
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = (dist.get_world_size()
                           if dist.is_initialized() else 1)

        params = [(clean_name(n), p) for n, p in model.named_parameters()]
        # Where each local shard sits in its full parameter, so that saved
        # shards can be stitched together offline (tools/export_ema.py).
        infos = (_fsdp1_shard_infos(self._root)
                 if self.kind == 'fsdp' else {})
        self.full_shapes = {
            n: infos[id(p)][1] if id(p) in infos else tuple(p.shape)
            for n, p in params
        }
        self.offsets = {n: _shard_offset(p, infos.get(id(p)))
                        for n, p in params}
        self.shards: Dict[str, Tensor] = OrderedDict(
            (n, local_shard(p).detach().clone()) for n, p in params)
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

    def _model_list(self, model: nn.Module) -> List[Tensor]:
        """This rank's current local tensors of ``model``, aligned with
        :meth:`_ema_list` (fetched afresh: FSDP re-creates the views)."""
        out = [local_shard(p) for p in model.parameters()]
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
            foreach_copy_(self._copy_ema,
                                 [src[i] for i in self._copy_idx])
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

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the EMA and ``model``'s shards in place (val / test)."""
        ema, src = self._pairs(model)
        for e, s in zip(ema, src):
            tmp = e.clone()
            e.copy_(s)
            s.copy_(tmp)

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
        same sharding.

        Args:
            state_dict (dict): The saved local state.
            strict (bool): Accepted for interface compatibility; the layout
                must match whatever its value.
        """
        if not is_sharded_ema_state(state_dict):
            raise ValueError('not a ShardedEMAModel state; use '
                             'load_full_state_dict for a full EMA')
        saved = state_dict['layout']
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

    @torch.no_grad()
    def load_full_state_dict(self,
                             full: Dict[str, Tensor],
                             model: nn.Module,
                             steps: Optional[int] = None) -> None:
        """Fill the local shards from a full (unsharded) state dict, e.g. an
        exported EMA or the ``ema_state_dict`` of a DDP checkpoint (its
        ``module.`` prefix is stripped). No communication.

        Args:
            full (dict[str, Tensor]): Full tensors by unwrapped name.
            model (nn.Module): The sharded model the EMA belongs to.
            steps (int, optional): The update count to set. Defaults to
                None (``full['steps']`` if present, else unchanged).
        """
        full = {(k[7:] if k.startswith('module.') else k): v
                for k, v in full.items()}
        infos = _fsdp1_shard_infos(self._root) if self.kind == 'fsdp' else {}
        params = list(model.parameters())
        missing = [n for n in self.shards if n not in full]
        if missing:
            raise KeyError(f'the full state dict lacks {missing[:5]}')
        for (n, t), p in zip(self.shards.items(), params):
            t.copy_(shard_like(full[n], p, infos.get(id(p))))
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
        self.swap(model)
        try:
            return gather_full_state_dict(self._root, self.kind)
        finally:
            self.swap(model)


def gather_full_state_dict(root: nn.Module, kind: str) -> Dict[str, Tensor]:
    """The full state dict of a sharded model on every rank (collective).

    Args:
        root (nn.Module): The outermost FSDP1 wrapper, or the FSDP2 model.
        kind (str): ``'fsdp'`` or ``'fsdp2'``.

    Returns:
        dict[str, Tensor]: Full CPU tensors keyed by unwrapped names.
    """
    if kind == 'fsdp':
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
