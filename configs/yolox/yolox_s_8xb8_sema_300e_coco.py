# +SEMA: YOLOX-S, SGD, 300 epochs from scratch (paper Table 7). The stock
# recipe carries EMAHook(ema_type=ExpMomentumEMA, momentum=1e-4): the basic
# variant drops it, +SEMA keeps its momentum schedule (ExpMomentumEMA).
# SEMA: paper alpha 0.999 -> mmengine momentum 1e-3, switch interval T = 1
# epoch.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='YOLOXModeSwitchHook',
        num_last_epochs=_base_.num_last_epochs,
        priority=48),
    dict(type='SyncNormHook', priority=48),
    dict(
        type='SEMAHook',
        ema_type='ExpMomentumEMA',
        momentum=1e-3,
        update_buffers=True,
        switch_interval=1,
        priority=49),
]
