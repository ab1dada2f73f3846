# Basic (no EMA): YOLOX-S, SGD, 300 epochs from scratch (paper Table 7). The
# stock recipe carries EMAHook(ema_type=ExpMomentumEMA, momentum=1e-4): the
# basic variant drops it, +SEMA keeps its momentum schedule (ExpMomentumEMA).
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

# Drop the stock EMAHook.
custom_hooks = [
    dict(
        type='YOLOXModeSwitchHook',
        num_last_epochs=_base_.num_last_epochs,
        priority=48),
    dict(type='SyncNormHook', priority=48),
]
