"""pix2pixHD trained as one Keras model: its phases, its losses, fit, and replicas."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.config import ConfigError, load_config
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.discriminator import downsample
from cocosnet_tf.models.pix2pixhd.encoder import generator_input
from cocosnet_tf.models.pix2pixhd.model import Pix2PixHD

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
TINY = ["model.kind=pix2pixhd", f"data.crop_size=[{SIZE},{SIZE}]", "data.synthetic.num_samples=16", "model.ngf=4",
        "model.ndf=4",
        "model.num_discriminators=2", "model.discriminator_layers=2", "model.pix2pixhd.local_enhancers=1",
        "model.pix2pixhd.n_downsample_global=2", "model.pix2pixhd.n_blocks_global=1",
        "model.pix2pixhd.n_blocks_local=1", "model.pix2pixhd.nef=4", "model.pix2pixhd.n_downsample_encoder=2",
        "losses.vgg=0", "losses.reconstruction=1", "train.batch_size=2", "train.lr=0.01"]


def tiny_model(*overrides):
    config = load_config(None, TINY + list(overrides))
    model = Pix2PixHD(config, config.data.semantic_nc)
    model.build_all(SIZE, SIZE)
    model.compile()
    return model, config


def snapshot(variables):
    return {id(v): v.numpy().copy() for v in variables}


def moved(variables, before):
    return {v.path for v in variables if not np.array_equal(v.numpy(), before[id(v)])}


def paths(variables):
    return {v.path for v in variables}


def test_each_phase_steps_only_its_variables_and_the_discriminator_its_own():
    model, config = tiny_model()
    batch = next(iter(build_dataset(config.data, 2)))
    g1 = model.generator.global_generator.trainable_variables
    head = model.generator.global_generator.head.trainable_variables
    enhancer = model.generator.enhancers[0].trainable_variables
    encoder, discriminator = model.encoder.trainable_variables, model.discriminator.trainable_variables
    everything = model.generator.trainable_variables + encoder
    for phase, expected in (("global", paths(g1 + encoder)), ("enhancer", paths(enhancer + encoder)),
                            ("all", paths(g1 + enhancer + encoder) - paths(head))):
        model.phase = phase
        before, d_before = snapshot(everything), snapshot(discriminator)
        losses = model.train_step(batch)
        assert moved(everything, before) == expected, phase
        assert moved(discriminator, d_before), phase
        assert {"G_gan", "G_gan_feat", "G_reconstruction", "G_total", "D_real", "D_fake"} == set(losses)
        assert all(np.isfinite(float(v)) for v in losses.values())


def test_the_global_phase_compares_at_the_coarse_size():
    model, config = tiny_model()
    batch = {k: tf.cast(v, tf.float32) for k, v in next(iter(build_dataset(config.data, 2))).items()}
    _, (label, fake, real) = model.generator_losses(batch, "global")
    assert label.shape[1:3] == fake.shape[1:3] == real.shape[1:3] == (SIZE // 2, SIZE // 2)
    # G1's own image against the target pooled as G1's input is
    x = generator_input(batch["label"], model.encode(batch["image"], batch["label"]))
    np.testing.assert_allclose(fake, model.generator.coarse(x), atol=1e-6)
    np.testing.assert_allclose(real, downsample(batch["image"]), atol=1e-6)
    _, (label, fake, real) = model.generator_losses(batch, "all")
    assert fake.shape[1:3] == real.shape[1:3] == (SIZE, SIZE)


def test_fit_follows_the_phase_schedule():
    model, config = tiny_model("train.pix2pixhd.global_steps=1", "train.pix2pixhd.fix_global_steps=2")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(self.model.phase)

    history = model.fit(build_dataset(config.data, 2), epochs=1, steps_per_epoch=4, shuffle=False, verbose=0,
                        callbacks=[Record()])
    assert seen == ["global", "enhancer", "enhancer", "all"]
    assert np.isfinite(history.history["G_total"][-1])


def test_the_feature_map_is_required_exactly_when_there_is_an_encoder():
    model, _ = tiny_model()
    label = tf.zeros([1, SIZE, SIZE, model.semantic_nc])
    with pytest.raises(ValueError, match="takes a feature map"):
        model(label)
    plain, _ = tiny_model("model.pix2pixhd.feature_channels=0")
    assert plain.encoder is None and plain(label).shape == (1, SIZE, SIZE, 3)


@pytest.mark.parametrize("override, message", [
    ("model.pix2pixhd.local_enhancers=3", "must be 0, 1 or 2"),
    ("model.pix2pixhd.feature_channels=-1", "must be >= 0"),
    ("train.pix2pixhd.fix_global_steps=5", "needs model.pix2pixhd.local_enhancers >= 1")])
def test_bad_pix2pixhd_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["model.pix2pixhd.local_enhancers=0", override])


REPLICAS_SCRIPT = """
import json, sys
import keras, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cocosnet_tf.config import load_config
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.models.pix2pixhd.model import Pix2PixHD
config = load_config(None, json.loads(sys.argv[1]))
keras.mixed_precision.set_dtype_policy("float64")
data = build_dataset(config.data, 2).take(1).cache().repeat()
result = {}
cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
for name, strategy in (("one", tf.distribute.get_strategy()), ("two", tf.distribute.MirroredStrategy(cpus))):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = Pix2PixHD(config, config.data.semantic_nc)
        model.build_all(64, 64)
        model.compile()
    history = model.fit(data, epochs=1, steps_per_epoch=2, shuffle=False, verbose=0)
    result[name] = {"losses": {k: v[-1] for k, v in history.history.items()},
                    "weights": [np.asarray(v.numpy()).ravel().tolist() for v in model.variables]}
