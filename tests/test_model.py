import keras
import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.config import load_config
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.losses import vgg
from cocosnet_tf.models.cocosnet.model import CoCosNet

SIZE = 64  # the smallest crop the config allows
TINY = [f"data.crop_size=[{SIZE},{SIZE}]", "model.ngf=4", "model.ndf=4", "model.nef=4", "model.corr_levels=3",
        "model.patchmatch_iterations=1", "train.batch_size=2"]


def tiny_model(*overrides, vgg_model=None):
    config = load_config("configs/demo.yaml", TINY + list(overrides))
    model = CoCosNet(config, config.data.semantic_nc)
    model.build_all(SIZE, SIZE)
    model.compile(vgg_model=vgg_model)
    batch = next(iter(build_dataset(config.data, 2)))
    return model, {k: v for k, v in batch.items()}


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(variables, before):
    return [not np.array_equal(v.numpy(), b) for v, b in zip(variables, before)]


def test_each_step_changes_only_its_own_side():
    model, batch = tiny_model()
    d_vars = model.discriminator.variables
    g_vars = model.correspondence.variables + model.generator.variables
    d_before, g_before = snapshot(d_vars), snapshot(g_vars)
    train = {k: tf.cast(batch[k], tf.float32) for k in ("label", "image", "exemplar", "exemplar_label", "self_ref", "flow",
                                                    "flow_mask")}
    grads, losses, fake = model._generator_gradients(train, tf.reduce_sum(train["self_ref"]))
    model.g_optimizer.apply_gradients(zip(grads, model.generator_variables()))
    assert not any(changed(d_vars, d_before)), "the generator step touched discriminator variables"
    trainable = {id(v) for v in model.generator_variables()}
    moved = [c for v, c in zip(g_vars, changed(g_vars, g_before)) if id(v) in trainable]
    assert np.mean(moved) > 0.9
    g_after = snapshot(g_vars)
    grads, _ = model._discriminator_gradients(train, fake)
    model.d_optimizer.apply_gradients(zip(grads, model.discriminator.trainable_variables))
    assert not any(changed(g_vars, g_after)), "the discriminator step touched generator-side variables"
    # every kernel moves; the logit biases may not: while every hinge term is active their
    # gradient (fake count - real count) / n is exactly zero
    kernels = {id(v) for v in model.discriminator.trainable_variables if "kernel" in v.path}
    moved = [c for v, c in zip(d_vars, changed(d_vars, d_before)) if id(v) in kernels]
    assert len(moved) == len(kernels) > 0 and all(moved)


def test_a_training_step_iterates_the_discriminators_spectral_norm_twice_and_the_generators_once():
    """As PyTorch's hooks: the generator step's forward runs the correspondence, the
    generator and the discriminator, the discriminator step the discriminator again."""
    from cocosnet_tf.layers.spectral import SpectralConv

    model, batch = tiny_model()
    # zero gradients: Adam leaves every weight as it is, so each iteration sees the same matrix
    zero = tf.constant(0.0)
    model._generator_gradients = lambda b, total: (
        [tf.zeros_like(v) for v in model.generator_variables()], {"total": zero}, b["image"])
    model._discriminator_gradients = lambda b, fake: (
        [tf.zeros_like(v) for v in model.discriminator.trainable_variables], {"real": zero, "fake": zero})

    def spectral(net):
        layers = [sub for sub in net._flatten_layers() if isinstance(sub, SpectralConv)]
        assert layers
        return [(sub, sub.u.numpy().astype(np.float64), sub.weight_matrix().numpy().astype(np.float64))
                for sub in layers]

    before = {"discriminator": (spectral(model.discriminator), 2), "generator": (spectral(model.generator), 1)}
    model.train_step(batch)
    for net, (layers, iterations) in before.items():
        for layer, u, matrix in layers:
            for _ in range(iterations):
                v = matrix.T @ u
                v /= np.linalg.norm(v)
                u = matrix @ v
                u /= np.linalg.norm(u)
            np.testing.assert_allclose(layer.u.numpy(), u, rtol=1e-4, atol=1e-5, err_msg=f"{net}: {layer.path}")


