"""scikit-learn's bundled handwritten digits (8x8, 1797 images) as an
mmpretrain dataset, in memory, registered in mmpretrain's ``DATASETS``.

The split is fixed (stratified, ``split_seed``), so that all training seeds
see the same train / test images: 1000 train, 797 test by default.
"""
import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS


def digits_split(num_train=1000, split_seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    # 0..16 grey levels -> 0..255 uint8, HxWx1 as mmcv images are.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    idx = np.arange(len(images))
    tr, te = train_test_split(idx, train_size=num_train,
                              random_state=split_seed, stratify=digits.target)
    return images, digits.target.astype(np.int64), np.sort(tr), np.sort(te)


@DATASETS.register_module()
class SklearnDigits(BaseDataset):
    """In-memory scikit-learn digits for mmpretrain.

    Args:
        split (str): 'train' or 'test'.
        num_train (int): Training images in the fixed split. Defaults to 1000.
        split_seed (int): Seed of the split. Defaults to 0.
        subset (int, optional): Keep only the first this many images.
        pipeline (list): mmpretrain transforms, e.g. ``[dict(type='PackInputs')]``.
    """
    METAINFO = {'classes': tuple(str(i) for i in range(10))}

    def __init__(self, split='train', num_train=1000, split_seed=0,
                 subset=None, **kwargs):
        assert split in ('train', 'test'), split
        self.split, self.num_train, self.split_seed = split, num_train, split_seed
        self.subset = subset
        kwargs.setdefault('ann_file', '')
        kwargs.setdefault('data_root', '')
        super().__init__(**kwargs)

    def load_data_list(self):
        images, labels, tr, te = digits_split(self.num_train, self.split_seed)
        idx = tr if self.split == 'train' else te
        if self.subset is not None:
            idx = idx[:self.subset]
        return [dict(img=images[i], gt_label=int(labels[i])) for i in idx]
