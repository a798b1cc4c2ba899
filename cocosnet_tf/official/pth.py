"""Reading official .pth files into {key: float32 array}, the released archive included.

The released DeepFashionHD `latest_net_Corr.pth` is a PyTorch zip archive into which
`latest_net_G.pth` and `latest_net_D.pth` were added as top-level entries; PyTorch
refuses it ("file in archive is not in a subdirectory"). Here such an archive is read
without its extra entries, and the embedded networks serve when their own files are
absent. Reading needs PyTorch (the `convert` extra); it is loaded with
`weights_only=True`, so a checkpoint cannot run code.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from cocosnet_tf.config import ConfigError

INSTALL_HINT = "pip install 'cocosnet-tf[convert]' (or any recent torch)"


class CheckpointFileError(ConfigError):
    """An official checkpoint file that is missing, unreadable or not a state dict."""


def _torch():
    try:
        import torch
    except ImportError as err:
        raise CheckpointFileError(f"reading official .pth checkpoints needs PyTorch, which is not installed: "
                                  f"{INSTALL_HINT}") from err
    return torch


def _archive_parts(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    """(the archive without top-level entries, {name: bytes} of those entries).

    A PyTorch zip keeps everything under one folder; files beside it are foreign."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        names = source.namelist()
        foreign = [n for n in names if "/" not in n.rstrip("/")]
        if not foreign:
            return data, {}
        cleaned = io.BytesIO()
        with zipfile.ZipFile(cleaned, "w", zipfile.ZIP_STORED) as target:
            for name in names:
                if name not in foreign:
                    target.writestr(name, source.read(name))
        return cleaned.getvalue(), {n: source.read(n) for n in foreign}


def _state_dict(data: bytes, label: str) -> dict[str, np.ndarray]:
    torch = _torch()
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError ... on bad files
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise CheckpointFileError(f"{label}: not a readable PyTorch checkpoint ({first})") from err
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointFileError(f"{label}: holds no state dict (a mapping of parameter names to tensors)")
    keys = list(loaded)
    # nn.DataParallel saves every key under "module."
    strip = len("module.") if keys and all(k.startswith("module.") for k in keys) else 0
    return {k[strip:]: v.detach().to(torch.float32).cpu().numpy() for k, v in loaded.items()}


def _parse(data: bytes, label: str) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """(state dict, {name: bytes} of other .pth files embedded in its archive)."""
    embedded = {}
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            data, embedded = _archive_parts(data)
        except zipfile.BadZipFile as err:
            raise CheckpointFileError(f"{label}: a damaged zip archive ({err})") from err
    return _state_dict(data, label), embedded


def read(path: str) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """(state dict of `path`, {name: bytes} of other .pth files embedded in its archive)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise CheckpointFileError(f"{path}: cannot be read ({err.strerror})") from err
    return _parse(data, path)


def read_networks(directory: str, epoch: str, networks: tuple[str, ...], optional: tuple[str, ...] = ()
                  ) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """{network: (where it was read, state dict)} from `<epoch>_net_<network>.pth` files.

    A network whose file is absent is taken from another file's archive when embedded
    there (the released archive); a network in `optional` may be missing altogether."""
    if not os.path.isdir(directory):
        raise CheckpointFileError(f"--checkpoint-dir {directory}: folder does not exist")
    found, embedded = {}, {}
    for network in networks:
        path = os.path.join(directory, f"{epoch}_net_{network}.pth")
        if os.path.isfile(path):
            state, inside = read(path)
            found[network] = (path, state)
            embedded.update({name: (path, data) for name, data in inside.items()})
    for network in networks:
        name = f"{epoch}_net_{network}.pth"
        if network not in found and name in embedded:
            archive, data = embedded[name]
            label = f"{archive} (embedded {name})"
            found[network] = (label, _parse(data, label)[0])
    missing = [n for n in networks if n not in found and n not in optional]
    if missing:
        names = ", ".join(f"{epoch}_net_{n}.pth" for n in missing)
        raise CheckpointFileError(f"--checkpoint-dir {directory}: {names} not found (nor embedded in another file)")
    return found
