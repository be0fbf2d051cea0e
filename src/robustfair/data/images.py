"""Decoding one image file into a uint8 [C, H, W] array (Pillow, imported lazily)."""

from __future__ import annotations

import io
import os

import numpy as np

from robustfair.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})


def decode_image(source: str | os.PathLike | bytes, *, channels: int = 3, size: int | None = None) -> np.ndarray:
    """uint8 [C, H, W] pixels of an image file or its bytes.

    channels: 3 (RGB) or 1 (grayscale). size: None keeps the native size; an int resizes
    the shorter side to `size` (bilinear, antialiased) and centre-crops to size x size,
    the usual evaluation transform for ImageNet-style folders.
    """
    from PIL import Image, UnidentifiedImageError

    mode = {3: "RGB", 1: "L"}.get(channels)
    if mode is None:
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(stream) as img:
            img = img.convert(mode)
            if size is not None:
                img = _resize_center_crop(img, size)
            pixels = np.asarray(img, dtype=np.uint8)
    except MemoryError:
        raise
    except Exception as err:  # Pillow signals a bad file in many ways (OSError, SyntaxError, bomb, ...)
        where = "image bytes" if stream is not source else str(source)
        if isinstance(err, Image.DecompressionBombError):
            raise DataError(f"{where}: image too large to decode safely ({' '.join(str(err).split())})") from None
        if isinstance(err, OSError) and err.errno is not None and not isinstance(err, UnidentifiedImageError):
            raise  # the disk or the file system, not the image
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"cannot decode {where}: {detail}") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _resize_center_crop(img, size: int):
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))