print("RESULT" + json.dumps(result))
"""


def test_two_replicas_take_the_steps_of_one_device():
    """Float64, two steps (a global then an enhancer one) on one global batch of 2: split
    over two replicas the losses and the weights are those of one device."""
    overrides = TINY + ["train.mixed_precision=float64", "train.pix2pixhd.global_steps=1",
                        "train.pix2pixhd.fix_global_steps=1"]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", REPLICAS_SCRIPT, json.dumps(overrides)], cwd=REPO, env=environment,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT", 1)[1])
    one, two = result["one"], result["two"]
    assert one["losses"].keys() == two["losses"].keys()
    for key in one["losses"]:
        assert abs(one["losses"][key] - two["losses"][key]) <= 1e-8 * max(1.0, abs(one["losses"][key])), key
    gaps = [np.max(np.abs(np.subtract(a, b)), initial=0.0) for a, b in zip(one["weights"], two["weights"])]
    assert max(gaps) < 1e-8


def save_pix2pixhd_run(run_dir, *overrides):
    """A run directory as the training command leaves it, from an untrained model."""
    model, config = tiny_model(*overrides)
    checkpoint = tf.train.Checkpoint(model=model, g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer)
    tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=1).save(checkpoint_number=1)
    config.save(run_dir / "config.yaml")
    return model, config


def test_the_features_command_clusters_every_class_of_the_training_samples(tmp_path, capsys):
    from cocosnet_tf import pix2pixhd_features
    from cocosnet_tf.models.pix2pixhd.clusters import load_clusters
    from cocosnet_tf.models.pix2pixhd.run import CLUSTERS_FILE

    from conftest import run_main

    model, config = save_pix2pixhd_run(tmp_path, "data.synthetic.num_samples=6", "evaluate.batch_size=4")
    code, out, err = run_main(pix2pixhd_features.main, ["--run", tmp_path, "--clusters", 2], capsys)
    assert code == 0, err
    centres = load_clusters(tmp_path / CLUSTERS_FILE)
    # the classes the six training scenes show over 1/64 of the image, each with at most 2 centres
    batch = next(iter(build_dataset(replace(config.data, phase="test", shuffle=False), 6, repeat=False)))
    classes = np.argmax(batch["label"][..., :config.data.label_nc], -1)
    shown = {int(i) for image in classes for i, c in zip(*np.unique(image, return_counts=True))
             if c >= SIZE * SIZE / 64}
    assert set(centres) == shown and len(shown) >= 3
    assert all(c.shape[0] <= 2 and c.shape[1] == 3 for c in centres.values())
    assert "6 training samples" in out


def test_the_features_command_refuses_a_run_without_encoder(tmp_path, capsys):
    from cocosnet_tf import pix2pixhd_features

    from conftest import run_main

    save_pix2pixhd_run(tmp_path, "model.pix2pixhd.feature_channels=0")
    code, _, err = run_main(pix2pixhd_features.main, ["--run", tmp_path], capsys)
    assert code == 2 and "no feature encoder" in err


# ----------------------------------------------------------------------------- the commands


def clustered_run(tmp_path, capsys):
    """An untrained tiny run with its feature clusters (2 per class)."""
    from cocosnet_tf import pix2pixhd_features

    from conftest import run_main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_pix2pixhd_run(run_dir, "data.synthetic.num_samples=6")
    code, _, err = run_main(pix2pixhd_features.main, ["--run", run_dir, "--clusters", 2], capsys)
    assert code == 0, err
    return run_dir


def label_png(path, seed=0):
    from PIL import Image

    ids = np.repeat(np.repeat(np.random.default_rng(seed).integers(0, 3, (8, 8)), 8, 0), 8, 1)
    Image.fromarray(ids.astype(np.uint8)).save(path)
    return path


def test_translate_takes_chosen_clusters_or_a_photo_and_no_exemplar(tmp_path, capsys):
    from PIL import Image

    from cocosnet_tf import translate
    from cocosnet_tf.models.pix2pixhd.clusters import load_clusters
    from cocosnet_tf.models.pix2pixhd.run import CLUSTERS_FILE

    from conftest import run_main

    run_dir = clustered_run(tmp_path, capsys)
    assert len(load_clusters(run_dir / CLUSTERS_FILE)[0]) == 2
    labels = label_png(tmp_path / "labels.png")
    outputs = {}
    for name, extra in (("first", []), ("chosen0", ["--feature-cluster", "0=0"]),
                        ("chosen1", ["--feature-cluster", "0=1"])):
        code, _, err = run_main(translate.main, ["--run", run_dir, "--input", labels, "--out", tmp_path / f"{name}.png",
                                                 *extra], capsys)
        assert code == 0, err
        outputs[name] = np.asarray(Image.open(tmp_path / f"{name}.png"), np.int32)
    np.testing.assert_array_equal(outputs["first"], outputs["chosen0"])  # cluster 0 unless chosen
    assert np.abs(outputs["chosen0"] - outputs["chosen1"]).max() > 0  # another look for the same map
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    code, _, err = run_main(translate.main, ["--run", run_dir, "--input", labels, "--exemplar", photo,
                                             "--exemplar-input", label_png(tmp_path / "photo_labels.png", 2),
                                             "--out", tmp_path / "photo_out.png"], capsys)
    assert code == 0, err
    code, _, err = run_main(translate.main, ["--run", run_dir, "--input", labels, "--feature-cluster", "0=5",
                                             "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and "class 0 has 2 feature clusters; cluster 5 was chosen" in err
    (run_dir / CLUSTERS_FILE).unlink()
    code, _, err = run_main(translate.main, ["--run", run_dir, "--input", labels, "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and "no feature clusters yet" in err
    assert not (tmp_path / "x.png").exists()


def test_evaluate_measures_a_run_on_its_clusters_without_correspondence(tmp_path, capsys):
    from cocosnet_tf import evaluate

    from conftest import run_main

    run_dir = clustered_run(tmp_path, capsys)
    out = tmp_path / "evaluation"
    code, _, err = run_main(evaluate.main, ["--run", run_dir, "--out", out, "--set", "evaluate.num_samples=4",
                                            "evaluate.swd_min_resolution=16"], capsys)
    assert code == 0, err
    result = json.loads((out / "metrics.json").read_text())
    assert "first cluster" in result["inputs"]["features"]
    assert not result["correspondence"]["computed"] and result["quality"]["output"]["pairs"] == 4
    assert result["colour"]["output_vs_exemplar"]["regions"] > 0 and not result["colour"]["warp_vs_exemplar"]["regions"]
    # without clusters the target's own features: another output
    from cocosnet_tf.models.pix2pixhd.run import CLUSTERS_FILE

    (run_dir / CLUSTERS_FILE).unlink()
    code, _, err = run_main(evaluate.main, ["--run", run_dir, "--out", tmp_path / "own", "--set",
                                            "evaluate.num_samples=4", "evaluate.swd_min_resolution=16"], capsys)
    assert code == 0, err
    own = json.loads((tmp_path / "own" / "metrics.json").read_text())
    assert "of the target itself" in own["inputs"]["features"]
    assert own["quality"]["output"]["psnr"] != result["quality"]["output"]["psnr"]


@pytest.mark.parametrize("form", ["savedmodel", "onnx"])
def test_exports_match_the_model_on_every_sample(tmp_path, capsys, form):
    from cocosnet_tf.export import __main__ as export

    from conftest import run_main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_pix2pixhd_run(run_dir)
    code, out, err = run_main(export.main, [form, "--run", run_dir, "--out", tmp_path / "exports"], capsys)
    assert code == 0, err
    checks = [line for line in out.splitlines() if "max |diff|" in line]
    # both sizes, every sample held to the tolerance: no value is only reported
    assert len(checks) == 2 and not any("reported" in line for line in checks), out
