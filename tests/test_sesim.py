"""The spatially-correlative loss (cocosnet_tf/losses/sesim.py): its maps, its distance,
LSeSim's contrastive training, its place in the model and its configuration."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import fetched

from cocosnet_tf.config import ConfigError, load_config
from cocosnet_tf.data.kinds import POSE_CHANNELS
from cocosnet_tf.data.labels import colourise, palette
from cocosnet_tf.losses import sesim
from cocosnet_tf.losses.vgg import MissingWeightsError, features
from cocosnet_tf.visualize import label_picture


def smooth_features(shape, seed):
    """Features with spatial structure: random noise blurred, so that nearby positions agree."""
    noise = tf.random.stateless_normal(shape, [seed, 1])
    return tf.nn.avg_pool2d(noise, 3, 1, "SAME")


def scene(size=64):
    """An RGB image [1, size, size, 3] in [-1, 1] of a few coloured shapes on a gradient, a
    recolouring of it (every region another colour, the same regions) and its regions'
    ids [size, size]."""
    y, x = np.mgrid[0:size, 0:size] / size
    regions = np.zeros([size, size], np.int64)
    regions[(x - 0.3) ** 2 + (y - 0.35) ** 2 < 0.04] = 1
    regions[(x > 0.55) & (x < 0.9) & (y > 0.2) & (y < 0.5)] = 2
    regions[(y > 0.65) & (x > 0.15) & (x < 0.75)] = 3
    regions[(np.abs(x - 0.8) + np.abs(y - 0.8)) < 0.12] = 4
    colours = np.array([[0.2, 0.3, 0.8], [0.9, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.9, 0.9, 0.9]])
    shade = 0.8 + 0.2 * x[..., None]
    image = colours[regions] * shade
    recoloured = colours[[3, 0, 4, 2, 1]][regions] * shade
    return (image * 2 - 1)[None].astype(np.float32), (recoloured * 2 - 1)[None].astype(np.float32), regions


# ----------------------------------------------------------------------------- maps


def test_a_window_is_centred_on_its_query_and_moved_inside_the_map_at_borders():
    height, width, window = 6, 8, 3
    positions = tf.constant([0, 1 * width + 1, 5 * width + 7, 2 * width + 7])  # corner, inner, corner, edge
    got = sesim.window_indices(positions, height, width, window).numpy()
    assert got.shape == (4, window * window)
    rows, cols = got // width, got % width
    for i, p in enumerate(positions.numpy()):
        assert p in got[i], "a query's window holds the query"
        assert rows[i].max() - rows[i].min() == window - 1 and cols[i].max() - cols[i].min() == window - 1
        assert len(set(got[i])) == window * window
    assert rows.min() >= 0 and rows.max() < height and cols.min() >= 0 and cols.max() < width
    # the inner query sits at its window's centre; the corner's window starts at the corner
    assert got[1][window * window // 2] == positions[1]
    assert got[0][0] == 0 and got[2][-1] == height * width - 1
    # a window wider than the map is the whole map along that side
    assert sesim.window_indices(positions[:1], 2, width, window).shape == (1, 2 * window)


@pytest.mark.parametrize("window, entries", [(3, 9), (5, 25), (None, 64)])
def test_map_shapes_and_each_query_is_fully_similar_to_itself(window, entries):
    f = smooth_features([2, 8, 8, 16], seed=1)
    positions = sesim.query_positions(10, 8, 8, tf.constant([3, 4], tf.int64))
    maps = sesim.similarity_maps(f, positions, window)
    assert maps.shape == (2, 10, entries)
    assert len(set(positions.numpy())) == 10
    own = np.max(maps.numpy(), axis=-1)
    np.testing.assert_allclose(own, 1.0, atol=1e-5)
    assert np.all(np.abs(maps.numpy()) <= 1.0 + 1e-5)
    assert sesim.query_positions(1000, 8, 8, tf.constant([3, 4], tf.int64)).shape == (64,)


def test_local_maps_are_the_global_maps_at_the_window_row_by_row():
    height, width, window = 7, 9, 5
    f = smooth_features([1, height, width, 8], seed=2)
    positions = sesim.query_positions(20, height, width, tf.constant([0, 5], tf.int64))
    global_maps = sesim.similarity_maps(f, positions, None).numpy()[0]
    local = sesim.similarity_maps(f, positions, window).numpy()[0]
    for p, map_of_query, local_map in zip(positions.numpy(), global_maps, local):
        top = np.clip(p // width - window // 2, 0, height - window)
        left = np.clip(p % width - window // 2, 0, width - window)
        expected = map_of_query.reshape(height, width)[top:top + window, left:left + window].reshape(-1)
        np.testing.assert_allclose(local_map, expected, atol=1e-6)


def test_maps_ignore_a_change_of_each_channels_offset_and_the_features_scale():
    """What a colour change does to features to first order; the maps see only structure."""
    f = smooth_features([1, 8, 8, 16], seed=3)
    offset = tf.random.stateless_normal([1, 1, 1, 16], [4, 4]) * 5.0
    positions = sesim.query_positions(16, 8, 8, tf.constant([0, 1], tf.int64))
    np.testing.assert_allclose(sesim.similarity_maps(3.0 * f + offset, positions, 5),
                               sesim.similarity_maps(f, positions, 5), atol=1e-5)


@pytest.mark.parametrize("distance", ["l1", "cosine"])
def test_the_distance_is_zero_for_equal_maps_and_grows_with_their_difference(distance):
    maps = tf.random.stateless_uniform([2, 5, 9], [5, 5], -1, 1)
    other = tf.random.stateless_uniform([2, 5, 9], [6, 6], -1, 1)
    np.testing.assert_allclose(sesim.map_distance(maps, maps, distance, 0.25), 0.0, atol=1e-6)
    near = sesim.map_distance(maps + 0.05 * other, maps, distance, 1.0).numpy()
    far = sesim.map_distance(other, maps, distance, 1.0).numpy()
    assert near.shape == (2,) and np.all(far > 4 * near)


def test_only_the_outputs_top_entries_are_compared():
    output = tf.constant([[[1.0, 0.9, 0.1, 0.0]]])
    source = tf.constant([[[1.0, 0.9, 0.5, 0.5]]])  # differs only where the output is low
    assert float(sesim.map_distance(source, output, "l1", 0.5)[0]) == 0.0
    assert float(sesim.map_distance(source, output, "l1", 1.0)[0]) == pytest.approx((0.4 + 0.5) / 4)


# ----------------------------------------------------------------------------- images


def test_semantic_maps_are_pictured_as_edges_skeletons_or_palette_colours():
    """The picture the loss reads (in [-1, 1]) is the one previews show (uint8)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, size=[2, 6, 6])
    onehot = np.eye(9, dtype=np.float32)[ids]
    onehot[0, 0, 0] = 0.0  # no class: black
    colours = palette(9)[ids]
    colours[0, 0, 0] = 0
    edges = (rng.random([2, 6, 6, 1]) > 0.5).astype(np.float32)
    pose = rng.random([2, 6, 6, POSE_CHANNELS]).astype(np.float32)
    for semantic, picture in ((onehot, colours), (edges, np.repeat(edges, 3, -1) * 255), (pose, pose[..., :3] * 255)):
        np.testing.assert_allclose((colourise(tf.constant(semantic)).numpy() + 1.0) * 127.5, picture, atol=1e-3)
        np.testing.assert_array_equal(label_picture(semantic), np.rint(picture))


