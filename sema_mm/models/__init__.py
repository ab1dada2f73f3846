from .switch_ema import (SwitchEMAModel, copy_ema_to, ema_pairs,
                         switch_statistics)

__all__ = ['SwitchEMAModel', 'copy_ema_to', 'ema_pairs', 'switch_statistics']
