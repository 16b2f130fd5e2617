"""IDX files (MNIST / Fashion-MNIST), plain or gzip-compressed, and the Fashion-MNIST loader.

IDX layout: 2 zero bytes, a dtype code, the number of dimensions d, then d big-endian
uint32 sizes, then the data in C order (big-endian for multi-byte types).

Fashion-MNIST = train (60,000) + test (10,000) = 70,000 28x28 grayscale images. Sources,
in order:
  1. Debian's ``dataset-fashion-mnist`` files in /usr/share/datasets/fashion-mnist. Debian
     recompressed the .gz files, so the upstream *gz* md5s do not apply to them;
  2. the upstream .gz files under raw_dir/fashion-mnist, downloaded from the mirror and
     checked against the upstream gz md5s (as torchvision does).
Either way the *decompressed* IDX bytes are checked against pinned sha256s (identical for
both sources), plus magic numbers and shapes, so the arrays are the upstream ones.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from scl.data.download import Fetch, Resource, ensure_file
from scl.data.errors import ChecksumError, DataError
from scl.data.prepared import PreparedData

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FOLDER = "fashion-mnist"  # under raw_dir
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_SPLITS = {"train": 60_000, "t10k": 10_000}  # file prefix -> number of images

#: Upstream .gz md5s (torchvision's list), valid for the files from the mirror only.
FASHION_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
#: sha256 of the decompressed IDX files; the same for the upstream and the Debian copies.
FASHION_IDX_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_RESOURCES = tuple(
    Resource(f"{FASHION_FOLDER}/{name}", (FASHION_MIRROR + name,), md5) for name, md5 in FASHION_GZ_MD5.items()
)


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file; `name` only appears in errors."""
    fix = f"Fix: delete {name} and rerun to fetch it again, or place a correct copy there by hand."
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{name} is not an IDX file (magic bytes {data[:4].hex()}). {fix}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated inside its IDX header. {fix}")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{name} holds {len(data) - header} data bytes but its IDX header {shape} needs {expected}: "
            f"the file is truncated or corrupt. {fix}"
        )
    # Native byte order, so later arithmetic does not pay for byte swaps.
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_file_bytes(path: str | os.PathLike) -> bytes:
    """The decompressed content of an IDX file; gzip is detected by its magic, not the name."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(
            f"{path} is a truncated or corrupt gzip file ({e}). Fix: delete it and rerun to download it again, "
            f"or place a correct copy there by hand."
        ) from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (optionally .gz) as an array of its declared shape and type."""
    return read_idx_bytes(read_idx_file_bytes(path), str(path))


def _check_content(path: Path, data: bytes, expected_sha256: str | None) -> str:
    actual = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and actual != expected_sha256:
        raise ChecksumError(
            f"decompressed content of {path} has sha256 {actual}, expected {expected_sha256}: it is not the "
            f"upstream Fashion-MNIST file. Fix: delete it and rerun, or place the upstream file there by hand."
        )
    return actual


def read_fashion_mnist(
    folder: str | os.PathLike,
    splits: dict[str, int] | None = None,
    sha256: dict[str, str] | None = FASHION_IDX_SHA256,
    provenance: dict | None = None,
) -> PreparedData:
    """Fashion-MNIST train + test from `<folder>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`.

    `splits` maps file prefix -> expected image count (default 60,000 + 10,000); `sha256`
    pins the decompressed files (None skips that check, for test files). The sha256s found
    are written into `provenance["files"]` when given.
    """
    folder = Path(folder)
    splits = FASHION_SPLITS if splits is None else splits
    images, labels = [], []
    for prefix, count in splits.items():
        arrays = {}
        for kind, ndim in (("images-idx3", 3), ("labels-idx1", 1)):
            name = f"{prefix}-{kind}-ubyte.gz"
            path = folder / name
            if not path.exists():
                raise DataError(f"{path} does not exist. Fix: rerun `scl prepare fashion` with downloading on, "
                                f"or place the upstream file there by hand ({FASHION_MIRROR}{name}).")
            data = read_idx_file_bytes(path)
            digest = _check_content(path, data, None if sha256 is None else sha256.get(name))
            if provenance is not None:
                provenance.setdefault("files", {})[str(path)] = {"decompressed_sha256": digest}
            arr = read_idx_bytes(data, str(path))
            want = (count, 28, 28) if ndim == 3 else (count,)
            if arr.shape != want or arr.dtype != np.uint8:
                raise DataError(f"{path} holds {arr.dtype} {arr.shape}, expected uint8 {want}. Fix: delete it and "
                                f"rerun, or place the upstream file there by hand.")
            arrays[kind] = arr
        images.append(arrays["images-idx3"])
        labels.append(arrays["labels-idx1"])
    y = np.concatenate(labels).astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= len(FASHION_CLASSES)):
        raise DataError(f"Fashion-MNIST labels in {folder} are outside 0..9; the files are corrupt")
    return PreparedData(np.concatenate(images)[..., None], y, list(FASHION_CLASSES))


def fashion_source(raw_dir: str | os.PathLike, download: bool = True, fetch: Fetch | None = None,
                   debian_dir: str | os.PathLike | None = DEBIAN_FASHION_DIR,
                   resources: tuple[Resource, ...] = FASHION_RESOURCES) -> tuple[Path, str]:
    """The folder holding the four .gz files, and where it came from ("debian" or "upstream").

    Debian's copy is used when all four files are there (no download, no gz md5: Debian's
    gzip bytes differ); otherwise the upstream files are fetched into raw_dir and md5-checked.
    """
    if debian_dir is not None:
        debian_dir = Path(debian_dir)
        if all((debian_dir / Path(r.filename).name).is_file() for r in resources):
            return debian_dir, "debian"
    try:
        paths = [ensure_file(r, raw_dir, download, fetch) for r in resources]
    except DataError as e:
        if debian_dir is None:
            raise
        # machines without internet access may still reach the Debian mirrors
        raise DataError(f"{e} Or, on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` puts the files "
                        f"in {debian_dir}, where `scl prepare fashion` finds them without a download.") from e
    return paths[0].parent, "upstream"
