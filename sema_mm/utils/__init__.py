from .checkpoint import allow_mmengine_checkpoints
from .config import strip_collate_fn_scope
from .dist import cpu_model_wrapper_cfg, init_gloo_if_no_cuda

__all__ = [
    'allow_mmengine_checkpoints', 'strip_collate_fn_scope',
    'cpu_model_wrapper_cfg', 'init_gloo_if_no_cuda'
]