def test_augmentation_is_seeded_keeps_the_range_and_changes_the_colours():
    image, _, _ = scene(32)
    image = tf.constant(np.concatenate([image, -image]))
    seed = tf.constant([7, 1], tf.int64)
    a, b = sesim.augment(image, seed, 0.5, 0.3, 1.0, 0.0), sesim.augment(image, seed, 0.5, 0.3, 1.0, 0.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape and np.all(np.abs(a.numpy()) <= 1.0 + 1e-6)
    assert np.mean(np.abs(a - image)) > 0.05
    grey = sesim.augment(image, seed, 0.0, 0.0, 0.0, 1.0).numpy()
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-6)
    unchanged = sesim.augment(image, seed, 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(unchanged, image, atol=1e-5)


def test_fsesim_tells_a_recoloured_image_from_a_shifted_one():
    """The paper's aligned / unaligned check, with torchvision's ImageNet VGG16: the same
    structure in other colours is far nearer than the same colours moved."""
    trunk = sesim.build_trunk(fetched("vgg16"))
    image, recoloured, _ = scene(64)
    shifted = np.roll(image, 12, axis=2)
    for variant in ("local", "global"):
        loss = sesim.SpatialCorrelative(patches=64, variant=variant)
        f = features(trunk, tf.constant(image))

        def distance(other):
            return float(loss.structure_distance(f, features(trunk, tf.constant(other)), step=0)[0])

        assert distance(image) == pytest.approx(0.0, abs=1e-5)
        assert distance(recoloured) < 0.5 * distance(shifted), variant


# ----------------------------------------------------------------------------- LSeSim


def test_the_heads_contrastive_loss_falls_in_a_few_steps():
    loss = sesim.SpatialCorrelative(patches=32, learned=True, window=5)
    loss.build()
    image = [smooth_features([2, 8, 8, c], seed=10 + i) for i, c in enumerate(sesim.CHANNELS)]
    # the same structure seen differently: each channel rescaled and shifted, plus noise
    augmented = [f * tf.random.stateless_uniform([1, 1, 1, f.shape[-1]], [20, i], 0.5, 1.5)
                 + 0.3 * tf.random.stateless_normal(f.shape, [30, i]) for i, f in enumerate(image)]
    optimizer = tf.keras.optimizers.Adam(1e-3)
    values = []
    for _ in range(15):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss.contrastive(image, augmented, step=0))
        optimizer.apply_gradients(zip(tape.gradient(value, loss.trainable_variables), loss.trainable_variables))
        values.append(float(value))
    assert len(loss.trainable_variables) == 8
    assert values[-1] < 0.8 * values[0], values


