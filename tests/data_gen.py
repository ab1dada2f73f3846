"""Small datasets written as real files in the formats stock datasets read.

- :func:`make_imagenet`: ``train/`` and ``val/`` class folders plus
  ``meta/train.txt`` / ``meta/val.txt`` (``relative/path.jpg label``), read
  by mmpretrain's ``ImageNet(data_root=..., split='train'|'val')``.
- :func:`make_coco`: ``train2017/``, ``val2017/`` and
  ``annotations/instances_{train,val}2017.json`` with boxes and polygon
  masks, read by mmdet's ``CocoDataset`` and ``CocoMetric``.

Images carry a class-dependent coloured shape on noise, so the tasks are
learnable but not trivial. Everything is seeded.
"""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

# The objects drawn, by COCO category name (CocoDataset selects categories
# by name; the json lists all 80, as COCO does, so that a detector's label
# i maps to a category id for CocoMetric).
COCO_NAMES = ('person', 'car', 'dog')
_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40),
            (200, 60, 200), (40, 210, 210), (250, 140, 20), (120, 120, 120)]


def _noise(rng, h, w):
    return rng.integers(0, 90, size=(h, w, 3), dtype=np.uint8)


def make_imagenet(root: str,
                  num_classes: int = 6,
                  train_per_class: int = 4,
                  val_per_class: int = 2,
                  size: int = 48,
                  seed: int = 0) -> str:
    """Write an ImageNet-style folder dataset.

    Args:
        root (str): Output directory (the dataset's ``data_root``).
        num_classes (int): Number of classes (folders). Defaults to 6.
        train_per_class (int): Training images per class. Defaults to 4.
        val_per_class (int): Validation images per class. Defaults to 2.
        size (int): Image side in pixels. Defaults to 48.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: ``root``.
    """
    if not 1 <= num_classes <= len(_COLOURS):
        raise ValueError(f'`num_classes` must be in [1, {len(_COLOURS)}], '
                         f'but got {num_classes}')
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split, per_class in (('train', train_per_class),
                             ('val', val_per_class)):
        lines = []
        for label in range(num_classes):
            folder = f'n{label:08d}'
            os.makedirs(osp.join(root, split, folder), exist_ok=True)
            for i in range(per_class):
                img = Image.fromarray(_noise(rng, size, size))
                draw = ImageDraw.Draw(img)
                x0, y0 = rng.integers(0, size // 3, size=2)
                s = int(rng.integers(size // 3, size // 2))
                shape = draw.ellipse if label % 2 else draw.rectangle
                shape([x0, y0, x0 + s, y0 + s], fill=_COLOURS[label])
                rel = f'{folder}/{split}_{label}_{i}.JPEG'
                img.save(osp.join(root, split, rel), format='JPEG')
                lines.append(f'{rel} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return root


def _coco80():
    from mmdet.datasets import CocoDataset
    return list(CocoDataset.METAINFO['classes'])


def _coco_split(root, split, num_images, size, rng, first_ann_id):
    img_dir = osp.join(root, f'{split}2017')
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    ann_id = first_ann_id
    for img_id in range(1, num_images + 1):
        h, w = size, int(size * 1.25)
        img = Image.fromarray(_noise(rng, h, w))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 3))):
            cat = int(rng.integers(0, len(COCO_NAMES)))
            bw, bh = (int(v) for v in rng.integers(h // 4, h // 2, size=2))
            x0 = int(rng.integers(0, w - bw))
            y0 = int(rng.integers(0, h - bh))
            if cat == 1:  # ellipse-ish polygon for one class
                t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
                poly = np.stack([x0 + bw / 2 + bw / 2 * np.cos(t),
                                 y0 + bh / 2 + bh / 2 * np.sin(t)], 1)
            else:
                poly = np.array([[x0, y0], [x0 + bw, y0], [x0 + bw, y0 + bh],
                                 [x0, y0 + bh]], dtype=float)
            draw.polygon([tuple(p) for p in poly], fill=_COLOURS[cat])
            xs, ys = poly[:, 0], poly[:, 1]
            x, y = float(xs.min()), float(ys.min())
            bw_f, bh_f = float(xs.max() - x), float(ys.max() - y)
            area = 0.5 * abs(
                float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
            annotations.append(
                dict(id=ann_id, image_id=img_id,
                     category_id=_coco80().index(COCO_NAMES[cat]) + 1,
                     bbox=[x, y, bw_f, bh_f], area=area, iscrowd=0,
                     segmentation=[[round(float(v), 2)
                                    for v in poly.reshape(-1)]]))
            ann_id += 1
        name = f'{img_id:012d}.jpg'
        img.save(osp.join(img_dir, name), format='JPEG')
        images.append(dict(id=img_id, file_name=name, height=h, width=w))
    categories = [dict(id=i + 1, name=n, supercategory='thing')
                  for i, n in enumerate(_coco80())]
    with open(osp.join(root, 'annotations', f'instances_{split}2017.json'),
              'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)
    return ann_id


def make_coco(root: str,
              num_train: int = 8,
              num_val: int = 4,
              size: int = 128,
              seed: int = 0) -> str:
    """Write a COCO-format instance segmentation dataset.

    Args:
        root (str): Output directory (the dataset's ``data_root``).
        num_train (int): Training images. Defaults to 8.
        num_val (int): Validation images. Defaults to 4.
        size (int): Image height in pixels (width is 1.25x). Defaults to 128.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: ``root``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('`num_train` and `num_val` must be >= 1, but got '
                         f'{num_train} and {num_val}')
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    next_id = _coco_split(root, 'train', num_train, size, rng, 1)
    _coco_split(root, 'val', num_val, size, rng, next_id)
    return root
