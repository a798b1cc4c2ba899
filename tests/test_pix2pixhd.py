import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.models.pix2pixhd.clusters import (cluster_features, feature_map, instance_features, kmeans,
                                                   load_clusters, save_clusters)
from cocosnet_tf.models.pix2pixhd.encoder import FeatureEncoder, generator_input, instance_average
from cocosnet_tf.models.pix2pixhd.generator import GlobalGenerator, LocalEnhancer, Pix2PixHDGenerator
from cocosnet_tf.models.pix2pixhd.phases import phase_variables
from cocosnet_tf.models.pix2pixhd.units import ConvUnit, ImageHead, ResnetBlock

RNG = np.random.default_rng(0)


def tiny_generator(local_enhancers):
    return Pix2PixHDGenerator(output_nc=3, ngf=4, n_downsample_global=2, n_blocks_global=2,
                              local_enhancers=local_enhancers, n_blocks_local=1)


def semantic(size, channels=5, batch=1):
    return tf.constant(RNG.normal(size=(batch, size, size, channels)).astype(np.float32))


def test_global_generator_keeps_the_input_size_and_widths_follow_ngf():
    g1 = GlobalGenerator(output_nc=3, ngf=4, n_downsample_global=2, n_blocks_global=2)
    x = semantic(32)
    y = g1(x)
    assert y.shape == (1, 32, 32, 3)
    assert np.abs(y.numpy()).max() <= 1  # tanh
    assert g1.features(x).shape == (1, 32, 32, 4)
    assert g1.units[2].conv.kernel.shape == (3, 3, 8, 16)  # the second halving doubles 8 to 16
    assert len([u for u in g1.units if isinstance(u, ResnetBlock)]) == 2


@pytest.mark.parametrize("local_enhancers, size", [(1, 32), (2, 32)])
def test_enhancers_generate_at_the_input_size_from_g1_at_a_fraction_of_it(local_enhancers, size):
    generator = tiny_generator(local_enhancers)
    x = semantic(size)
    assert generator(x).shape == (1, size, size, 3)
    coarse = size // 2 ** local_enhancers  # 2x (16 -> 32) with one enhancer, 4x (8 -> 32) with two
    assert generator.coarse(x).shape == (1, coarse, coarse, 3)
    # G1 is 2^local_enhancers times wider; only the outermost enhancer has an image head
    assert generator.global_generator.ngf == 4 * 2 ** local_enhancers
    assert [e.head is not None for e in generator.enhancers] == [False] * (local_enhancers - 1) + [True]


def test_the_up_unit_places_pixels_as_torch_does():
    # torch ConvTranspose2d(3, stride 2, padding 1, output_padding 1): out[2i + k - 1] += x[i] w[k]
    unit = ConvUnit(1, 3, "up")
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 2, 0] = 1
    unit(x)
    kernel = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1, 1)
    unit.conv.kernel.assign(kernel)
    y = unit(x).numpy()[0, :, :, 0]
    assert y.shape == (8, 8)
    # every kernel value (1..9) exceeds the map's mean (45 / 64): after instance norm and
    # ReLU exactly the nine pixels the impulse reaches stay positive, the largest at w[2, 2]
    expected = np.zeros((8, 8), bool)
    expected[2 * 1 - 1:2 * 1 + 2, 2 * 2 - 1:2 * 2 + 2] = True
    np.testing.assert_array_equal(y > 0, expected)
    assert np.unravel_index(y.argmax(), y.shape) == (2 * 1 + 2 - 1, 2 * 2 + 2 - 1)


def test_instance_average_gives_each_instance_its_mean():
    features = RNG.normal(size=(2, 8, 8, 3)).astype(np.float32)
    instances = RNG.integers(0, 4, size=(2, 8, 8))
    # one-pixel instances; image 1's -1 must not be taken for image 0's 9
    instances[0, 0, 0], instances[1, 0, 0] = 9, -1
    pooled = instance_average(tf.constant(features), tf.constant(instances)).numpy()
    for b in range(2):
        for i in np.unique(instances[b]):
            mask = instances[b] == i
            # constant within the instance, equal to the instance's own mean (per image)
            np.testing.assert_allclose(pooled[b][mask], np.broadcast_to(features[b][mask].mean(0), (mask.sum(), 3)),
                                       rtol=1e-5, atol=1e-6)
    assert len(np.unique(pooled.reshape(-1, 3), axis=0)) == len(np.unique(instances[0])) + len(np.unique(instances[1]))


