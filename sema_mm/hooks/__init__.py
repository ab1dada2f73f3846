from .sema_hook import SEMAHook
from .ssl_switch_hook import SSLSwitchHook, copy_model_to_ema

__all__ = ['SEMAHook', 'SSLSwitchHook', 'copy_model_to_ema']
