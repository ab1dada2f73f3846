# Basic (no EMA): Cascade Mask R-CNN R-50 FPN, multi-scale, SGD, 36 epochs
# (paper Table 6).
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
