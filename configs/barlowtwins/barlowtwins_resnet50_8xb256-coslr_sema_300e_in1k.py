# +SEMA: Barlow Twins R-50, LARS, 300 epochs (no EMA in the algorithm).
# SEMA: paper alpha 0.9999 -> mmengine momentum 1e-4, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-4,
        switch_interval=1,
        switch_by_epoch=True)
]
