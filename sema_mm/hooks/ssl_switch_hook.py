"""Switch EMA for self-teaching SSL: switch the online and target networks.

In MoCo v2/v3 and BYOL the target (momentum, teacher) network already is an
EMA of the online network, kept by the algorithm itself (mmpretrain:
``MoCo.encoder_k``, ``MoCoV3.momentum_encoder``, ``BYOL.target_net``, all
mmengine averaged models updated inside the model's loss). SEMA for these
algorithms therefore needs no second EMA: at the end of every switch
interval the algorithm's own EMA and its online network are switched.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseAveragedModel, is_model_wrapper
from mmengine.registry import HOOKS

from ..models.sharded_ema import sharded_kind
from ..models.switch_ema import (copy_ema_to, ema_pairs, foreach_copy_,
                                 switch_statistics)
from .sema_hook import DATA_BATCH, SEMAHook

DIRECTIONS = ('online_to_ema', 'ema_to_online')


@torch.no_grad()
def copy_model_to_ema(averaged_model: BaseAveragedModel,
                      model: nn.Module) -> None:
    """Copy ``model`` into the averaged weights in place (the inverse of
    :func:`sema_mm.models.copy_ema_to`).

    Args:
        averaged_model (BaseAveragedModel): The averaged model to copy into.
        model (nn.Module): The (unwrapped) model to copy from.
    """
    ema, src = ema_pairs(averaged_model, model)
    foreach_copy_(ema, [s.detach() for s in src])


@torch.no_grad()
def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    floats = [t.detach().float() for t in tensors if t.dtype.is_floating_point]
    if not floats:
        return True
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(floats)).sum()))


@HOOKS.register_module()
class SSLSwitchHook(SEMAHook):
    r"""SEMA for self-teaching SSL: switch the online network and the
    algorithm's own EMA (target / momentum encoder) every switch interval.

    The hook keeps no EMA of its own and never updates one: the algorithm
    updates its target network inside its loss as usual. Only the schedule
    (``switch_interval``, ``switch_by_epoch``, ``begin_epoch`` /
    ``begin_iter``, :meth:`SEMAHook.switch_due`) is shared with
    :class:`SEMAHook`. Validation, test and checkpoints are untouched: the
    target network is part of the model and its ``state_dict``.

    Two directions are offered, because which one serves SSL best is an
    open question:

    - ``'online_to_ema'`` (default): the online weights are copied into the
      target network. This is what the authors' SSL code does for MoCo and
      BYOL, i.e. the code that produced the paper's SSL numbers (Tables 4
      and 5): the teacher is re-anchored on the student once per interval.
    - ``'ema_to_online'``: the target (EMA) weights are copied into the
      online network, the paper's generic SEMA rule (what :class:`SEMAHook`
      does for supervised training): the student restarts from the teacher.

    The optimizer state is never touched. Each switch logs
    ``SSLSwitchHook: switch N (epoch E, iter I, online -> ema):
    ||param - ema|| / ||param|| = d`` with ``param`` the online weights.

    Args:
        direction (str): ``'online_to_ema'`` or ``'ema_to_online'``.
            Defaults to 'online_to_ema'.
        target (str, optional): Attribute name of the algorithm's averaged
            model (e.g. ``'target_net'``, ``'encoder_k'``,
            ``'momentum_encoder'``). None finds the only
            :class:`mmengine.model.BaseAveragedModel` among the model's
            direct children. Defaults to None.
        online (list[str], optional): Attribute names of the online modules
            the target averages, in the order the averaged model wraps them
            (e.g. ``['backbone', 'neck']`` for ``nn.Sequential(backbone,
            neck)``). None matches each child of the averaged module to the
            model's direct child of the same type and state-dict layout.
            Defaults to None.
        switch_interval (float | int, optional): Switch every this many
            epochs (``switch_by_epoch=True``) or iterations. None never
            switches. Defaults to 1.
        switch_by_epoch (bool): Count ``switch_interval`` in epochs.
            Defaults to True.
        begin_iter (int): No switch before this iteration. Defaults to 0.
        begin_epoch (int): No switch before this epoch. Defaults to 0.
        nonfinite (str): ``'warn'`` or ``'raise'`` when the source of the
            copy holds NaN/Inf at a switch; the copy is skipped in both
            cases. Defaults to 'warn'.
    """

    def __init__(self,
                 direction: str = 'online_to_ema',
                 target: Optional[str] = None,
                 online: Optional[List[str]] = None,
                 switch_interval=1,
                 switch_by_epoch: bool = True,
                 begin_iter: int = 0,
                 begin_epoch: int = 0,
                 nonfinite: str = 'warn') -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f'`direction` must be one of {DIRECTIONS}, but '
                             f'got {direction!r}')
        if target is not None and (not isinstance(target, str) or not target):
            raise ValueError('`target` must be a non-empty attribute name or '
                             f'None, but got {target!r}')
        if online is not None:
            if isinstance(online, str):
                online = [online]
            if (not isinstance(online, (list, tuple)) or not online or
                    not all(isinstance(n, str) and n for n in online)):
                raise ValueError('`online` must be a non-empty list of '
                                 f'attribute names or None, but got '
                                 f'{online!r}')
            online = list(online)
        super().__init__(
            begin_iter=begin_iter,
            begin_epoch=begin_epoch,
            switch_interval=switch_interval,
            switch_by_epoch=switch_by_epoch,
            nonfinite=nonfinite)
        self.direction = direction
        self.target = target
        self.online = online

    # ------------------------------------------------------------------
    # finding the pair
    def before_run(self, runner) -> None:
        """Find the algorithm's averaged model and its online modules.

        Args:
            runner (Runner): The runner of the training process.
        """
        model = runner.model
        kind = sharded_kind(model)
        if kind is not None:
            raise NotImplementedError(
                f'SSLSwitchHook does not support sharded models ({kind!r}): '
                "the algorithm's own target network is a full copy that the "
                'hook cannot switch shard-wise; train with DDP')
        if is_model_wrapper(model):
            model = model.module
        self.ema_model, self.src_model, names = self.find_pair(model)
        print_log(
            f'SSLSwitchHook: switching {type(model).__name__}.'
            f'{names[0]} and {names[1]} ({self.direction})', 'current')

    def find_pair(self, model: nn.Module
                  ) -> Tuple[BaseAveragedModel, nn.Module, Tuple[str, str]]:
        """Locate the target averaged model and the online module(s).

        Args:
            model (nn.Module): The unwrapped algorithm.

        Returns:
            tuple: ``(averaged_model, online_module, (target_name,
            online_description))``; ``online_module`` has the parameter
            names of ``averaged_model.module``.
        """
        if self.target is not None:
            ema = getattr(model, self.target, None)
            if not isinstance(ema, BaseAveragedModel):
                raise ValueError(
                    f'`target`={self.target!r}: {type(model).__name__} has no '
                    'averaged model (mmengine BaseAveragedModel) of that name')
            target = self.target
        else:
            found = [(n, m) for n, m in model.named_children()
                     if isinstance(m, BaseAveragedModel)]
            if len(found) != 1:
                raise ValueError(
                    f'{type(model).__name__} has {len(found)} averaged '
                    f'models among its children ({[n for n, _ in found]}); '
                    'SSLSwitchHook needs exactly one, or `target` naming it')
            target, ema = found[0]

        wrapped = ema.module
        parts = list(wrapped.children()) if isinstance(
            wrapped, nn.Sequential) else [wrapped]
        if self.online is not None:
            missing = [n for n in self.online
                       if not isinstance(getattr(model, n, None), nn.Module)]
            if missing:
                raise ValueError(f'`online`={self.online}: '
                                 f'{type(model).__name__} has no modules '
                                 f'named {missing}')
            modules = [getattr(model, n) for n in self.online]
            names = list(self.online)
        else:
            candidates = [(n, m) for n, m in model.named_children()
                          if n != target]
            modules, names = [], []
            for part in parts:
                layout = _layout(part)
                match = [(n, m) for n, m in candidates
                         if type(m) is type(part) and _layout(m) == layout
                         and n not in names]
                if not match:
                    raise ValueError(
                        f'no online module of {type(model).__name__} matches '
                        f'{type(part).__name__} in `{target}`; pass `online`')
                names.append(match[0][0])
                modules.append(match[0][1])
        if isinstance(wrapped, nn.Sequential):
            online = nn.Sequential(*modules)
        elif len(modules) == 1:
            online = modules[0]
        else:
            raise ValueError(f'`online`={names} names {len(names)} modules, '
                             f'but `{target}` averages one module')
        ema_t, src_t = ema_pairs(ema, online)  # KeyError on a name mismatch
        bad = [i for i, (e, s) in enumerate(zip(ema_t, src_t))
               if e.shape != s.shape]
        if bad:
            raise ValueError(f'`{target}` and {names} differ in tensor shapes')
        return ema, online, (target, '+'.join(names))

    def log_ratio(self, steps: float) -> None:
        """Log the schedule (called by :meth:`SEMAHook.before_train`).

        The switch-ratio advice of :class:`SEMAHook` is about an EMA the
        hook owns; here the momentum belongs to the algorithm, so only the
        schedule is logged.

        Args:
            steps (float): Optimizer steps per switch interval.
        """
        unit = 'epoch(s)' if self.switch_by_epoch else 'iteration(s)'
        print_log(
            f'SSLSwitchHook: switching every {self.switch_interval} {unit} = '
            f'{steps:g} optimizer steps ({self.direction})', 'current')

    # ------------------------------------------------------------------
    # the schedule: switch only; the algorithm updates its own EMA
    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        """Switch if due (the algorithm updates its target network itself).

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): The index of the current batch in the loop.
            data_batch (dict | tuple | list, optional): Data from the
                dataloader. Defaults to None.
            outputs (dict, optional): Outputs from the model.
                Defaults to None.
        """
        self.switch_if_due(runner)

    def switch(self, runner) -> bool:
        """Copy one network into the other, log the distance before it.

        Args:
            runner (Runner): The runner of the training process.

        Returns:
            bool: Whether the copy happened (False when its source held
            NaN/Inf and ``nonfinite='warn'``).
        """
        distance, ema_finite = switch_statistics(self.ema_model,
                                                 self.src_model)
        if self.direction == 'ema_to_online':
            finite, arrow = ema_finite, 'ema -> online'
        else:
            finite = _all_finite(ema_pairs(self.ema_model, self.src_model)[1])
            arrow = 'online -> ema'
        where = f'epoch {runner.epoch + 1}, iter {runner.iter + 1}'
        if not finite:
            self.refuse_nonfinite(
                f'SSLSwitchHook: the source of the switch ({arrow}) holds '
                f'NaN/Inf ({where}); nothing is copied')
            return False
        if self.direction == 'ema_to_online':
            copy_ema_to(self.ema_model, self.src_model)
        else:
            copy_model_to_ema(self.ema_model, self.src_model)
        self.log_switch(runner, distance, f'{where}, {arrow}')
        return True

    # ------------------------------------------------------------------
    # nothing to swap: the target network is part of the model
    def before_val_epoch(self, runner) -> None:
        """Keep the online weights for validation (no swap)."""

    def after_val_epoch(self, runner, metrics=None) -> None:
        """No swap to undo."""

    def before_test_epoch(self, runner) -> None:
        """Keep the online weights for test (no swap)."""

    def after_test_epoch(self, runner, metrics=None) -> None:
        """No swap to undo."""

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """The target network is saved in ``state_dict`` with the model."""

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """The target network is loaded with the model's ``state_dict``."""


def _layout(module: nn.Module):
    return tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())