def test_the_encoder_gives_one_vector_per_instance_and_is_trainable_through_the_pooling():
    encoder = FeatureEncoder(feature_channels=3, nef=4, n_downsample_encoder=2)
    image = semantic(16, channels=3)
    instances = np.zeros((1, 16, 16), np.int64)
    instances[0, 4:12, 2:9] = 7
    with tf.GradientTape() as tape:
        features = encoder(image, tf.constant(instances))
        loss = tf.reduce_sum(features)
    features = features.numpy()
    assert features.shape == (1, 16, 16, 3)
    for i in (0, 7):
        assert len(np.unique(features[0][instances[0] == i], axis=0)) == 1
    assert all(g is not None for g in tape.gradient(loss, encoder.trainable_variables))


def test_kmeans_finds_separated_groups_and_is_deterministic():
    centres = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    points = np.concatenate([c + 0.1 * RNG.normal(size=(20, 2)) for c in centres])
    found = kmeans(points, 3, seed=1)
    np.testing.assert_array_equal(found, kmeans(points, 3, seed=1))
    groups = [points[20 * j:20 * (j + 1)].mean(0) for j in range(3)]
    for group in groups:
        assert np.min(np.linalg.norm(found - group, axis=1)) < 1e-9
    assert kmeans(points[:2], 10).shape == (2, 2)  # no more centres than points


def test_cluster_file_round_trips(tmp_path):
    features = np.zeros((1, 16, 16, 3), np.float32)
    instances = np.zeros((1, 16, 16), np.int64)
    labels = np.zeros((1, 16, 16), np.int64)
    for n, (rows, cols) in enumerate([(slice(0, 8), slice(0, 8)), (slice(8, 16), slice(0, 8)),
                                      (slice(0, 16), slice(8, 16))]):
        instances[0, rows, cols] = n + 1
        labels[0, rows, cols] = 1 if n < 2 else 2
        features[0, rows, cols] = RNG.normal(size=3)
    instances[0, 0, 0], labels[0, 0, 0] = 99, 3  # an instance too small (1/256 of the image) to count
    vectors = instance_features(features, instances, labels)
    assert sorted(vectors) == [1, 2] and vectors[1].shape == (2, 3) and vectors[2].shape == (1, 3)
    centres = cluster_features(vectors, clusters=2)
    save_clusters(tmp_path / "clusters.npz", centres)
    loaded = load_clusters(tmp_path / "clusters.npz")
    assert sorted(loaded) == [1, 2]
    for label in centres:
        np.testing.assert_allclose(loaded[label], centres[label], rtol=1e-6)
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a cluster file"):
        load_clusters(tmp_path / "other.npz")


def test_two_clusters_give_two_feature_maps_and_two_images():
    instances = np.zeros((1, 32, 32), np.int64)
    labels = np.zeros((1, 32, 32), np.int64)
    instances[0, 8:24, 8:24], labels[0, 8:24, 8:24] = 5, 1
    centres = {0: np.float32([[0.1, 0.2, 0.3]]), 1: np.float32([[0.5, -0.5, 0.0], [-0.9, 0.4, 0.8]])}
    first = feature_map(instances, labels, centres, {1: 0})
    second = feature_map(instances, labels, centres, {1: 1})
    inside = instances[0] == 5
    np.testing.assert_array_equal(first[0][inside], np.broadcast_to(centres[1][0], (inside.sum(), 3)))
    np.testing.assert_array_equal(second[0][inside], np.broadcast_to(centres[1][1], (inside.sum(), 3)))
    np.testing.assert_array_equal(first[0][~inside], second[0][~inside])  # class 0 keeps its only cluster
    with pytest.raises(ValueError, match="class 1 has 2 clusters"):
        feature_map(instances, labels, centres, {1: 2})
    one_hot = tf.one_hot(labels, 2)
    generator = tiny_generator(1)
    images = [generator(generator_input(one_hot, f)).numpy() for f in (first, second)]
    assert np.abs(images[0] - images[1]).max() > 1e-4


