import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.discriminator import MultiscaleDiscriminator, downsample
from cocosnet_tf.layers.blocks import conv
from cocosnet_tf.layers.norms import l2_normalize_channels
from cocosnet_tf.layers.spectral import SpectralConv
from cocosnet_tf.models.cocosnet.generator import Generator


def test_spectral_conv_divides_by_the_largest_singular_value_and_keeps_the_kernel():
    layer = SpectralConv(conv(6, 3))
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 8, 8, 4)).astype(np.float32))
    layer(x)
    # Prescribed singular values with a clear gap, so 50 power iterations converge whatever
    # the random draw (a random kernel's top two can be within 3% of each other).
    shape = layer.layer.kernel.shape
    left, _, right = np.linalg.svd(np.random.default_rng(1).normal(size=(6, 3 * 3 * 4)), full_matrices=False)
    matrix = left @ np.diag([2.0, 1.0, 0.8, 0.6, 0.4, 0.2]) @ right
    layer.layer.kernel.assign(np.transpose(matrix.reshape(6, 4, 3, 3), [2, 3, 1, 0]).astype(np.float32))
    kernel = layer.layer.kernel.numpy().copy()
    assert kernel.shape == tuple(shape)
    u = layer.u.numpy().copy()
    layer(x)
    np.testing.assert_array_equal(layer.u.numpy(), u)  # a forward pass does not iterate
    for _ in range(50):
        layer.power_iteration()
    y = layer(x)
    np.testing.assert_array_equal(layer.layer.kernel.numpy(), kernel)  # the original weight stays
    matrix = np.transpose(kernel, [3, 2, 0, 1]).reshape(6, -1)
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    assert abs(sigma - 2.0) < 1e-5
    expected = tf.nn.conv2d(x, kernel / sigma, 1, "VALID")
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    assert np.abs(tape.gradient(loss, layer.layer.kernel).numpy()).sum() > 0


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_generator_shapes_and_range(size):
    g = Generator(semantic_nc=5, corr_levels=3, ngf=4)
    label = tf.random.uniform([2, *size, 5])
    warps = [tf.random.uniform([2, size[0] // f, size[1] // f, 3], -1, 1) for f in (4, 2, 1)]
    out = g(label, warps)
    assert out.shape == (2, *size, 3)
    assert np.all(np.abs(out.numpy()) <= 1)
    with pytest.raises(ValueError, match="3 warps"):
        g(label, warps[:2])


def test_discriminator_returns_every_intermediate_output_at_two_scales():
    d = MultiscaleDiscriminator(ndf=8, discriminator_layers=4, num_discriminators=2)
    outs = d(tf.random.uniform([2, 64, 64, 6]))
    assert len(outs) == 2 and all(len(o) == 5 for o in outs)
    # 64 -> 32 -> 16 -> 8 (stride 2) -> 7 (stride 1, 4x4, pad 1) -> 6 (logit)
    assert [o.shape[1] for o in outs[0]] == [32, 16, 8, 7, 6]
    assert [o.shape[-1] for o in outs[0]] == [8, 16, 32, 64, 1]
    assert outs[1][0].shape[1] == 16


def test_downsample_excludes_padding_like_torch_count_include_pad_false():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out = downsample(tf.constant(x)).numpy()[0, ..., 0]
    # torch windows at stride 2, padding 1: rows/cols {-1,0,1} and {1,2,3}
    expected = np.array([[np.mean(x[0, :2, :2]), np.mean(x[0, :2, 1:4])],
                         [np.mean(x[0, 1:4, :2]), np.mean(x[0, 1:4, 1:4])]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_model_spade_hidden_sets_every_spade_of_the_generator_and_both_alignment_unets():
    from cocosnet_tf.config import load_config
    from cocosnet_tf.models.cocosnet.model import CoCosNet

    config = load_config(None, ["data.crop_size=[64,64]", "model.nef=4", "model.ngf=4", "model.ndf=4",
                                "model.corr_levels=3", "model.spade_hidden=6"])
    model = CoCosNet(config, config.data.semantic_nc)
    model.build_inference(64, 64)
    shared = [v for v in model.weights if "mlp_shared" in v.path and v.path.endswith("kernel")]
    for owner, blocks in (("adaptive_model_seg/", 3), ("adaptive_model_img/", 3), ("generator/", 7)):
        # every SPADE of every block (2, or 3 with a learned shortcut)
        widths = [v.shape[-1] for v in shared if owner in v.path]
        assert len(widths) >= 2 * blocks and set(widths) == {6}, (owner, widths)
    # a saved layer rebuilds with its width
    block = model.generator.up_3
    assert type(block).from_config(block.get_config()).hidden == 6
    assert model.correspondence.get_config()["spade_hidden"] == 6


def test_l2_normalisation_passes_no_gradient_through_a_zero_vector():
    # a constant input (an empty edge map) gives all-zero features after instance norm
    x = tf.constant(np.stack([np.zeros(6), np.arange(1.0, 7.0)])[None], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = l2_normalize_channels(x, centre=True)
        loss = tf.reduce_sum(y * tf.constant(np.random.default_rng(0).normal(size=(1, 2, 6))))
    grad = tape.gradient(loss, x).numpy()
    assert np.all(np.isfinite(grad)) and np.all(grad[0, 0] == 0)
    assert np.abs(grad[0, 1]).max() > 0.01  # the other position still learns


@pytest.mark.parametrize("centre", [False, True])
def test_l2_normalisation_and_its_output_based_gradient_equal_the_plain_formula(centre):
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 5, 4, 6)), tf.float64)
    g = tf.constant(rng.normal(size=(2, 5, 4, 6)), tf.float64)

    def plain(x):
        if centre:
            x = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        return x / (tf.norm(x, axis=-1, keepdims=True) + 1e-10)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = l2_normalize_channels(x, centre), plain(x)
        loss_ours, loss_theirs = tf.reduce_sum(ours * g), tf.reduce_sum(theirs * g)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(ours.numpy(), axis=-1), 1.0, atol=1e-9)
    got, expected = tape.gradient(loss_ours, x).numpy(), tape.gradient(loss_theirs, x).numpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_every_layer_runs_with_the_runtime_section_it_was_made_with():
    from cocosnet_tf.config import RuntimeConfig, load_config
    from cocosnet_tf.models.cocosnet.model import CoCosNet
    from cocosnet_tf.runtime import current_runtime

    config = load_config(None, ["runtime.chunk=77", "runtime.recompute=true", "runtime.recompute_band=99"])
    model = CoCosNet(config, config.data.semantic_nc)  # the layers, not yet their variables
    correspondence = model.correspondence
    users = [correspondence, correspondence.unet_label, correspondence.unet_exemplar, *correspondence.patch_match,
             model.generator]
    assert all(layer.runtime == RuntimeConfig(chunk=77, recompute=True, recompute_band=99) for layer in users)
    # outside the model's construction, layers take the section's defaults
    assert current_runtime() == RuntimeConfig() and Generator(5).runtime == RuntimeConfig()
