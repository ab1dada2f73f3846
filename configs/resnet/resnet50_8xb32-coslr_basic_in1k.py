# Basic (no EMA): ResNet-50, SGD, 100 epochs (PyTorch-style recipe, paper
# Table 2).
_base_ = 'mmpretrain::resnet/resnet50_8xb32-coslr_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
