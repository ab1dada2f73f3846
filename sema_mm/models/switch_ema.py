"""The maths of Switch EMA: how the average moves and how it is switched in.

Nothing here knows about runners, epochs or logs; the schedule lives in
:class:`sema_mm.hooks.SEMAHook`.
"""
import math
import numbers
import weakref
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseAveragedModel, ExponentialMovingAverage
from mmengine.registry import MODELS
from torch import Tensor

TensorList = List[Tensor]


def foreach_copy_(dst: TensorList, src: TensorList) -> None:
    """``torch._foreach_copy_`` (torch >= 2.1), or a loop on torch 2.0.

    Args:
        dst (list[Tensor]): Tensors written in place.
        src (list[Tensor]): Tensors read, index-aligned with ``dst``.
    """
    if hasattr(torch, '_foreach_copy_'):
        torch._foreach_copy_(dst, src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)


def check_momentum(momentum, name: str = 'momentum') -> float:
    """Validate an mmengine-convention EMA momentum.

    Args:
        momentum (float): The value to check.
        name (str): The argument name used in the error message.
            Defaults to 'momentum'.

    Returns:
        float: ``momentum`` as a Python float.

    Raises:
        TypeError: If ``momentum`` is not a real number.
        ValueError: If ``momentum`` is not in the open interval (0, 1).
    """
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f'`{name}` must be a real number in the open interval '
                        f'(0, 1), but got {momentum!r} '
                        f'({type(momentum).__name__})')
    if not 0.0 < float(momentum) < 1.0:
        raise ValueError(f'`{name}` must be in the open interval (0, 1) '
                         f'(mmengine convention: ema = (1 - m) * ema + m * '
                         f'param, i.e. m = 1 - alpha of the paper), but got '
                         f'{momentum!r}')
    return float(momentum)


def ema_pairs(averaged_model: BaseAveragedModel,
              model: nn.Module) -> Tuple[TensorList, TensorList]:
    """Pair the tensors of an averaged model with those of a source model.

    The pairing follows the ``update_buffers`` policy of ``averaged_model``:
    parameters only when it is False (buffers are then plain copies of the
    model's buffers anyway), parameters and buffers when it is True.

    Args:
        averaged_model (BaseAveragedModel): Any mmengine averaged model.
        model (nn.Module): The (unwrapped) model it averages.

    Returns:
        tuple[list[Tensor], list[Tensor]]: ``(ema_tensors, model_tensors)``,
        index-aligned. The model tensors are the live Parameter / buffer
        objects, so in-place writes reach the optimizer and DDP buckets.
    """
    if averaged_model.update_buffers:
        src = model.state_dict(keep_vars=True)
    else:
        src = dict(model.named_parameters())
    missing = [k for k in averaged_model.avg_parameters if k not in src]
    if missing:
        raise KeyError(f'The model has no tensors named {missing[:5]} that the '
                       'averaged model holds: was it built from this model?')
    ema = list(averaged_model.avg_parameters.values())
    return ema, [src[k] for k in averaged_model.avg_parameters]


def current_momentum(averaged_model: BaseAveragedModel) -> Optional[float]:
    """The momentum the averaged model applies at its current step.

    For a momentum schedule (mmengine's ``MomentumAnnealingEMA``, mmdet's
    ``ExpMomentumEMA``) this is the schedule's value at ``steps``; reads the
    ``steps`` buffer once, so keep it off the per-iteration path.

    Args:
        averaged_model (BaseAveragedModel): Any mmengine averaged model.

    Returns:
        float, optional: The mmengine-convention momentum, or None for an
        averaged model without one (e.g. ``StochasticWeightAverage``).
    """
    momentum = getattr(averaged_model, 'momentum', None)
    if momentum is None:
        return None
    steps = int(averaged_model.steps.item())
    gamma = getattr(averaged_model, 'gamma', None)
    name = type(averaged_model).__name__
    if name == 'MomentumAnnealingEMA':
        return max(momentum, gamma / (gamma + steps))
    if name == 'ExpMomentumEMA':
        return (1 - momentum) * math.exp(-(1 + steps) / gamma) + momentum
    return float(momentum)


