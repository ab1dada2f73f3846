from .sema_hook import SEMAHook

__all__ = ['SEMAHook']