def tiny_model(*overrides):
    from cocosnet_tf.data.pipeline import build_dataset
    from cocosnet_tf.models.cocosnet.model import CoCosNet

    config = load_config("configs/demo.yaml", ["model.ngf=4", "model.ndf=4", "model.nef=4", "model.corr_levels=2",
                                               "model.patchmatch_iterations=1", "losses.spatial_correlative=1",
                                               "losses.sesim.patches=16", *overrides])
    model = CoCosNet(config, config.data.semantic_nc)
    model.build_all(*config.data.crop_size)
    model.compile(sesim_trunk=sesim.build_trunk(None))
    return model, next(iter(build_dataset(config.data, 2)))


@pytest.mark.slow
def test_a_training_step_trains_the_heads_by_their_own_loss_only(tmp_path):
    model, batch = tiny_model("losses.sesim.learned=true")
    heads = model.sesim.trainable_variables
    assert len(heads) == 8 and not {id(v) for v in heads} & {id(v) for v in model.generator_variables()}
    before = [v.numpy().copy() for v in heads]
    train = model.training_batch(batch)
    # the generator's step, its sesim term included, leaves the heads as they are
    grads, losses, fake = model._generator_gradients(train, tf.reduce_sum(train["self_ref"]))
    model.g_optimizer.apply_gradients(zip(grads, model.generator_variables()))
    assert float(losses["spatial_correlative"]) > 0
    for v, b in zip(heads, before):
        np.testing.assert_array_equal(v.numpy(), b)
    out = model.train_step(batch)
    assert {"G_spatial_correlative", "sesim_contrastive"} <= set(out)
    assert all(np.isfinite(float(v)) for v in out.values())
    assert all(not np.array_equal(v.numpy(), b) for v, b in zip(heads, before))
    # the heads and their optimiser are saved with the model
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    names = [name for name, _ in tf.train.list_variables(path)]
    assert sum("model/sesim/head_" in n for n in names) == 8
    assert any("model/sesim_optimizer/" in n for n in names)


@pytest.mark.slow
def test_fsesim_has_no_heads_and_no_step_of_its_own():
    model, batch = tiny_model("losses.sesim.pair=target")
    assert model.sesim.trainable_variables == []
    out = model.train_step(batch)
    assert "G_spatial_correlative" in out and "sesim_contrastive" not in out


