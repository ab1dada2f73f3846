# +SEMA: ResNet-50, LAMB, RSB A3 recipe, 100 epochs (paper Tables 2, A3).
# SEMA: paper alpha 0.999 -> mmengine momentum 1e-3, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::resnet/resnet50_8xb256-rsb-a3-100e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-3,
        switch_interval=1,
        switch_by_epoch=True)
]
