"""Config fixes applied by ``tools/train.py`` and ``tools/test.py``.

A config that inherits a stock mmpretrain recipe through ``mmpretrain::``
gets ``_scope_='mmpretrain'`` stamped into every dict with a ``type`` key,
including ``train_dataloader.collate_fn``. mmengine 0.10.7 builds the
collate function with ``partial(FUNCTIONS.get(type), **rest)``, so the
``_scope_`` key reaches ``default_collate`` as a keyword argument
(``TypeError: default_collate() got an unexpected keyword argument
'_scope_'``). :func:`strip_collate_fn_scope` removes it. It can be deleted
the day mmengine pops ``_scope_`` there.
"""
from typing import List

__all__ = ['strip_collate_fn_scope', 'DATALOADER_KEYS']

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def strip_collate_fn_scope(cfg) -> List[str]:
    """Drop ``_scope_`` from the ``collate_fn`` of every dataloader config.

    The collate function is then looked up in the default scope of the
    config (``default_scope``), which is the scope that stamped it.

    Args:
        cfg (mmengine.Config | dict): The config, changed in place.

    Returns:
        list[str]: The dataloaders whose ``collate_fn`` was changed.
    """
    changed = []
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if not isinstance(loader, dict):
            continue
        collate = loader.get('collate_fn')
        if isinstance(collate, dict) and '_scope_' in collate:
            collate.pop('_scope_')
            changed.append(key)
    return changed
