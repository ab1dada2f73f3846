"""The schedule of Switch EMA: when the EMA moves and when it is switched."""
import logging
import math
import numbers
from fractions import Fraction
from typing import Optional, Union

from mmengine.dataset import InfiniteSampler
from mmengine.hooks import EMAHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..models.sharded_ema import (SHARDED_EMA_TYPES, ShardedEMAModel,
                                  deepspeed_engine, is_sharded_ema_state,
                                  sharded_kind)
from ..models.switch_ema import (check_momentum, copy_ema_to,
                                 current_momentum, switch_statistics)
from ..utils import fsdp_strategy  # noqa: F401 (ResumableFSDPStrategy)
from ..utils import deepspeed_strategy

DATA_BATCH = Optional[Union[dict, tuple, list]]

_NONFINITE_POLICIES = ('warn', 'raise')


def iters_per_epoch(dataloader) -> int:
    """Iterations one rank takes to cover its share of the data once.

    ``len(dataloader)``, except with mmengine's ``InfiniteSampler``
    (``IterBasedTrainLoop``), whose length is the whole data set whatever
    the world size: there an epoch is
    ``ceil(ceil(len(dataset) / world_size) / batch_size)`` iterations, as
    ``DefaultSampler`` would give.

    Args:
        dataloader (DataLoader): The training dataloader.

    Returns:
        int: Iterations per epoch.
    """
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    sampler = getattr(batch_sampler, 'sampler', None) or getattr(
        dataloader, 'sampler', None)
    if not isinstance(sampler, InfiniteSampler):
        return len(dataloader)
    batch_size = dataloader.batch_size or batch_sampler.batch_size
    per_rank = math.ceil(sampler.size / sampler.world_size)
    drop_last = getattr(batch_sampler, 'drop_last', False)
    return per_rank // batch_size if drop_last else math.ceil(
        per_rank / batch_size)


def optimizer_stepped(runner) -> bool:
    """Whether the optimizer stepped in this iteration: False between
    gradient accumulation boundaries (``OptimWrapper.should_update``; under
    DeepSpeed, which accumulates inside its engine, also after a step
    skipped for fp16 overflow: ``engine.was_step_applied()``, a host flag)."""
    engine = deepspeed_engine(runner.model)
    if engine is not None:
        return bool(engine.was_step_applied())
    should_update = getattr(runner.optim_wrapper, 'should_update', None)
    return should_update is None or bool(should_update())


def _check_switch_interval(value, by_epoch: bool):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            '`switch_interval` must be a positive number of epochs (or an '
            'integer number of iterations with switch_by_epoch=False) or '
            f'None, but got {value!r} ({type(value).__name__})')
    if not value > 0 or value == float('inf'):
        raise ValueError('`switch_interval` must be a finite number > 0 or '
                         f'None, but got {value!r}')
    return value if by_epoch else _check_int(value, 'switch_interval', 1)


def _check_target_ratio(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'`target_ratio` must be a number > 0, but got '
                        f'{value!r}')
    if not 0 < value < float('inf'):
        raise ValueError('`target_ratio` must be a finite number > 0, but '
                         f'got {value!r}')
    return float(value)


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'`{name}` must be an integer >= {minimum}, but got '
                        f'{value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'`{name}` must be an integer >= {minimum}, but got '
                         f'{value!r}')
    return int(value)


