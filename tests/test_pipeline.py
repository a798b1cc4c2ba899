import subprocess
import sys
import os

import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.data.geometry import inside, sample_bilinear
from cocosnet_tf.data.pipeline import build_dataset
from conftest import REPO

SMALL = ["data.crop_size=64", "data.synthetic.num_samples=12"]


def first(ds, n):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def test_batches_have_the_sample_keys(make_config):
    c = make_config(*SMALL)
    (batch,) = first(build_dataset(c.data, 3), 1)
    assert batch["label"].shape == (3, 64, 64, 8) and batch["exemplar_label"].shape == (3, 64, 64, 8)
    assert batch["image"].shape == (3, 64, 64, 3) and batch["exemplar"].shape == (3, 64, 64, 3)
    assert batch["flow"].shape == (3, 64, 64, 2) and batch["self_ref"].shape == (3,)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    np.testing.assert_allclose(batch["label"].sum(-1), 1.0)  # one-hot


def test_stream_is_deterministic_per_seed(make_config):
    c = make_config(*SMALL, "data.flip=true", "data.load_size=80", "data.scale_range=[1.0, 1.2]")
    a, b = first(build_dataset(c.data, 2), 3), first(build_dataset(c.data, 2), 3)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    other = make_config(*SMALL, "data.flip=true", "data.load_size=80", "data.scale_range=[1.0, 1.2]", "data.seed=1")
    assert not np.array_equal(first(build_dataset(other.data, 2), 1)[0]["image"], a[0]["image"])


def test_one_epoch_visits_every_sample_once(make_config):
    c = make_config(*SMALL)
    indices = [s["index"] for s in first(build_dataset(c.data, repeat=False), 100)]
    assert sorted(indices) == list(range(12)) and indices != list(range(12))
    two_epochs = [s["index"] for s in first(build_dataset(c.data), 24)]
    assert two_epochs[:12] != two_epochs[12:]  # reshuffled each epoch


def test_shards_are_disjoint_and_cover_the_data(make_config):
    c = make_config(*SMALL)
    seen = []
    for worker in range(3):
        context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=worker, num_replicas_in_sync=3)
        ds = build_dataset(c.data, 3, repeat=False, input_context=context)
        batches = first(ds, 10)
        assert all(b["image"].shape[0] == 1 for b in batches)  # global 3 over 3 replicas
        seen.append({int(i) for b in batches for i in b["index"]})
    assert set().union(*seen) == set(range(12))
    assert sum(len(s) for s in seen) == 12


@pytest.mark.parametrize("flip", ["true", "false"])
def test_augmentation_keeps_the_flow_true(make_config, flip):
    c = make_config("data.crop_size=96", "data.load_size=[128, 112]", "data.scale_range=[1.0, 1.4]",
                    f"data.flip={flip}", "data.synthetic.num_samples=6")
    for s in first(build_dataset(c.data, shuffle=False), 6):
        valid = s["flow_mask"][..., 0] > 0
        assert valid.mean() > 0.3 and not (valid & ~inside(s["flow"], 96, 96)).any()
        err = np.abs(sample_bilinear(s["exemplar"], s["flow"]) - s["image"]).max(-1)[valid]
        assert np.median(err) < 0.02 and np.mean(err < 0.1) > 0.9


def test_unknown_flow_stays_zero_through_augmentation(make_config):
    c = make_config("data.crop_size=64", "data.load_size=96", "data.flip=true", "data.scale_range=[1.0, 1.5]",
                    "data.synthetic.cross_scene_probability=1.0", "data.synthetic.num_samples=4")
    for s in first(build_dataset(c.data, shuffle=False), 4):
        assert s["has_flow"] == 0 and s["self_ref"] == 0
        assert not s["flow"].any() and not s["flow_mask"].any()


def test_labels_stay_one_hot_through_scaling(make_config):
    c = make_config("data.crop_size=64", "data.load_size=96", "data.scale_range=[1.1, 1.7]",
                    "data.synthetic.num_samples=3")
    for s in first(build_dataset(c.data, shuffle=False), 3):
        assert set(np.unique(s["label"])) <= {0.0, 1.0}
        np.testing.assert_array_equal(s["label"].sum(-1), 1.0)


def test_mirrored_strategy_on_logical_cpus():
    # logical devices must be configured before TensorFlow starts: a fresh process
    code = """
import tensorflow as tf
from cocosnet_tf.config import load_config
from cocosnet_tf.data.pipeline import distributed_dataset
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices('CPU')])
c = load_config(None, ['data.crop_size=64', 'data.synthetic.num_samples=8'])
batch = next(iter(distributed_dataset(strategy, c.data, 4)))
parts = strategy.experimental_local_results(batch['image'])
print(strategy.num_replicas_in_sync, [tuple(p.shape) for p in parts])
try:
    distributed_dataset(strategy, c.data, 3)
except ValueError as err:
    print('error:', err)
"""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "2 [(2, 64, 64, 3), (2, 64, 64, 3)]"
    assert "not divisible by the 2 replicas" in lines[1]


