# +SEMA: ConvNeXt-T, AdamW, 300 epochs (paper Table 2). The stock recipe
# carries EMAHook(momentum=1e-4): the basic variant drops it, +EMA / +SEMA
# replace it.
# SEMA: paper alpha 0.999 -> mmengine momentum 1e-3, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-3,
        switch_interval=1,
        switch_by_epoch=True)
]