def test_the_source_is_the_pictured_semantic_input_or_the_target():
    label = tf.constant(np.eye(8, dtype=np.float32)[np.arange(16).reshape(1, 4, 4) % 8])
    batch = {"label": label, "image": tf.random.stateless_uniform([1, 4, 4, 3], [1, 2], -1, 1)}
    np.testing.assert_array_equal(sesim.SpatialCorrelative(pair="input").source(batch), colourise(label))
    np.testing.assert_array_equal(sesim.SpatialCorrelative(pair="target").source(batch), batch["image"])


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("overrides, message", [
    (["losses.sesim.windw=9"], "unknown key losses.sesim.windw; allowed in losses.sesim: patches, window"),
    (["losses.sesim.window=8"], "losses.sesim.window: must be odd and >= 3"),
    (["losses.sesim.window=1"], "losses.sesim.window: must be odd and >= 3"),
    (["losses.sesim.variant=medium"], "losses.sesim.variant: 'medium' is not allowed"),
    (["losses.sesim.distance=l2"], "losses.sesim.distance: 'l2' is not allowed"),
    (["losses.sesim.pair=exemplar"], "losses.sesim.pair: 'exemplar' is not allowed"),
    (["losses.sesim.learned=yes please"], "losses.sesim.learned: expected true or false"),
    (["losses.sesim.patches=0"], "losses.sesim.patches: must be >= 1"),
    (["losses.sesim.keep=0"], "losses.sesim.keep: must be within (0, 1]"),
    (["losses.sesim.temperature=0"], "losses.sesim.temperature: must be > 0"),
    (["losses.sesim.jitter=1"], "losses.sesim.jitter: must be in [0, 1)"),
    (["losses.sesim.grey=2"], "losses.sesim.grey: must be a probability"),
    (["losses.spatial_correlative=-1"], "losses.spatial_correlative"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_config_keys_are_the_constructors_and_get_configs():
    import dataclasses

    from cocosnet_tf.config import SeSimConfig

    keys = [f.name for f in dataclasses.fields(SeSimConfig)]
    config = sesim.SpatialCorrelative(**dataclasses.asdict(SeSimConfig())).get_config()
    assert [k for k in config if k in keys] == keys and "seed" in config
    defaults = load_config(None, []).losses
    assert defaults.spatial_correlative == 0.0 and defaults.sesim.window == 9 and defaults.sesim.patches == 256


def test_fsesim_without_vgg16_weights_is_one_clear_line(monkeypatch, tmp_path):
    from cocosnet_tf.models.cocosnet.model import CoCosNet

    monkeypatch.setenv("COCOSNET_TF_WEIGHTS", str(tmp_path))
    config = load_config("configs/demo.yaml", ["losses.spatial_correlative=1"])
    model = CoCosNet(config, config.data.semantic_nc)
    with pytest.raises(MissingWeightsError) as info:
        model.compile()
    message = str(info.value)
    assert "losses.spatial_correlative" in message and "python -m cocosnet_tf.weights fetch vgg16" in message
    assert str(tmp_path) in message and "\n" not in message


def test_evaluate_reports_the_structure_distance_of_outputs_and_targets_to_the_inputs():
    from types import SimpleNamespace

    from cocosnet_tf import evaluate

    fetched("vgg16")
    image, _, regions = scene(64)
    target = np.rint((image + 1.0) * 127.5).astype(np.uint8)
    inputs = label_picture(np.eye(8, dtype=np.float32)[regions][None])  # a label map of the scene
    config = load_config(None, ["evaluate.batch_size=1", "losses.sesim.patches=64"])
    pairs = [np.concatenate([x, x]) for x in (inputs, target)]
    outputs = np.concatenate([target, np.roll(target, 12, axis=2)])  # one aligned, one shifted output
    ev = SimpleNamespace(inputs=[pairs[0]], images={"output": [outputs], "target": [pairs[1]]}, config=config)
    report = evaluate.sesim_report(ev, config)
    assert report["computed"] and report["pairs"] == 2
    assert report["input_vs_output"] > report["input_vs_target"] > 0
    lines = evaluate.sesim_markdown(report)
    assert "output" in lines[0] and "target" in lines[0]