def snapshot(variables):
    return {id(v): v.numpy().copy() for v in variables}


def changed(variables, before):
    return [v.path for v in variables if not np.array_equal(v.numpy(), before[id(v)])]


@pytest.mark.parametrize("phase", ["global", "enhancer", "all"])
def test_phase_steps_change_only_the_phase_variables(phase):
    generator = tiny_generator(2)
    encoder = FeatureEncoder(feature_channels=2, nef=2, n_downsample_encoder=1)
    x, image = semantic(32, channels=4), semantic(32, channels=3)
    instances = tf.constant(RNG.integers(0, 3, size=(1, 32, 32)))

    def loss():
        # every variable gets a gradient: the full output, G1's own image and the encoder
        g_input = generator_input(x, encoder(image, instances))
        return tf.reduce_mean(tf.square(generator(g_input))) + tf.reduce_mean(tf.square(generator.coarse(g_input)))

    loss()
    selected = phase_variables(generator, phase, encoder)
    everything = generator.trainable_variables + encoder.trainable_variables
    before = snapshot(everything)
    optimizer = keras.optimizers.Adam(1e-2)
    for _ in range(2):
        with tf.GradientTape() as tape:
            value = loss()
        optimizer.apply_gradients(zip(tape.gradient(value, selected), selected))
    moved = set(changed(everything, before))
    g1 = generator.global_generator.trainable_variables
    inner, outer = generator.enhancers[0].trainable_variables, generator.enhancers[1].trainable_variables
    if phase == "global":  # no enhancer variable changes
        assert not moved & {v.path for v in inner + outer}
        assert {v.path for v in g1} <= moved
    if phase == "enhancer":  # G1 and the inner enhancer are frozen
        assert not moved & {v.path for v in g1 + inner}
        assert {v.path for v in outer} <= moved
    if phase == "all":
        head = {v.path for v in generator.global_generator.head.trainable_variables}
        assert moved == {v.path for v in everything} - head
    assert {v.path for v in encoder.trainable_variables} <= moved


def test_bad_settings_and_sizes_fail_in_one_line():
    with pytest.raises(ValueError, match="local_enhancers must be 0, 1 or 2"):
        Pix2PixHDGenerator(local_enhancers=3)
    with pytest.raises(ValueError, match="multiples of 16, at least 32"):
        tiny_generator(2)(semantic(24))
    with pytest.raises(ValueError, match="multiples of 16, at least 32"):
        tiny_generator(2)(semantic(16))  # G1's bottleneck would be 1 x 1: nothing to reflect
    with pytest.raises(ValueError, match="phase must be one of"):
        phase_variables(tiny_generator(0), "local")
    with pytest.raises(ValueError, match="needs local_enhancers >= 1"):
        phase_variables(tiny_generator(0), "enhancer")
    with pytest.raises(ValueError, match="mode must be one of"):
        ConvUnit(4, 3, "same")


@pytest.mark.parametrize("layer", [
    ConvUnit(4, 7, "reflect"), ResnetBlock(4), ImageHead(3), GlobalGenerator(ngf=4, n_blocks_global=1),
    LocalEnhancer(4, n_blocks_local=1, output_nc=3), tiny_generator(1),
    FeatureEncoder(feature_channels=2, nef=4, n_downsample_encoder=1)])
def test_get_config_keys_are_the_constructor_keywords(layer):
    keywords = set(inspect.signature(type(layer).__init__).parameters) - {"self", "kwargs"}
    config = layer.get_config()
    assert keywords <= set(config)
    assert set(config) - keywords <= {"name", "trainable", "dtype"}
    assert type(layer).from_config(config).get_config() == config
