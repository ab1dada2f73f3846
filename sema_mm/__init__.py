"""Switch EMA (SEMA) for the OpenMMLab training stack.

Importing this package registers :class:`SwitchEMAModel` in mmengine's root
``MODELS`` registry and :class:`SEMAHook` in its root ``HOOKS`` registry, so
``type='SEMAHook'`` resolves under any downstream scope (``mmdet``,
``mmpretrain``, ...). It also allow-lists the data types of mmengine
checkpoints for ``torch.load(weights_only=True)`` so that ``resume`` works on
torch >= 2.6 (see :mod:`sema_mm.utils.checkpoint`), and lets mmengine's
``DeepSpeedStrategy`` be built with DeepSpeed >= 0.19
(see :mod:`sema_mm.utils.deepspeed_strategy`).
"""
from .hooks import SEMAHook
from .models import SwitchEMAModel
from .utils import allow_mmengine_checkpoints
from .utils.deepspeed_strategy import fix_deepspeed_optimizer_registry
from .version import __version__

allow_mmengine_checkpoints()
fix_deepspeed_optimizer_registry()

__all__ = ['SEMAHook', 'SwitchEMAModel', '__version__']
