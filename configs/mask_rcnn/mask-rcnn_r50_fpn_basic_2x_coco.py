# Basic (no EMA): Mask R-CNN R-50 FPN, SGD, 24 epochs (paper Table 6).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
