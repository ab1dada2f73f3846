# Basic (no EMA): RetinaNet R-50 FPN, SGD, 24 epochs (paper Table 7).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