def test_checkpoint_holds_every_variable(tmp_path):
    """Layers kept in Python lists (PatchMatch levels, projections, discriminator
    scales) were once invisible to tf.train.Checkpoint and restored as random."""
    model, _ = tiny_model()
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    restored, _ = tiny_model()
    for v in restored.variables:  # not the initialisation: that may be seeded alike
        if tf.as_dtype(v.dtype).is_floating:
            v.assign(tf.random.uniform(v.shape, dtype=v.dtype) + 5.0)
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    for v, w in zip(restored.variables, model.variables):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=v.path)


def test_every_loss_is_reported_and_finite_with_vgg_losses():
    model, batch = tiny_model("losses.vgg=10", "losses.perceptual=0.001", "losses.contextual=10",
                              "losses.reconstruction=10", vgg_model=vgg.build_vgg(None))
    vectors = [v for v in model.variables if v.path.endswith(("/u", "/v"))]
    before = snapshot(vectors)
    out = tf.function(model.train_step)(batch)
    # the step runs spectral norm's power iterations, on both sides
    sides = ("correspondence/", "generator/", "discriminator/")
    assert all(any(side in v.path for v in vectors) for side in sides)
    assert all(changed(vectors, before))
    expected = {"G_gan", "G_gan_feat", "G_vgg", "G_perceptual", "G_contextual", "G_warp_self", "G_warp_cycle",
                "G_alignment", "G_flow", "G_reconstruction", "G_total", "D_real", "D_fake"}
    assert set(out) == expected
    values = {k: float(v) for k, v in out.items()}
    assert all(np.isfinite(v) for v in values.values()), values
    parts = sum(v for k, v in values.items() if k.startswith("G_") and k != "G_total")
    assert values["G_total"] == pytest.approx(parts, rel=1e-5)


@pytest.mark.parametrize("loss", ["warp_self", "reconstruction"])
def test_target_losses_count_only_self_reference_pairs(loss):
    model, batch = tiny_model("losses.reconstruction=100")
    train = {k: tf.cast(batch[k], tf.float32) for k in ("label", "image", "exemplar", "exemplar_label", "self_ref", "flow",
                                                    "flow_mask")}
    train["self_ref"] = tf.constant([1.0, 0.0])
    first, fake = model.generator_losses(train, tf.constant(1.0), training=False)
    assert float(first[loss]) > 0
    if loss == "reconstruction":  # the L1 of the self-reference pair alone, weighted
        expected = 100 * np.mean(np.abs(fake.numpy()[0] - train["image"].numpy()[0]))
        assert float(first[loss]) == pytest.approx(expected, rel=1e-4)
    # changing the image of the pair that is not a self-reference leaves the loss alone
    other = dict(train, image=tf.concat([train["image"][:1], -train["image"][1:]], 0))
    second, _ = model.generator_losses(other, tf.constant(1.0), training=False)
    assert float(first[loss]) == pytest.approx(float(second[loss]), rel=1e-6)
    none = dict(train, self_ref=tf.zeros([2]))
    third, _ = model.generator_losses(none, tf.constant(0.0), training=False)
    assert float(third[loss]) == 0.0


