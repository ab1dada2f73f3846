# +SEMA: RetinaNet R-50 FPN, SGD, 24 epochs (paper Table 7).
# SEMA: paper alpha 0.999 -> mmengine momentum 1e-3, switch interval T = 1
# epoch.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-3,
        switch_interval=1,
        switch_by_epoch=True)
]
