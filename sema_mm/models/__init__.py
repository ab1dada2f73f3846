from .switch_ema import (SwitchEMAModel, check_momentum, copy_ema_to,
                         current_momentum, ema_pairs, switch_statistics)

__all__ = [
    'SwitchEMAModel', 'check_momentum', 'copy_ema_to', 'current_momentum',
    'ema_pairs', 'switch_statistics'
]