@torch.no_grad()
def copy_ema_to(averaged_model: BaseAveragedModel, model: nn.Module) -> None:
    """Copy the averaged weights into ``model`` in place (the SEMA switch).

    Works with any mmengine averaged model (``ExponentialMovingAverage``,
    ``MomentumAnnealingEMA``, mmdet's ``ExpMomentumEMA``, ...). Parameter
    objects are written with ``copy_``, never replaced, so optimizer state,
    param groups and DDP buckets stay attached.

    Args:
        averaged_model (BaseAveragedModel): The averaged model to copy from.
        model (nn.Module): The (unwrapped) training model to copy into.
    """
    ema, src = ema_pairs(averaged_model, model)
    foreach_copy_([t.data for t in src], ema)


@torch.no_grad()
def switch_statistics(averaged_model: BaseAveragedModel,
                      model: nn.Module) -> Tuple[float, bool]:
    """Measure the EMA against the model just before a switch.

    Only floating-point tensors count. One device-to-host transfer in all.

    Args:
        averaged_model (BaseAveragedModel): Any mmengine averaged model.
        model (nn.Module): The (unwrapped) training model.

    Returns:
        tuple[float, bool]: The relative distance
        :math:`\\|\\theta - \\theta_{ema}\\|_2 / \\|\\theta\\|_2` over all
        floating-point tensors, and whether every EMA value is finite.
    """
    ema, src = ema_pairs(averaged_model, model)
    pairs = [(e, s.detach()) for e, s in zip(ema, src)
             if e.dtype.is_floating_point]
    if not pairs:
        return 0.0, True
    ema_f = [e.float() for e, _ in pairs]
    src_f = [s.to(device=e.device, dtype=torch.float32) for e, s in pairs]
    diff_sq = torch.stack(torch._foreach_norm(torch._foreach_sub(
        src_f, ema_f))).square().sum()
    src_sq = torch.stack(torch._foreach_norm(src_f)).square().sum()
    ema_norm = torch.stack(torch._foreach_norm(ema_f)).sum()
    diff, ref, finite = torch.stack(
        [diff_sq.sqrt(), src_sq.sqrt(),
         torch.isfinite(ema_norm).float()]).tolist()
    return (diff / ref if ref > 0 else diff), bool(finite)


