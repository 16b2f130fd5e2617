"""STL-10 binary reader: orientation of the column-major planes, labels 1..10 -> 0..9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scl.data.errors import DataError
from scl.data.stl10 import read_stl10, read_stl10_images

S = 96
NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def offset(image: int, channel: int, row: int, col: int) -> int:
    """Byte position in <split>_X.bin: images, then channels, then 96x96 planes in column-major order."""
    return image * 3 * S * S + channel * S * S + col * S + row


def write_split(folder: Path, split: str, pixels: list[tuple[int, int, int, int, int]], n: int,
                labels: list[int]) -> None:
    raw = np.zeros(n * 3 * S * S, np.uint8)
    for image, channel, row, col, value in pixels:
        raw[offset(image, channel, row, col)] = value
    (folder / f"{split}_X.bin").write_bytes(raw.tobytes())
    (folder / f"{split}_y.bin").write_bytes(bytes(labels))


@pytest.fixture
def stl(tmp_path) -> Path:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "class_names.txt").write_text("\n".join(NAMES) + "\n")
    # 4 images in all: 3 train + 1 test, each with a few marked pixels.
    write_split(folder, "train", [(0, 0, 0, 5, 255), (1, 1, 40, 2, 77), (2, 2, 95, 0, 9)], 3, [1, 10, 5])
    write_split(folder, "test", [(0, 0, 3, 90, 123)], 1, [7])
    return folder


def test_stl10_orientation_and_labels(stl):
    data = read_stl10(stl)
    x = data.images
    assert x.shape == (4, 96, 96, 3) and x.dtype == np.uint8
    # (image, row, col, channel) exactly where written; the transposed spot stays empty.
    assert x[0, 0, 5, 0] == 255 and x[0, 5, 0, 0] == 0
    assert x[1, 40, 2, 1] == 77 and x[1, 2, 40, 1] == 0
    assert x[2, 95, 0, 2] == 9
    assert x[3, 3, 90, 0] == 123  # test images follow the train images
    assert int(x.astype(np.int64).sum()) == 255 + 77 + 9 + 123
    assert data.labels.tolist() == [0, 9, 4, 6] and data.labels.dtype == np.int64
    assert data.class_names == NAMES


def test_official_reader_transpose(stl):
    raw = np.fromfile(stl / "train_X.bin", np.uint8).reshape(-1, 3, 96, 96)
    assert np.array_equal(read_stl10_images(stl / "train_X.bin"), np.transpose(raw, (0, 3, 2, 1)))


def test_stl10_truncated_and_bad_labels(stl):
    (stl / "test_X.bin").write_bytes((stl / "test_X.bin").read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated"):
        read_stl10(stl)
    with pytest.raises(DataError, match="outside 1..10"):
        (stl / "train_y.bin").write_bytes(bytes([0, 1, 2]))
        read_stl10(stl, splits=("train",))
    (stl / "train_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DataError, match="2 labels for 3 images"):
        read_stl10(stl, splits=("train",))
    (stl / "class_names.txt").unlink()
    with pytest.raises(DataError, match="class_names.txt does not exist"):
        read_stl10(stl)
