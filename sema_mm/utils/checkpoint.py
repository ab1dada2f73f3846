"""Resume mmengine checkpoints under ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and refuses
every global that is not allow-listed. An mmengine 0.10.7 checkpoint stores
its ``MessageHub`` state: ``HistoryBuffer`` objects holding numpy arrays,
whose bound statistics methods are pickled as ``getattr(buffer, 'mean')``.
Resuming therefore fails with ``Weights only load failed ... HistoryBuffer``.

Instead of turning the protection off, :func:`allow_mmengine_checkpoints`
allow-lists exactly the data types such a checkpoint holds, and maps the
pickled ``builtins.getattr`` to :func:`history_buffer_getattr`, which only
looks up ``HistoryBuffer`` statistics methods. Every other global still makes
``torch.load`` fail, so a file loaded with ``load_from`` or ``resume`` cannot
run code. This can be deleted the day mmengine writes weights-only
checkpoints.
"""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = ['allow_mmengine_checkpoints', 'history_buffer_getattr',
           'MMENGINE_CHECKPOINT_GLOBALS']


# HistoryBuffer fills its statistics registry only when a first instance is
# made, which a fresh process that only loads a checkpoint has not done.
_BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(obj, name: str):
    """``getattr`` restricted to the statistics methods of a HistoryBuffer.

    Args:
        obj (type | HistoryBuffer): The HistoryBuffer class (its statistics
            registry is pickled as ``getattr(HistoryBuffer, 'mean')``) or
            an instance.
        name (str): The method name.

    Returns:
        The method ``obj.<name>``.

    Raises:
        TypeError: For anything but a HistoryBuffer statistics method (or
            ``getattr(ShardedTensor, "ProcessGroupState")``, which FSDP local
            state dicts pickle).
    """
    sharded = _sharded_tensor_class()
    if sharded is not None and obj is sharded and name == 'ProcessGroupState':
        # FSDP local state dicts (FSDPStrategy(state_dict_cfg='local'))
        return sharded.ProcessGroupState
    allowed = _BUILTIN_STATISTICS + tuple(HistoryBuffer._statistics_methods)
    if ((obj is HistoryBuffer or type(obj) is HistoryBuffer)
            and isinstance(name, str) and name in allowed):
        return getattr(obj, name)
    raise TypeError(f'refusing getattr({type(obj).__name__}, {name!r}) while '
                    'loading a checkpoint: only HistoryBuffer statistics '
                    'methods (and ShardedTensor.ProcessGroupState) are '
                    'allowed')


def _sharded_tensor_class():
    try:
        from torch.distributed._shard.sharded_tensor import ShardedTensor
    except ImportError:  # pragma: no cover
        return None
    return ShardedTensor


def _sharded_tensor_globals():
    """The data types of the ShardedTensor that FSDP's local state dict
    writes (mmengine ``FSDPStrategy(state_dict_cfg='local')``, each rank's
    ``rankN.pth``); its pickle also calls
    ``getattr(ShardedTensor, 'ProcessGroupState')``, which
    :func:`history_buffer_getattr` allows."""
    sharded = _sharded_tensor_class()
    if sharded is None:  # pragma: no cover
        return []
    from torch.distributed._shard.metadata import ShardMetadata
    from torch.distributed._shard.sharded_tensor.metadata import (
        MEM_FORMAT_ENCODING, ShardedTensorMetadata, TensorProperties)
    from torch.distributed._shard.sharded_tensor.shard import Shard
    from torch.distributed._shard.sharding_spec import ChunkShardingSpec
    from torch.distributed.remote_device import _remote_device
    return [
        sharded, sharded.ProcessGroupState, Shard, ShardMetadata,
        ShardedTensorMetadata, TensorProperties, MEM_FORMAT_ENCODING,
        ChunkShardingSpec, _remote_device
    ]


def _numpy_globals():
    core = getattr(np, '_core', None) or np.core
    found = [np.dtype, np.ndarray, core.multiarray._reconstruct,
             core.multiarray.scalar]
    # numpy >= 1.25 pickles dtypes through their classes in ``np.dtypes``.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType') and isinstance(
                getattr(dtypes, name), type)
        ]
    return found


#: Globals an mmengine 0.10.x checkpoint needs besides torch's defaults.
MMENGINE_CHECKPOINT_GLOBALS = [
    HistoryBuffer,
    (history_buffer_getattr, 'builtins.getattr'),
    *_numpy_globals(),
    *_sharded_tensor_globals(),
]


def allow_mmengine_checkpoints() -> None:
    """Allow-list the data types of mmengine checkpoints for
    ``torch.load(weights_only=True)``. Idempotent; a no-op on torch without
    ``add_safe_globals`` (< 2.4), where ``weights_only`` is off by default.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(MMENGINE_CHECKPOINT_GLOBALS)
