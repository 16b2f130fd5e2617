"""scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set): 1,797 images.

Bundled with scikit-learn, so it needs no download: the smallest dataset the whole
pipeline runs on. Pixel values are counts 0..16 (of a 4x4 block of the 32x32 bitmap);
they are mapped to uint8 0..255 as round(value * 255 / 16), half up.
"""

from __future__ import annotations

import numpy as np

from scl.data.prepared import PreparedData


def read_digits() -> PreparedData:
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # 1797 x 8 x 8, 0..16
    images = np.floor(values * 255.0 / 16.0 + 0.5).astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    return PreparedData(images, labels, [str(int(n)) for n in bunch.target_names])
