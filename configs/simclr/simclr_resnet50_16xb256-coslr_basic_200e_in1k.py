# Basic (no EMA): SimCLR R-50, LARS, 200 epochs (no EMA in the algorithm).
_base_ = 'mmpretrain::simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
