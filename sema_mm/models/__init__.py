from .sharded_ema import (ShardedEMAModel, gather_full_state_dict,
                          is_sharded_ema_state, sharded_kind)
from .switch_ema import (SwitchEMAModel, check_momentum, copy_ema_to,
                         current_momentum, ema_pairs, switch_statistics)

__all__ = [
    'SwitchEMAModel', 'check_momentum', 'copy_ema_to', 'current_momentum',
    'ema_pairs', 'switch_statistics', 'ShardedEMAModel', 'sharded_kind',
    'gather_full_state_dict', 'is_sharded_ema_state'
]
