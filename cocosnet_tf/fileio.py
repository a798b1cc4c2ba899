"""File helpers: atomic writes (of one file, or of several moved into place together) and
image reads that fail with the file's name."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DataError(ValueError):
    """A data file is missing, unreadable or inconsistent; the message names it."""


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or impossible."""


def require(ok: bool, key: str, message: str) -> None:
    """A ConfigError naming the config key `key` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 HxW or HxWx3 array as PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _open_image(path: str) -> Image.Image:
    if not os.path.isfile(path):
        raise DataError(f"{path}: file does not exist")
    try:
        img = Image.open(path)
        img.load()  # decode now, so that truncated files fail here and not later
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable or truncated image ({err})") from err
    return img


def read_rgb(path: str) -> np.ndarray:
    """uint8 [H, W, 3]; 16-bit and float greyscale photos are scaled, not clipped."""
    img = _open_image(path)
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        top = max(65535.0 if img.mode != "F" else 0.0, float(arr.max()), 1e-12)
        gray = np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"))


def read_label_ids(path: str) -> np.ndarray:
    """Integer class or instance ids [H, W] from a single-channel (or palette) image."""
    img = _open_image(path)
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img)
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise DataError(f"{path}: label map is a colour image; expected one channel of class ids")
        return arr[..., 0].astype(np.int64)
    if img.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(f"{path}: label map has mode {img.mode}; expected one channel of class ids")
    return np.asarray(img).astype(np.int64)


def list_images(folder: str) -> list[str]:
    """Image files under `folder` (recursive), as paths relative to it, sorted."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: folder does not exist")
    found = []
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                # keys use '/' on every OS, like the pair lists that name them
                found.append(os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/"))
    return sorted(found)


@contextmanager
def staged_directory(path: str, prefix: str = ".staging-") -> Iterator[str]:
    """An empty hidden folder beside `path` to write a whole directory into; it becomes
    `path` (one rename) only when the block ends without an error, else it is removed,
    with the parent folders made for it."""
    parent = os.path.dirname(os.path.abspath(path))
    created, folder = [], parent
    while not os.path.isdir(folder):  # deepest first
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError as err:
        raise DataError(f"{parent}: cannot write here ({err})") from err
    staged = os.path.join(tmp, os.path.basename(path))
    try:
        os.mkdir(staged)
        yield staged
        if os.path.exists(path):  # made by someone else meanwhile
            raise DataError(f"{path} appeared while it was being written; nothing was written")
        os.rename(staged, path)
        created = []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            try:
                os.rmdir(folder)
            except OSError:
                pass


class Staging:
    """Files written into a hidden folder inside `folder` and moved into place together by
    `commit`; leaving the `with` block without a commit removes them (and `folder`, if it
    was created here and is empty)."""

    def __init__(self, folder: str, prefix: str = ".staging-"):
        self.folder = folder or "."
        self.prefix = prefix
        self.created = not os.path.isdir(self.folder)
        self.files: list[tuple[str, str]] = []
        self.tmp = ""

    def __enter__(self) -> "Staging":
        try:
            os.makedirs(self.folder, exist_ok=True)
            self.tmp = tempfile.mkdtemp(prefix=self.prefix, dir=self.folder)
        except OSError as err:
            raise DataError(f"{self.folder}: cannot write the outputs here ({err})") from err
        return self

    def add(self, path: str, picture: np.ndarray) -> None:
        """Stage a uint8 picture as the PNG `path`."""
        self._stage(path, ".png", lambda tmp: save_png(tmp, picture))

    def add_text(self, path: str, text: str) -> None:
        self._stage(path, ".txt", lambda tmp: atomic_write_text(tmp, text))

    def _stage(self, path: str, suffix: str, write) -> None:
        tmp = os.path.join(self.tmp, f"{len(self.files)}{suffix}")
        try:
            write(tmp)
        except OSError as err:
            raise DataError(f"{self.folder}: cannot write the outputs here ({err})") from err
        self.files.append((tmp, path))

    def commit(self) -> None:
        for tmp, path in self.files:
            try:
                os.replace(tmp, path)
            except OSError as err:
                raise DataError(f"{path}: cannot write ({err})") from err
        self.files = []

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.created and exc[0] is not None:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass
