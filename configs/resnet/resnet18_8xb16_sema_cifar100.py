# +SEMA: ResNet-18 (CIFAR stem), SGD, 200 epochs (paper Table 3); the stock
# CIFAR-100 recipe is for ResNet-50, the depth is set to 18.
# SEMA: paper alpha 0.99 -> mmengine momentum 1e-2, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::resnet/resnet50_8xb16_cifar100.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

model = dict(backbone=dict(depth=18), head=dict(in_channels=512))

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-2,
        switch_interval=1,
        switch_by_epoch=True)
]
