"""Class-id maps -> the network's semantic map (one-hot, don't-care, instance boundaries)."""

from __future__ import annotations

import numpy as np

from cocosnet_tf.data.kinds import POSE_CHANNELS
from cocosnet_tf.fileio import DataError


def instance_boundaries(instance: np.ndarray) -> np.ndarray:
    """pix2pixHD edge channel: 1 where a pixel's instance id differs from a 4-neighbour's."""
    edge = np.zeros(instance.shape, dtype=bool)
    horizontal = instance[:, 1:] != instance[:, :-1]
    vertical = instance[1:, :] != instance[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge.astype(np.float32)


def semantic_map(
    ids: np.ndarray,
    label_nc: int,
    *,
    dontcare_id: int | None = None,
    contain_dontcare_label: bool = False,
    instance: np.ndarray | None = None,
    source: str = "label map",
) -> np.ndarray:
    """One-hot [H, W, label_nc (+1 don't-care) (+1 boundary)] float32 from class ids.

    Pixels equal to `dontcare_id` go to the extra don't-care channel when the config has
    one, and to no channel (all zeros) otherwise. Any other id outside [0, label_nc) is
    an error naming `source`, the id and the allowed range.
    """
    ids = np.asarray(ids).astype(np.int64)
    dontcare = ids == dontcare_id if dontcare_id is not None else np.zeros(ids.shape, bool)
    bad = (~dontcare) & ((ids < 0) | (ids >= label_nc))
    if bad.any():
        found = np.unique(ids[bad])
        raise DataError(
            f"{source}: label ids {found[:10].tolist()} are outside 0..{label_nc - 1} "
            f"(data.label_nc={label_nc}"
            + (f", don't-care id {dontcare_id}" if dontcare_id is not None else "")
            + "); raise data.label_nc or set data.segmentation.dontcare_id"
        )
    channels = label_nc + int(contain_dontcare_label)
    onehot = np.zeros(ids.shape + (channels,), dtype=np.float32)
    valid = ~dontcare
    rows, cols = np.nonzero(valid)
    onehot[rows, cols, ids[valid]] = 1.0
    if contain_dontcare_label:
        onehot[..., label_nc] = dontcare
    if instance is not None:
        onehot = np.concatenate([onehot, instance_boundaries(instance)[..., None]], axis=-1)
    return onehot


def palette(n: int) -> np.ndarray:
    """A fixed, well-spread colour per class id (the PASCAL VOC bit-interleaving scheme)."""
    colours = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    return colours


def colourise(semantic):
    """A semantic map [..., H, W, C] (array or tensor) pictured as an RGB image in [-1, 1],
    a tf.Tensor: the picture previews show and the spatially-correlative loss reads.

    One channel: an edge map, white on black. POSE_CHANNELS: a pose map, its RGB skeleton.
    Otherwise: one-hot classes coloured by `palette` (the first channel wins, so class
    colours hide the instance-boundary channel); a pixel of no class has argmax 0, and
    class 0's colour is black too.
    """
    # imported here: the data modules load without TensorFlow (every command's --help)
    import tensorflow as tf

    semantic = tf.convert_to_tensor(semantic)
    channels = semantic.shape[-1]
    if channels == 1:
        rgb = tf.repeat(tf.clip_by_value(semantic, 0.0, 1.0), 3, axis=-1)
    elif channels == POSE_CHANNELS:
        rgb = tf.clip_by_value(semantic[..., :3], 0.0, 1.0)
    else:
        rgb = tf.gather(tf.constant(palette(channels) / 255.0, semantic.dtype), tf.argmax(semantic, axis=-1))
    return rgb * 2.0 - 1.0
