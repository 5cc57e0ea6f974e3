"""Images named by a CSV, read once into one uint8 array at the target size.

PNG and JPEG are read with Pillow; DICOM with pydicom: the stored values are rescaled
(``RescaleSlope``, ``RescaleIntercept``), windowed (``--window C,W`` or the file's
``WindowCenter``/``WindowWidth``; without either, the image's own minimum to maximum), and
``MONOCHROME1`` images (where higher values are darker) are inverted, so every image ends as
8-bit grey or RGB with bright meaning dense. Each image is then resized to the target size
and kept as uint8 ``(C, H, W)``: memory is bounded by ``N x C x size x size`` bytes, however
large the files are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from swarm.errors import DataError

#: called as ``progress(done, total)`` while a folder loads
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageOptions:
    """How images are brought to one shape: ``size`` (square; ``None``: the first image's),
    ``channels`` (1 or 3; ``None``: the first image's) and the DICOM ``window`` (centre, width)."""

    size: int | None = None
    channels: int | None = None
    window: tuple[float, float] | None = None


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    with open(path, "rb") as fh:
        head = fh.read(132)
    return head[128:132] == b"DICM"


def _first(value: object) -> float:
    """A DICOM value that may be multi-valued: its first number."""
    try:
        return float(value[0])  # type: ignore[index]
    except TypeError:
        return float(value)  # type: ignore[arg-type]


def _dicom_pixels(path: Path, window: tuple[float, float] | None) -> np.ndarray:
    """Read one DICOM image as uint8 ``(H, W)`` (grey) or ``(H, W, 3)`` (colour)."""
    import pydicom

    ds = pydicom.dcmread(path)
    raw = ds.pixel_array
    if raw.ndim == 3 and raw.shape[-1] == 3 and getattr(ds, "SamplesPerPixel", 1) == 3:
        return raw.astype(np.uint8) if raw.dtype == np.uint8 else _stretch(raw.astype(np.float64))
    if raw.ndim != 2:
        raise ValueError(f"{raw.ndim}-D pixel data (multi-frame); one 2D image per file is supported")
    values = raw.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) \
        + float(getattr(ds, "RescaleIntercept", 0) or 0)
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        window = (_first(ds.WindowCenter), _first(ds.WindowWidth))
    if window is not None and window[1] > 0:
        low = window[0] - window[1] / 2
        grey = np.clip((values - low) / window[1], 0.0, 1.0) * 255.0
    else:
        grey = _stretch(values).astype(np.float64)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        grey = 255.0 - grey
    return np.round(grey).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) / (high - low) * 255.0).astype(np.uint8)


def _pillow_pixels(path: Path) -> np.ndarray:
    """Read one PNG/JPEG (any Pillow format) as uint8 ``(H, W)`` or ``(H, W, 3)``."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            values = np.asarray(img, dtype=np.float64)
            return _stretch(values) if values.max() > 255 else values.astype(np.uint8)
        if img.mode in ("L", "1"):
            return np.asarray(img.convert("L"))
        return np.asarray(img.convert("RGB"))


def _fit(pixels: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """Resize ``(H, W[, 3])`` uint8 to ``size`` and return ``(channels, H, W)``."""
    from PIL import Image

    img = Image.fromarray(pixels)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    arr = np.asarray(img)
    return arr[None, :, :] if channels == 1 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def read_pixels(path: Path, window: tuple[float, float] | None = None) -> np.ndarray:
    """One image file as uint8 ``(H, W)`` or ``(H, W, 3)``, whatever its format.

    Raises
    ------
    DataError
        If the file is missing, not an image, or a DICOM without decodable pixel data.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return _dicom_pixels(path, window) if _is_dicom(path) else _pillow_pixels(path)
    except DataError:
        raise
    except Exception as exc:  # Pillow and pydicom raise many types for a corrupt file
        text = str(exc).strip().splitlines()
        raise DataError(f"{path}: not a readable image ({text[0] if text else type(exc).__name__})") from exc


def load_images(paths: list[Path], where: Callable[[int], str], options: ImageOptions,
                progress: ProgressFn | None = None) -> np.ndarray:
    """Read every image into one uint8 ``(N, C, H, W)`` array at the target size.

    ``where(i)`` names row ``i`` in errors (``"labels.csv, row 7"``). The array is allocated
    once, after the first image fixes the shape.

    Raises
    ------
    DataError
        For the first image that cannot be read, naming the row and the file.
    """
    out: np.ndarray | None = None
    for i, path in enumerate(paths):
        try:
            pixels = read_pixels(path, options.window)
        except DataError as err:
            raise DataError(f"{where(i)}: {err}") from err
        if out is None:
            channels = options.channels or (3 if pixels.ndim == 3 else 1)
            size = (options.size, options.size) if options.size else pixels.shape[:2]
            out = np.empty((len(paths), channels, *size), dtype=np.uint8)
        out[i] = _fit(pixels, out.shape[2:], out.shape[1])
        if progress is not None:
            progress(i + 1, len(paths))
    if out is None:
        raise DataError("no images to load")
    return out
