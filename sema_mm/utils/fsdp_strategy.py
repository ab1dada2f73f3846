"""Resume under mmengine's FSDPStrategy on torch >= 2.1.

mmengine 0.10.7's ``FSDPStrategy.load_optim_state_dict`` calls
``FSDP.optim_state_dict_to_load(state_dict, model, optimizer)``, the
argument order of torch 2.0; since torch 2.1 the signature is
``(model, optim, optim_state_dict)``, so every resume fails with
``TypeError: unhashable type: 'dict'``. :class:`ResumableFSDPStrategy` is
``FSDPStrategy`` with the call made by keyword. Use it as
``strategy=dict(type='ResumableFSDPStrategy', ...)``; it can be deleted the
day mmengine fixes the call.
"""
from mmengine._strategy import FSDPStrategy
from mmengine.registry import STRATEGIES
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

__all__ = ['ResumableFSDPStrategy']


@STRATEGIES.register_module()
class ResumableFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` whose optimizer state loads on torch >= 2.1."""

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """Load the optimizer state saved by :meth:`optim_state_dict`.

        Args:
            state_dict (dict): The optimizer state dict.
        """
        optim_state_dict = FSDP.optim_state_dict_to_load(
            model=self.model,
            optim=self.optim_wrapper.optimizer,
            optim_state_dict=state_dict)
        self.optim_wrapper.load_state_dict(optim_state_dict)