@HOOKS.register_module()
class SEMAHook(EMAHook):
    r"""Switch EMA: an EMA of the weights, copied back into the model at the
    end of every switch interval.

    After every optimizer step the EMA moves towards the model,
    :math:`\theta_{ema} \leftarrow (1 - m)\,\theta_{ema} + m\,\theta`
    (mmengine convention; the paper's decay is :math:`\alpha = 1 - m`).
    At the end of every ``switch_interval`` the EMA is copied into the
    training model, :math:`\theta \leftarrow \theta_{ema}`, and training
    continues from there; the optimizer and its state are untouched. See
    `Switch EMA: A Free Lunch for Better Flatness and Sharpness
    <https://arxiv.org/abs/2402.09240>`_.

    Everything :class:`mmengine.hooks.EMAHook` does is inherited: the EMA
    weights are swapped in for validation and test, checkpoints hold the EMA
    weights in ``state_dict`` and the training weights in
    ``ema_state_dict``, ``begin_iter`` / ``begin_epoch`` delay the EMA, and
    a checkpoint without EMA initialises it from ``state_dict``. With
    ``switch_interval=None`` the hook never switches and behaves as
    ``EMAHook`` with the same averaged model.

    Note:
        The priority is ``'NORMAL'`` as for ``EMAHook``: ``after_train_iter``
        runs after the optimizer step (in the loop's ``run_iter``) and before
        ``LoggerHook`` (``'BELOW_NORMAL'``) and ``CheckpointHook``
        (``'VERY_LOW'``), so the switch at the end of an epoch happens before
        that epoch's log line, validation and checkpoint. The switch schedule
        counts data iterations (``runner.iter``); the EMA advances once per
        optimizer step, so under gradient accumulation
        (``optim_wrapper.accumulative_counts=k``, or DeepSpeed's
        ``gradient_accumulation_steps``) it moves once every ``k``
        iterations.

    Note:
        Sharded models (mmengine ``FlexibleRunner`` with
        ``ResumableFSDPStrategy`` / ``FSDPStrategy`` or
        ``ResumableDeepSpeedStrategy`` at ZeRO stage 1-3, and FSDP2
        models) get a :class:`~sema_mm.models.ShardedEMAModel` that keeps
        only this rank's shard of the EMA (under DeepSpeed, of the fp32
        master weights); see ``docs/sharded.md``.

    Args:
        ema_type (str): Any registered mmengine averaged model
            (``'SwitchEMAModel'``, ``'ExponentialMovingAverage'``,
            ``'MomentumAnnealingEMA'``, mmdet's ``'ExpMomentumEMA'``, ...).
            Defaults to 'SwitchEMAModel'.
        strict_load (bool): Strict key matching when loading the EMA from a
            checkpoint. Defaults to False.
        begin_iter (int): Iteration at which the EMA starts. Defaults to 0.
        begin_epoch (int): Epoch at which the EMA starts; not together with
            ``begin_iter``. Defaults to 0.
        switch_interval (float | int, optional): Copy the EMA into the model
            every this many epochs (``switch_by_epoch=True``; fractions
            allowed, an epoch being ``len(train_dataloader)`` iterations, also
            under ``IterBasedTrainLoop``) or iterations
            (``switch_by_epoch=False``; integers only). None never switches.
            Defaults to 1.
        switch_by_epoch (bool): Count ``switch_interval`` in epochs.
            Defaults to True.
        nonfinite (str): What to do when the EMA holds NaN/Inf at a switch:
            ``'warn'`` (skip the switch and warn) or ``'raise'``
            (``RuntimeError``). The training model is never overwritten with
            a non-finite EMA. Defaults to 'warn'.
        target_ratio (float, optional): Only with ``momentum='auto'``: the
            switch ratio :math:`\rho = T m` to aim at, where ``T`` is the
            switch interval in optimizer steps. Defaults to None, i.e.
            :attr:`DEFAULT_TARGET_RATIO`.
        **kwargs: Passed to the averaged model, e.g. ``momentum`` (mmengine
            convention, in (0, 1); SwitchEMAModel's default 0.001 is the
            paper's alpha = 0.999; or ``'auto'``: ``target_ratio / T``, set
            when training starts), ``interval``, ``update_buffers``.

    Between two switches the EMA moves :math:`1 - (1 - m)^T` of the way
    from the last switch point towards the trained weights; the switch
    ratio :math:`\rho = T m` decides what SEMA does. With
    :math:`\rho \ll 1` each switch throws most of the interval's progress
    away and training slows down; with :math:`\rho \gg 1` the EMA trails
    the model by about :math:`1/m` steps and the switch is a light
    smoothing. The hook logs :math:`\rho` when training starts and warns
    below :attr:`RATIO_WARN_BELOW`. With a momentum schedule
    (``MomentumAnnealingEMA``, mmdet's ``ExpMomentumEMA``) the schedule's
    value at the current step is used.
    """

    #: Warn when the switch ratio T * m is below this (see README).
    RATIO_WARN_BELOW = 0.5
    #: The switch ratio that ``momentum='auto'`` aims at (see README).
    DEFAULT_TARGET_RATIO = 3.0

    priority = 'NORMAL'

    def __init__(self,
                 ema_type: str = 'SwitchEMAModel',
                 strict_load: bool = False,
                 begin_iter: int = 0,
                 begin_epoch: int = 0,
                 switch_interval: Optional[Union[int, float]] = 1,
                 switch_by_epoch: bool = True,
                 nonfinite: str = 'warn',
                 target_ratio: Optional[float] = None,
                 **kwargs) -> None:
        begin_iter = _check_int(begin_iter, 'begin_iter', 0)
        begin_epoch = _check_int(begin_epoch, 'begin_epoch', 0)
        if begin_iter and begin_epoch:
            raise ValueError('`begin_iter` and `begin_epoch` cannot both be '
                             f'set, but got begin_iter={begin_iter} and '
                             f'begin_epoch={begin_epoch}')
        self.auto_momentum = kwargs.get('momentum') == 'auto'
        if self.auto_momentum:
            # built with the averaged model's default, set in before_train
            kwargs.pop('momentum')
            if switch_interval is None:
                raise ValueError("`momentum='auto'` needs a switch interval, "
                                 'but got switch_interval=None')
            target_ratio = _check_target_ratio(
                self.DEFAULT_TARGET_RATIO
                if target_ratio is None else target_ratio)
        elif target_ratio is not None:
            raise ValueError("`target_ratio` is only used with "
                             "momentum='auto', but got momentum="
                             f"{kwargs.get('momentum', '(default)')!r}")
        elif 'momentum' in kwargs:
            kwargs['momentum'] = check_momentum(kwargs['momentum'])
        if not isinstance(switch_by_epoch, bool):
            raise TypeError('`switch_by_epoch` must be True or False, but got '
                            f'{switch_by_epoch!r}')
        if switch_interval is not None:
            switch_interval = _check_switch_interval(switch_interval,
                                                     switch_by_epoch)
        if nonfinite not in _NONFINITE_POLICIES:
            raise ValueError(f'`nonfinite` must be one of '
                             f'{_NONFINITE_POLICIES}, but got {nonfinite!r}')
        super().__init__(ema_type, strict_load, begin_iter, begin_epoch,
                         **kwargs)
        self.switch_interval = switch_interval
        self.switch_by_epoch = switch_by_epoch
        self.nonfinite = nonfinite
        self.target_ratio = target_ratio
        # Interval in iterations, as an exact fraction; set in before_train.
        self.switch_iters: Optional[Fraction] = None

    # ------------------------------------------------------------------
    # building the EMA (sharded models; FlexibleRunner loads checkpoints
    # before ``before_run``)
    def _sharded(self) -> bool:
        return isinstance(getattr(self, 'ema_model', None), ShardedEMAModel)

    def _build_sharded(self, runner) -> None:
        """Build a :class:`ShardedEMAModel` on this rank's shards, once."""
        if self._sharded():
            return
        cfg = dict(self.ema_cfg)
        ema_type = cfg.pop('type')
        if ema_type not in SHARDED_EMA_TYPES:
            raise NotImplementedError(
                f'SEMAHook on a sharded model supports ema_type in '
                f'{SHARDED_EMA_TYPES} (a constant-momentum EMA), but got '
                f'{ema_type!r}')
        model = runner.model
        if deepspeed_engine(model) is not None and not isinstance(
                getattr(runner, 'strategy', None),
                deepspeed_strategy.ResumableDeepSpeedStrategy):
            raise ValueError(
                "SEMAHook under DeepSpeed needs strategy=dict(type="
                "'ResumableDeepSpeedStrategy', ...): mmengine's "
                'DeepSpeedStrategy does not call the hooks when it saves or '
                'loads a checkpoint, so the EMA would be neither saved nor '
                'resumed')
        self.src_model = model.module if is_model_wrapper(model) else model
        self.ema_model = ShardedEMAModel(self.src_model, root=model, **cfg)
        self._sharded_ema_loaded = False

    def before_run(self, runner) -> None:
        """Build the EMA: a copy of the model as ``EMAHook`` does, or, for
        a model sharded with FSDP (``use_orig_params=True``), FSDP2 or
        DeepSpeed ZeRO, a :class:`ShardedEMAModel` holding this rank's
        shards only.

        Args:
            runner (Runner): The runner of the training process.
        """
        if sharded_kind(runner.model) is None:
            # FlexibleRunner may have built it already in
            # after_load_checkpoint
            if not getattr(self, '_built_at_load', False):
                super().before_run(runner)
            return
        self._build_sharded(runner)
        if not self._sharded_ema_loaded:
            # start from the (possibly just loaded) model weights, as
            # EMAHook starts from a checkpoint's state_dict
            self.ema_model.reset_to(self.src_model)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Resume the EMA from a checkpoint.

        For unsharded models this is ``EMAHook``'s, except that under
        ``FlexibleRunner``, which loads checkpoints before ``before_run``,
        the EMA is built first. For sharded models the checkpoint holds
        this rank's EMA shards (``state_dict_cfg='local'``, the default of
        ``FSDPStrategy``) or, with ``state_dict_cfg='full'``, the full EMA
        (as ``EMAHook`` writes it), which is cut into this rank's shards.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The loaded checkpoint.
        """
        if sharded_kind(runner.model) is None:
            if not hasattr(self, 'ema_model'):
                super().before_run(runner)
                self._built_at_load = True
            super().after_load_checkpoint(runner, checkpoint)
            return
        self._build_sharded(runner)
        state = checkpoint.get('ema_state_dict')
        if is_sharded_ema_state(state):
            self.ema_model.load_state_dict(state)
            self._sharded_ema_loaded = True
        elif state is not None and runner._resume:
            # a full EMA: the training weights sit in ``ema_state_dict``
            self._swap_ema_state_dict(checkpoint)
            self.ema_model.load_full_state_dict(
                {k: v
                 for k, v in state.items() if k.startswith('module.')},
                self.src_model, steps=int(state['steps']))
            self._sharded_ema_loaded = True
        elif runner._resume:
            print_log(
                'There is no `ema_state_dict` in checkpoint. SEMAHook will '
                'start the EMA from the loaded model weights', 'current',
                logging.WARNING)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the EMA: as ``EMAHook`` for unsharded models; for sharded
        ones this rank's EMA shards (plain tensors), or, when the strategy
        saves full state dicts, the full EMA gathered off the training path
        and stored as ``EMAHook`` does (EMA in ``state_dict``).

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The checkpoint being written.
        """
        if not self._sharded():
            super().before_save_checkpoint(runner, checkpoint)
            return
        if self.ema_model.kind == 'zero':
            # DeepSpeed ZeRO-1/2 writes the client state of rank 0 only
            state = self.ema_model.full_state(self.src_model)
            state['model_buffers'] = self.ema_model.model_buffers(
                self.src_model)
            checkpoint['ema_state_dict'] = state
            return
        full = getattr(getattr(runner, 'strategy', None),
                       '_is_full_state_dict', None)
        if full is None or not full():
            state = self.ema_model.state_dict()
            # for tools/export_ema.py (buffers are not sharded)
            state['model_buffers'] = self.ema_model.model_buffers(
                self.src_model)
            checkpoint['ema_state_dict'] = state
            return
        state = self.ema_model.full_state_dict(self.src_model)
        ema = {'module.' + k: v for k, v in state.items()}
        ema['steps'] = self.ema_model.steps.detach().clone()
        checkpoint['ema_state_dict'] = ema
        if checkpoint.get('state_dict'):  # rank 0 only under rank0_only
            self._swap_ema_state_dict(checkpoint)

    def _swap_ema_parameters(self) -> None:
        """Swap the EMA and the model's weights (shard-wise when
        sharded)."""
        if self._sharded():
            self.ema_model.swap(self.src_model)
        else:
            super()._swap_ema_parameters()

    # ------------------------------------------------------------------
    # schedule
    def before_train(self, runner) -> None:
        """Resolve the switch interval into iterations, check it, set an
        ``'auto'`` momentum and log the switch ratio.

        Args:
            runner (Runner): The runner of the training process.
        """
        super().before_train(runner)
        if self.switch_interval is None:
            self.switch_iters = None
            return
        interval = Fraction(self.switch_interval).limit_denominator(10**6)
        if self.switch_by_epoch:
            epoch = iters_per_epoch(runner.train_dataloader)
            self.switch_iters = interval * epoch
            if self.switch_iters < 1:
                raise ValueError(
                    f'`switch_interval`={self.switch_interval} epochs is '
                    f'{float(self.switch_iters):.3g} iterations with '
                    f'{epoch} iterations per epoch; it must come to '
                    f'at least one iteration, i.e. >= '
                    f'{1 / epoch:.3g} epochs')
        else:
            self.switch_iters = interval
        # Under DDP an iteration is one global optimizer step already; with
        # gradient accumulation the EMA moves once per optimizer step.
        # OptimWrapper keeps the count in a private attribute only; a
        # DeepSpeed engine accumulates by its own config.
        engine = deepspeed_engine(runner.model)
        accumulate = (engine.gradient_accumulation_steps()
                      if engine is not None else getattr(
                          runner.optim_wrapper, '_accumulative_counts', 1))
        steps = float(self.switch_iters) / accumulate
        if self.auto_momentum:
            momentum = self.target_ratio / steps
            if not 0 < momentum < 1:
                raise ValueError(
                    f"`momentum='auto'` with target_ratio="
                    f'{self.target_ratio} and a switch interval of '
                    f'{steps:g} optimizer steps gives momentum '
                    f'{momentum:g}, outside (0, 1): the interval must be '
                    f'longer than {self.target_ratio:g} optimizer steps')
            self.ema_model.momentum = momentum
        self.log_ratio(steps)

    def log_ratio(self, steps: float) -> None:
        """Log (and warn about) the switch ratio ``rho = T * m``.

        Args:
            steps (float): The switch interval in optimizer steps.
        """
        momentum = current_momentum(self.ema_model)
        msg = (f'SEMAHook: switching every {self.switch_interval} '
               f'{"epoch(s)" if self.switch_by_epoch else "iteration(s)"} = '
               f'{float(self.switch_iters):g} iterations = {steps:g} '
               'optimizer steps')
        if momentum is None:  # an averaged model without a momentum
            print_log(msg, 'current')
            return
        ratio = steps * momentum
        # a schedule may start at momentum 1 (MomentumAnnealingEMA at step 0)
        moved = 1.0 if momentum >= 1 else -math.expm1(
            steps * math.log1p(-momentum))
        print_log(
            f'{msg}; momentum {momentum:.6g}'
            f'{" (auto)" if self.auto_momentum else ""} (paper alpha '
            f'{1 - momentum:.6g}); switch ratio rho = T * m = {ratio:.3g}: '
            f'between switches the EMA moves {moved:.1%} of the way to the '
            'model', 'current')
        if ratio < self.RATIO_WARN_BELOW:
            print_log(
                f'SEMAHook: switch ratio rho = T * m = {ratio:.3g} is below '
                f'{self.RATIO_WARN_BELOW}: each switch throws away most of '
                'the progress of its interval and training slows down. '
                f'Raise the momentum to >= {self.RATIO_WARN_BELOW / steps:.3g}'
                f' (paper alpha <= {1 - self.RATIO_WARN_BELOW / steps:.4g}), '
                'lengthen switch_interval, or use momentum=\'auto\'.',
                'current', logging.WARNING)

    def switch_due(self, num_iters: int) -> bool:
        """Whether a switch is due after ``num_iters`` finished iterations.

        Switches happen after iteration ``ceil(k * T)`` for k = 1, 2, ...,
        with ``T`` the interval in iterations; whole-epoch intervals land on
        epoch ends.

        Args:
            num_iters (int): Iterations finished so far (``runner.iter + 1``
                in ``after_train_iter``).

        Returns:
            bool: True if the EMA should be copied into the model now.
        """
        if self.switch_iters is None:
            return False
        num, den = self.switch_iters.numerator, self.switch_iters.denominator
        return (num_iters * den) // num != ((num_iters - 1) * den) // num

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        """Update the EMA if the optimizer stepped, then switch if due.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): The index of the current batch in the loop.
            data_batch (dict | tuple | list, optional): Data from the
                dataloader. Defaults to None.
            outputs (dict, optional): Outputs from the model.
                Defaults to None.
        """
        if optimizer_stepped(runner):
            if not self._sharded():
                super().after_train_iter(runner, batch_idx, data_batch,
                                         outputs)
            elif self._ema_started(runner):
                self.ema_model.update_parameters(self.src_model)
            else:
                self.ema_model.reset_to(self.src_model)
        self.switch_if_due(runner)

    # ------------------------------------------------------------------
    # the switch
    def switch_if_due(self, runner) -> bool:
        """Switch after this iteration if the schedule says so and the EMA
        has started (``begin_iter`` / ``begin_epoch``).

        Args:
            runner (Runner): The runner of the training process.

        Returns:
            bool: Whether a switch was made.
        """
        if self.switch_due(runner.iter + 1) and self._ema_started(runner):
            return self.switch(runner)
        return False

    def switch(self, runner) -> bool:
        """Copy the EMA into the training model, log the distance before it.

        Args:
            runner (Runner): The runner of the training process.

        Returns:
            bool: Whether the EMA was copied (False when it held NaN/Inf and
            ``nonfinite='warn'``).
        """
        if self._sharded():  # one all_reduce of three numbers
            distance, finite = self.ema_model.switch_statistics(
                self.src_model)
        else:
            distance, finite = switch_statistics(self.ema_model,
                                                 self.src_model)
        where = f'epoch {runner.epoch + 1}, iter {runner.iter + 1}'
        if not finite:
            self.refuse_nonfinite(
                f'SEMAHook: the EMA holds NaN/Inf at the switch ({where}); '
                'it is not copied into the model')
            return False
        if self._sharded():
            self.ema_model.copy_to(self.src_model)
        else:
            copy_ema_to(self.ema_model, self.src_model)
        self.log_switch(runner, distance, where)
        return True

    def refuse_nonfinite(self, msg: str) -> None:
        """Raise or warn, per ``nonfinite``, about a switch not made.

        Args:
            msg (str): What was found and not copied.
        """
        if self.nonfinite == 'raise':
            raise RuntimeError(msg)
        print_log(msg, 'current', logging.WARNING)

    def log_switch(self, runner, distance: float, where: str) -> None:
        """Log a switch to the logger, the MessageHub and the visualizer.

        Args:
            runner (Runner): The runner of the training process.
            distance (float): ||param - ema|| / ||param|| before the switch.
            where (str): Epoch / iteration (and direction) of the switch.
        """
        # The switch count follows from the iteration, so it survives resume.
        index = (runner.iter + 1) * self.switch_iters.denominator // \
            self.switch_iters.numerator
        print_log(
            f'{type(self).__name__}: switch {index} ({where}): '
            f'||param - ema|| / ||param|| = {distance:.6g}', 'current')
        runner.message_hub.update_scalar('train/sema_distance', distance)
        runner.visualizer.add_scalars({'sema/distance': distance},
                                      step=runner.iter + 1)
