"""mmengine 0.10.7's ``DeepSpeedStrategy`` on current DeepSpeed, with resume.

Three problems, three fixes:

- ``DeepSpeedStrategy.__init__`` registers DeepSpeed's optimizers through
  ``mmengine._strategy.deepspeed.register_deepspeed_optimizers``, which
  imports ``deepspeed.runtime.fp16.onebit``. DeepSpeed 0.19 no longer has
  the 1-bit optimizers, so building the strategy fails with
  ``ModuleNotFoundError: No module named 'deepspeed.runtime.fp16.onebit'``.
  :func:`fix_deepspeed_optimizer_registry` puts in its place a version that
  registers the optimizers this DeepSpeed has and skips the others;
  ``import sema_mm`` applies it.
- ``FlexibleRunner`` gives ``train_micro_batch_size_per_gpu`` (the train
  dataloader's batch size, which DeepSpeed requires) only to a strategy
  named exactly ``DeepSpeedStrategy``; :class:`ResumableDeepSpeedStrategy`
  takes it from the runner itself.
- ``DeepSpeedStrategy.save_checkpoint``, ``resume`` and
  ``load_checkpoint`` ignore their ``callback`` argument, through which
  ``FlexibleRunner`` calls the hooks' ``before_save_checkpoint`` and
  ``after_load_checkpoint``: no hook can add to a checkpoint or read one,
  so an EMA is neither saved nor resumed. :class:`ResumableDeepSpeedStrategy`
  calls them with the checkpoint's client state (what DeepSpeed stores
  beside the model and optimizer). Use it as
  ``strategy=dict(type='ResumableDeepSpeedStrategy', ...)``; SEMAHook
  refuses to train under the stock strategy rather than lose its EMA.

All three can go the day mmengine fixes them.
"""
import importlib
from typing import Callable, List, Optional, Union

from mmengine._strategy import DeepSpeedStrategy
from mmengine.registry import OPTIMIZERS, STRATEGIES

__all__ = [
    'fix_deepspeed_optimizer_registry', 'register_deepspeed_optimizers',
    'ResumableDeepSpeedStrategy'
]

#: (module, class) of every optimizer mmengine 0.10.7 registers.
_DEEPSPEED_OPTIMIZERS = (
    ('deepspeed.ops.adam', 'DeepSpeedCPUAdam'),
    ('deepspeed.ops.adam', 'FusedAdam'),
    ('deepspeed.ops.lamb', 'FusedLamb'),
    ('deepspeed.runtime.fp16.onebit', 'OnebitAdam'),
    ('deepspeed.runtime.fp16.onebit', 'OnebitLamb'),
    ('deepspeed.runtime.fp16.onebit', 'ZeroOneAdam'),
)


def register_deepspeed_optimizers() -> List[str]:
    """Register the DeepSpeed optimizers this DeepSpeed has in mmengine's
    ``OPTIMIZERS``.

    Returns:
        list[str]: The names registered (empty without DeepSpeed).
    """
    names = []
    for module_name, cls_name in _DEEPSPEED_OPTIMIZERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, cls_name, None)
        if cls is None:
            continue
        OPTIMIZERS.register_module(module=cls, force=True)
        names.append(cls_name)
    return names


def fix_deepspeed_optimizer_registry() -> None:
    """Make mmengine's ``DeepSpeedStrategy`` register DeepSpeed's optimizers
    with :func:`register_deepspeed_optimizers`."""
    from mmengine._strategy import deepspeed as ds_strategy
    ds_strategy.register_deepspeed_optimizers = register_deepspeed_optimizers


@STRATEGIES.register_module()
class ResumableDeepSpeedStrategy(DeepSpeedStrategy):
    """``DeepSpeedStrategy`` that lets the hooks see the checkpoints it
    saves and loads (``before_save_checkpoint``,
    ``after_load_checkpoint``)."""

    def _wrap_model(self, model):
        # FlexibleRunner fills in train_micro_batch_size_per_gpu (which
        # DeepSpeed requires) from the train dataloader only for a strategy
        # named exactly 'DeepSpeedStrategy'; do the same here unless the
        # config sets it.
        self.config.setdefault(
            'train_micro_batch_size_per_gpu',
            self.dispatch_kwargs.get('train_micro_batch_size_per_gpu', 1))
        return super()._wrap_model(model)

    def save_checkpoint(self,
                        filename: str,
                        *,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        extra_ckpt: Optional[dict] = None,
                        callback: Optional[Callable] = None) -> None:
        """Call ``callback`` with the client state, then save the
        checkpoint as DeepSpeedStrategy does.

        Args:
            filename (str): The checkpoint directory (``.../epoch_N.pth``).
            save_optimizer (bool): Whether to save the optimizer state.
                Defaults to True.
            save_param_scheduler (bool): Whether to save the parameter
                schedulers. Defaults to True.
            extra_ckpt (dict, optional): The client state. Defaults to
                None (empty).
            callback (Callable, optional): Called with the client state
                before it is written. Defaults to None.
        """
        if extra_ckpt is None:
            extra_ckpt = dict()
        if callback is not None:
            callback(extra_ckpt)
        super().save_checkpoint(
            filename,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            extra_ckpt=extra_ckpt)

    def load_checkpoint(self,
                        filename: str,
                        *,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')],
                        callback: Optional[Callable] = None) -> dict:
        """Load a DeepSpeed checkpoint, then call ``callback`` with its
        client state.

        Args:
            filename (str): The checkpoint directory (``.../epoch_N.pth``).
            map_location (str | Callable): Unused, as in DeepSpeedStrategy.
                Defaults to 'cpu'.
            strict (bool): Unused, as in DeepSpeedStrategy. Defaults to
                False.
            revise_keys (list): Unused, as in DeepSpeedStrategy.
            callback (Callable, optional): Called with the client state.
                Defaults to None.

        Returns:
            dict: The client state.
        """
        extra_ckpt = super().load_checkpoint(
            filename,
            map_location=map_location,
            strict=strict,
            revise_keys=revise_keys)
        if callback is not None:
            callback(extra_ckpt)
        return extra_ckpt

    def resume(self,
               filename: str,
               *,
               resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default',
               callback: Optional[Callable] = None) -> dict:
        """Resume from a DeepSpeed checkpoint, then call ``callback`` with
        its client state.

        Args:
            filename (str): The checkpoint directory (``.../epoch_N.pth``).
            resume_optimizer (bool): Whether to resume the optimizer state.
                Defaults to True.
            resume_param_scheduler (bool): Whether to resume the parameter
                schedulers. Defaults to True.
            map_location (str | Callable): Unused, as in DeepSpeedStrategy.
                Defaults to 'default'.
            callback (Callable, optional): Called with the client state.
                Defaults to None.

        Returns:
            dict: The client state.
        """
        extra_ckpt = super().resume(
            filename,
            resume_optimizer=resume_optimizer,
            resume_param_scheduler=resume_param_scheduler,
            map_location=map_location)
        if callback is not None:
            callback(extra_ckpt)
        return extra_ckpt
