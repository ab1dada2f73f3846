# +EMA: RetinaNet R-50 FPN, SGD, 24 epochs (paper Table 7).
# EMA: paper alpha 0.9999 -> mmengine momentum 1e-4 (m = 1 - alpha).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=1e-4)]