def test_inference_outputs():
    model, batch = tiny_model()
    out = model(batch["label"], batch["exemplar"], batch["exemplar_label"])
    assert out["image"].shape == (2, SIZE, SIZE, 3)
    assert [w.shape[1] for w in out["warps"]] == [SIZE // 8, SIZE // 4, SIZE // 2]


def test_mixed_float16_step_keeps_the_correspondence_float32_and_is_finite():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model, batch = tiny_model("train.mixed_precision=mixed_float16")
        assert model.generator.compute_dtype == "float16"
        float16 = [layer.path for layer in model.correspondence._flatten_layers() if layer.compute_dtype != "float32"]
        assert not float16, f"float16 layers in the correspondence: {float16[:5]}"
        out = model(batch["label"], batch["exemplar"], batch["exemplar_label"])
        assert out["image"].dtype == tf.float32 and all(w.dtype == tf.float32 for w in out["warps"])
        losses = {k: float(v) for k, v in tf.function(model.train_step)(batch).items()}
        assert all(np.isfinite(v) for v in losses.values()), losses
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_fit_steps_both_sides_through_their_loss_scale_optimizers_under_mixed_float16():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        config = load_config("configs/demo.yaml", TINY + ["train.mixed_precision=mixed_float16"])
        model = CoCosNet(config, config.data.semantic_nc)
        with pytest.raises(ValueError, match="build_all"):
            model.compile()
        model.build_all(SIZE, SIZE)
        model.compile(d_optimizer=keras.optimizers.SGD(0.01))
        g, d = model.g_optimizer, model.d_optimizer
        assert isinstance(g, keras.optimizers.LossScaleOptimizer) and isinstance(d, keras.optimizers.LossScaleOptimizer)
        assert isinstance(d.inner_optimizer, keras.optimizers.SGD)
        sides = {"generator": model.generator.trainable_variables, "discriminator": model.discriminator.trainable_variables}
        before = {side: snapshot(variables) for side, variables in sides.items()}
        history = model.fit(build_dataset(config.data, 2), steps_per_epoch=2, shuffle=False, verbose=0).history
        assert {"G_total", "G_gan", "D_real", "D_fake"} <= set(history)
        assert all(np.isfinite(v) for values in history.values() for v in values), history
        # each step either moves a side's weights or, its scaled gradients overflowing
        # float16, is skipped and halves that side's loss scale (Keras' initial one is 2^15)
        for (side, variables), optimizer in zip(sides.items(), (g, d)):
            moved = any(changed(variables, before[side]))
            assert moved or float(optimizer.dynamic_scale) < 2.0 ** 15, f"fit neither stepped nor scaled the {side}"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_float64_policy_makes_every_network_and_output_float64():
    """float64 runs are the numerical checks' (tests/test_train_runs.py trains them)."""
    keras.mixed_precision.set_dtype_policy("float64")
    try:
        model, batch = tiny_model("train.mixed_precision=float64")
        layers = [layer for net in (model.correspondence, model.generator, model.discriminator)
                  for layer in net._flatten_layers()]
        assert {layer.compute_dtype for layer in layers} == {"float64"}
        assert {v.dtype for v in model.variables if "float" in v.dtype} == {"float64"}
        out = model(batch["label"], batch["exemplar"], batch["exemplar_label"])
        assert out["image"].dtype == tf.float64 and all(w.dtype == tf.float64 for w in out["warps"])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_learning_rates_fall_linearly_to_zero_over_the_decay_steps():
    model, _ = tiny_model("train.steps=10", "train.decay_steps=4", "train.lr=0.01")
    g, d = model.g_optimizer, model.d_optimizer
    for step, share in ((0, 1.0), (6, 1.0), (7, 0.75), (8, 0.5), (10, 0.0), (12, 0.0)):
        g.iterations.assign(step)
        d.iterations.assign(step)
        assert float(g.learning_rate) == pytest.approx(0.005 * share)
        assert float(d.learning_rate) == pytest.approx(0.02 * share)
    # more decay steps than steps: the rate falls over all of them
    model, _ = tiny_model("train.steps=4", "train.decay_steps=600", "train.lr=0.01")
    for step, share in ((0, 1.0), (2, 0.5), (4, 0.0)):
        model.g_optimizer.iterations.assign(step)
        assert float(model.g_optimizer.learning_rate) == pytest.approx(0.005 * share)


def test_init_gain_scales_every_networks_initial_weights():
    def kernel_std(model):
        return {name: np.std(np.concatenate([v.numpy().ravel() for v in net.weights if "kernel" in v.path]))
                for name, net in (("correspondence", model.correspondence), ("generator", model.generator),
                                  ("discriminator", model.discriminator))}

    official, large = (kernel_std(tiny_model(f"model.init_gain={gain}")[0]) for gain in (0.02, 1.0))
    for name in official:
        assert large[name] / official[name] == pytest.approx(50.0, rel=0.15), name