def test_identity_flow_stays_identity_under_scale_crop_flip(make_config):
    # the exemplar *is* the image: whatever the augmentation, flow must stay the pixel grid
    from cocosnet_tf.data.geometry import xy_grid
    from cocosnet_tf.data.pipeline import augment

    c = make_config("data.crop_size=64", "data.load_size=[96, 80]", "data.scale_range=[1.0, 1.5]", "data.flip=true")
    grid = xy_grid(96, 80).astype(np.float32)
    sample = {"image": tf.zeros([96, 80, 3]), "exemplar": tf.zeros([96, 80, 3]),
              "label": tf.zeros([96, 80, 8]), "exemplar_label": tf.zeros([96, 80, 8]),
              "flow": tf.constant(grid), "flow_mask": tf.ones([96, 80, 1]), "has_flow": tf.constant(1.0),
              "self_ref": tf.constant(1.0)}
    for position in range(8):
        out = augment(sample, tf.constant([0, position], tf.int64), c.data)
        flow = out["flow"].numpy()
        np.testing.assert_allclose(flow[2:-2, 2:-2], xy_grid(64, 64)[2:-2, 2:-2], atol=1e-3)
        assert out["flow_mask"].numpy()[2:-2, 2:-2].all()  # every point stays known and inside


def test_labels_move_with_the_image(make_config):
    # an image whose red channel encodes the class of its stripe: after scale, crop and
    # flip, the label must still name the stripe the image shows
    from cocosnet_tf.data.pipeline import augment

    c = make_config("data.crop_size=64", "data.load_size=[96, 80]", "data.scale_range=[1.0, 1.5]", "data.flip=true")
    classes = np.repeat((np.arange(80) // 10)[None, :], 96, axis=0)
    image = np.repeat((classes / 8.0)[..., None], 3, axis=-1).astype(np.float32)
    label = np.eye(8, dtype=np.float32)[classes]
    sample = {"image": tf.constant(image), "exemplar": tf.constant(image), "label": tf.constant(label),
              "exemplar_label": tf.constant(label), "flow": tf.zeros([96, 80, 2]),
              "flow_mask": tf.zeros([96, 80, 1]), "has_flow": tf.constant(0.0), "self_ref": tf.constant(1.0)}
    flipped = 0
    for position in range(12):
        out = augment(sample, tf.constant([0, position], tf.int64), c.data)
        shown = np.rint(out["image"].numpy()[..., 0] * 8)
        named = np.argmax(out["label"].numpy(), -1)
        assert np.mean(shown == named) > 0.95
        flipped += named[0, 0] > named[0, -1]
    assert 0 < flipped < 12  # both flipped and unflipped draws happened


def test_workers_draw_different_augmentations(make_config):
    c = make_config(*SMALL, "data.flip=true", "data.load_size=96", "data.scale_range=[1.0, 1.3]")
    firsts = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        firsts.append([int(b["index"][0]) for b in first(build_dataset(c.data, 2, input_context=context), 6)])
    # with lockstep seeds worker 1 would always hold worker 0's index + 1
    assert any(b != a + 1 for a, b in zip(*firsts))


def test_test_phase_is_a_centre_crop_without_flips(make_config):
    c = make_config(*SMALL, "data.phase=test", "data.flip=true", "data.load_size=96", "data.scale_range=[1.0, 1.5]")
    from cocosnet_tf.data.kinds import build_source
    source = build_source(c.data)
    for s in first(build_dataset(c.data, shuffle=False), 3):
        raw = source.load(int(s["index"]), seed=0)
        np.testing.assert_array_equal(s["image"], raw["image"][16:80, 16:80])


def test_the_flow_mask_moves_with_the_image_and_drops_points_outside(make_config):
    # the image's red channel marks the known right half; the flow is the identity, or
    # 30 rows down (so that the crop's bottom rows come from outside the exemplar)
    from cocosnet_tf.data.geometry import xy_grid
    from cocosnet_tf.data.pipeline import augment

    c = make_config("data.crop_size=64", "data.load_size=[96, 80]", "data.scale_range=[1.0, 1.5]", "data.flip=true")
    known = np.zeros([96, 80, 1], np.float32)
    known[:, 40:] = 1
    image = np.repeat(known, 3, axis=-1)
    for shift in (0.0, 30.0):
        flow = xy_grid(96, 80).astype(np.float32) + [0.0, shift]
        sample = {"image": tf.constant(image), "exemplar": tf.constant(image), "label": tf.zeros([96, 80, 8]),
                  "exemplar_label": tf.zeros([96, 80, 8]), "flow": tf.constant(flow),
                  "flow_mask": tf.constant(known), "has_flow": tf.constant(1.0), "self_ref": tf.constant(1.0)}
        for position in range(6):
            out = augment(sample, tf.constant([0, position], tf.int64), c.data)
            mask, red = out["flow_mask"].numpy()[..., 0], out["image"].numpy()[..., 0]
            assert set(np.unique(mask)) <= {0.0, 1.0} and mask.any()
            assert np.all(red[mask > 0] > 0.999)  # known only where every blended pixel was known
            assert not mask[red < 0.001].any()
            assert np.all(inside(out["flow"].numpy()[mask > 0], 64, 64))
            if shift:
                assert not mask[-5:].any()  # their points lie below the exemplar's crop
