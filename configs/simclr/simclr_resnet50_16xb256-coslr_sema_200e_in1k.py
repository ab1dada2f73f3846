# +SEMA: SimCLR R-50, LARS, 200 epochs (no EMA in the algorithm).
# SEMA: paper alpha 0.9999 -> mmengine momentum 1e-4, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-4,
        switch_interval=1,
        switch_by_epoch=True)
]
