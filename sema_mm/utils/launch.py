"""Build a runner from a config with this package's fixes of the stack.

One call for ``tools/train.py``, ``tools/test.py`` and users' own tools:
:func:`build_runner` applies each named fix in ``sema_mm.utils`` and builds
the runner the config asks for.
"""
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .config import strip_collate_fn_scope
from .dist import cpu_model_wrapper_cfg, init_gloo_if_no_cuda
from .numpy2 import fix_mmcv_adjust_hue_numpy2

__all__ = ['build_runner']


def build_runner(cfg, launcher: str = 'none'):
    """Apply the stack fixes to ``cfg`` (in place) and build its runner.

    - ``strip_collate_fn_scope``: ``mmpretrain::`` inheritance stamps
      ``_scope_`` into ``collate_fn``;
    - ``cpu_model_wrapper_cfg`` and ``init_gloo_if_no_cuda``: distributed
      launches without a GPU (gloo, ``device_ids=None``);
    - ``fix_mmcv_adjust_hue_numpy2``: mmcv's hue jitter under numpy 2.

    Args:
        cfg (mmengine.Config): The merged config (CLI options applied).
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
            Defaults to 'none'.

    Returns:
        The runner: ``RUNNERS.build(cfg)`` when the config names a
        ``runner_type`` (e.g. ``'FlexibleRunner'``), else
        ``Runner.from_cfg(cfg)``.
    """
    fix_mmcv_adjust_hue_numpy2()
    strip_collate_fn_scope(cfg)
    cpu_model_wrapper_cfg(cfg, launcher)
    # mmengine's init_dist needs CUDA; without it, start gloo first (the
    # runner then uses the existing process group).
    init_gloo_if_no_cuda(launcher)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
