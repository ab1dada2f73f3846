"""Train ``mmselfsup::`` configs (mmselfsup 1.0.0) under mmengine >= 0.8.

mmselfsup 1.0.0's ``registry.py`` names ``mmselfsup.engine.runner`` in the
``locations`` of its ``RUNNERS``, ``RUNNER_CONSTRUCTORS`` and ``LOOPS``
registries, but the released package has no such module. mmengine >= 0.8
imports a registry's locations on its first lookup, so building the train
loop of any ``mmselfsup::`` config fails with ``ModuleNotFoundError: No
module named 'mmselfsup.engine.runner'``. mmselfsup defines no runner or
loop of its own (lookups fall back to mmengine's), so an empty module is
all that is missing.

Importing this module registers that empty module; name it in the config::

    custom_imports = dict(
        imports=['sema_mm', 'sema_mm.utils.mmselfsup_runner'],
        allow_failed_imports=False)

It can be deleted the day mmselfsup ships the module (or drops the name).
"""
import sys
import types

__all__ = ['add_missing_mmselfsup_runner_module']


def add_missing_mmselfsup_runner_module() -> bool:
    """Register an empty ``mmselfsup.engine.runner`` if mmselfsup lacks it.

    Returns:
        bool: Whether the empty module was registered by this call (False
        when mmselfsup is not installed or already provides the module).
    """
    name = 'mmselfsup.engine.runner'
    if name in sys.modules:
        return False
    try:
        import mmselfsup.engine as engine
    except ImportError:
        return False
    import importlib.util
    try:
        if importlib.util.find_spec(name) is not None:
            return False
    except (ImportError, ValueError):
        pass
    module = types.ModuleType(name)
    module.__doc__ = ('Empty stand-in registered by sema_mm for the module '
                      'that mmselfsup 1.0.0 names in its registries but '
                      'does not ship.')
    sys.modules[name] = module
    engine.runner = module
    return True


add_missing_mmselfsup_runner_module()
