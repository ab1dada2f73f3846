from .checkpoint import allow_mmengine_checkpoints
from .config import strip_collate_fn_scope
from .dist import (close_process_group, cpu_model_wrapper_cfg,
                   init_gloo_if_no_cuda)
from .launch import build_runner
from .numpy2 import fix_mmcv_adjust_hue_numpy2

__all__ = [
    'allow_mmengine_checkpoints', 'strip_collate_fn_scope',
    'cpu_model_wrapper_cfg', 'init_gloo_if_no_cuda',
    'fix_mmcv_adjust_hue_numpy2', 'build_runner', 'close_process_group'
]
