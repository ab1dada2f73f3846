# +SEMA: ResNet-50, SGD, 100 epochs (PyTorch-style recipe, paper Table 2).
# SEMA: paper alpha 0.999 -> mmengine momentum 1e-3, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::resnet/resnet50_8xb32-coslr_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-3,
        switch_interval=1,
        switch_by_epoch=True)
]
