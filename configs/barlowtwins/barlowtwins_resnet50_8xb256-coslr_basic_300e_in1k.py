# Basic (no EMA): Barlow Twins R-50, LARS, 300 epochs (no EMA in the
# algorithm).
_base_ = 'mmpretrain::barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