@MODELS.register_module()
class SwitchEMAModel(ExponentialMovingAverage):
    r"""Exponential moving average with a fused update and an in-place switch.

    Switch EMA (SEMA) keeps an exponential moving average of the weights and,
    at the end of every switch interval, copies it back into the model being
    trained (`Switch EMA: A Free Lunch for Better Flatness and Sharpness,
    Li et al., 2024 <https://arxiv.org/abs/2402.09240>`_). This class is the
    averaging half; :class:`sema_mm.hooks.SEMAHook` decides when to switch.

    The update uses mmengine's momentum convention:

    .. math::

        \theta_{ema} \leftarrow (1 - m)\,\theta_{ema} + m\,\theta

    The paper writes the decay :math:`\alpha` instead, with
    :math:`\theta_{ema} \leftarrow \alpha\,\theta_{ema} + (1-\alpha)\theta`,
    so :math:`m = 1 - \alpha`: the paper's 0.999 is ``momentum=0.001`` and
    0.9999 is ``momentum=0.0001``.

    Compared with :class:`mmengine.model.ExponentialMovingAverage`:

    - the update is one fused ``torch._foreach_lerp_`` over all floating
      point tensors (plus one ``torch._foreach_copy_`` for non-floating
      tensors and unaveraged buffers), over tensor lists built once;
    - the step counter is mirrored on the host, so no update reads a tensor
      to decide what to do (no device-to-host sync per iteration). The
      ``steps`` buffer is still advanced and saved in ``state_dict``;
    - non-floating tensors (e.g. ``num_batches_tracked``) are copied from
      the model at every update instead of being frozen when
      ``update_buffers=True``;
    - :meth:`copy_to` writes the EMA into a model in place.

    The fused path needs the EMA and the model on the same device with the
    same dtypes; otherwise (e.g. ``device='cpu'`` for a GPU model) the
    per-tensor update of the parent class is used.

    Note:
        The tensor lists are cached per source model. Replacing a model's
        Parameter objects after the first update (e.g.
        ``load_state_dict(..., assign=True)``) requires
        :meth:`reset_cache`. In-place loads and ``Module.to`` are fine.

    Args:
        model (nn.Module): The model to be averaged.
        momentum (float): The mmengine momentum ``m`` in (0, 1),
            i.e. ``1 - alpha`` of the paper. Defaults to 0.001 (the paper's
            alpha = 0.999).
        interval (int): Update the average every ``interval`` calls of
            :meth:`update_parameters`. Defaults to 1.
        device (torch.device, optional): Where to keep the average. Defaults
            to None (the model's device).
        update_buffers (bool): Average floating buffers too (and copy
            non-floating ones); when False buffers are copied from the model.
            Defaults to False.
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 0.001,
                 interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = False) -> None:
        momentum = check_momentum(momentum)
        if isinstance(interval, bool) or not isinstance(
                interval, numbers.Integral) or interval < 1:
            raise ValueError('`interval` must be an integer >= 1, but got '
                             f'{interval!r}')
        super().__init__(model, momentum, int(interval), device,
                         update_buffers)
        self._num_updates = 0  # host mirror of ``self.steps``
        # ``steps.add_(1)`` would wrap the Python 1 in a fresh tensor.
        self.register_buffer('_one', torch.ones_like(self.steps),
                             persistent=False)
        self._src_ref = None
        self._lists = None

    # ------------------------------------------------------------------
    # state
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # One read when a state is loaded, never on the update path.
        self._num_updates = int(self.steps.item())

    def reset_cache(self) -> None:
        """Forget the cached tensor lists (rebuilt at the next call)."""
        self._src_ref = None
        self._lists = None

    def _tensor_lists(self, model: nn.Module):
        if self._src_ref is not None and self._src_ref() is model:
            return self._lists
        ema, src = ema_pairs(self, model)
        if not self.update_buffers:
            ema += list(self.module.buffers())
            src += list(model.buffers())
        # A subclass with its own ``avg_func`` keeps the parent's loop.
        fused = type(self).avg_func is SwitchEMAModel.avg_func and all(
            e.device == s.device and e.dtype == s.dtype
            for e, s in zip(ema, src))
        avg_e, avg_s, cp_e, cp_s = [], [], [], []
        n_avg = len(self.avg_parameters)
        for i, (e, s) in enumerate(zip(ema, src)):
            if i < n_avg and e.dtype.is_floating_point:
                avg_e.append(e.data)
                avg_s.append(s.data)
            else:
                cp_e.append(e.data)
                cp_s.append(s.data)
        self._lists = (fused, avg_e, avg_s, cp_e, cp_s)
        self._src_ref = weakref.ref(model)
        return self._lists

    # ------------------------------------------------------------------
    # the update
    def update_parameters(self, model: nn.Module) -> None:
        """Advance the average by one step towards ``model``.

        The first call copies the model. Afterwards, every ``interval``-th
        call applies ``ema.lerp_(param, momentum)`` to all floating tensors
        at once; non-floating tensors and unaveraged buffers are copied.
        The lists hold ``.data`` tensors, so no autograd graph is recorded
        (and no ``torch.no_grad()`` context, which costs more than the
        update's Python overhead on many small tensors, is needed).

        Args:
            model (nn.Module): The model whose parameters are averaged.
        """
        fused, avg_e, avg_s, cp_e, cp_s = self._tensor_lists(model)
        if not fused:
            super().update_parameters(model)
            self._num_updates += 1
            return
        if self._num_updates == 0:
            foreach_copy_(avg_e, avg_s)
        elif self._num_updates % self.interval == 0:
            torch._foreach_lerp_(avg_e, avg_s, self.momentum)
        if cp_e:
            foreach_copy_(cp_e, cp_s)
        self.steps.add_(self._one)
        self._num_updates += 1

    def copy_to(self, model: nn.Module) -> None:
        """Copy the EMA into ``model`` in place (parameters, and buffers when
        ``update_buffers=True``); no Parameter object is replaced.

        Args:
            model (nn.Module): The (unwrapped) training model.
        """
        copy_ema_to(self, model)
