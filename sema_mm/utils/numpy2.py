"""mmcv 2.1.0's ``adjust_hue`` under numpy >= 2.

``mmcv.image.photometric.adjust_hue`` shifts the hue channel with
``h += np.uint8(hue_factor * 255)``. numpy 2 refuses to convert a negative
Python integer to ``uint8`` (``OverflowError: Python integer -20 out of
bounds for uint8``), so every colour jitter with a hue range, e.g. the
SimCLR / MoCo v2 / BYOL augmentations of the stock mmpretrain recipes,
fails on about half of its samples. numpy 1 wrapped the value modulo 256;
:func:`fix_mmcv_adjust_hue_numpy2` installs the same algorithm with the
wrap-around written out. It can be deleted the day mmcv fixes it.
"""
from typing import Optional

import numpy as np

__all__ = ['fix_mmcv_adjust_hue_numpy2', 'adjust_hue']


def adjust_hue(img: np.ndarray,
               hue_factor: float,
               backend: Optional[str] = None) -> np.ndarray:
    """``mmcv.adjust_hue`` with the uint8 wrap-around made explicit.

    Args:
        img (ndarray): Image to be adjusted (BGR).
        hue_factor (float): Shift of the hue channel, in [-0.5, 0.5].
        backend (str, optional): ``'cv2'`` or ``'pillow'``; None uses
            mmcv's global ``imread_backend``. Defaults to None.

    Returns:
        ndarray: Hue adjusted image.
    """
    import cv2
    from mmcv.image import io as mmcv_io
    from PIL import Image

    if backend is None:
        backend = mmcv_io.imread_backend
    if backend not in ('cv2', 'pillow'):
        raise ValueError(f'backend: {backend} is not supported.'
                         f"Supported backends are 'cv2', 'pillow'")
    if not (-0.5 <= hue_factor <= 0.5):
        raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
    if not (isinstance(img, np.ndarray) and (img.ndim in {2, 3})):
        raise TypeError('img should be ndarray with dim=[2 or 3].')
    shift = np.uint8(int(hue_factor * 255) % 256)
    if backend == 'pillow':
        assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
        pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
        input_mode = pil_image.mode
        if input_mode in {'L', '1', 'I', 'F'}:
            return pil_image
        h, s, v = pil_image.convert('HSV').split()
        np_h = np.array(h, dtype=np.uint8)
        with np.errstate(over='ignore'):
            np_h += shift
        h = Image.fromarray(np_h, 'L')
        pil_image = Image.merge('HSV', (h, s, v)).convert(input_mode)
        return np.array(pil_image, dtype=img.dtype)[..., ::-1]
    dtype = img.dtype
    img = img.astype(np.uint8)
    hsv_img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL)
    h, s, v = cv2.split(hsv_img)
    h = h.astype(np.uint8)
    with np.errstate(over='ignore'):
        h += shift
    hsv_img = cv2.merge([h, s, v])
    return cv2.cvtColor(hsv_img, cv2.COLOR_HSV2BGR_FULL).astype(dtype)


def fix_mmcv_adjust_hue_numpy2() -> bool:
    """Replace ``mmcv.adjust_hue`` by :func:`adjust_hue` under numpy >= 2.

    Patches ``mmcv.adjust_hue``, ``mmcv.image.adjust_hue`` and
    ``mmcv.image.photometric.adjust_hue`` (callers such as mmpretrain's
    ``ColorJitter`` look the function up on ``mmcv`` at call time).
    Idempotent; a no-op under numpy 1 or without mmcv.

    Returns:
        bool: Whether the function was replaced by this call.
    """
    if int(np.__version__.split('.')[0]) < 2:
        return False
    try:
        import mmcv
        import mmcv.image
        import mmcv.image.photometric as photometric
    except ImportError:
        return False
    if photometric.adjust_hue is adjust_hue:
        return False
    for module in (mmcv, mmcv.image, photometric):
        if hasattr(module, 'adjust_hue'):
            module.adjust_hue = adjust_hue
    return True
