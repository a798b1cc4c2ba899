"""python -m cocosnet_tf.evaluate: every file with its keys, the same numbers twice, the
metrics wired to the right levels, and bad input as one error that writes nothing.

One tiny run (64 x 64, widths 8, three correspondence levels) saved the way train.py
saves it (model, both optimisers, step), made once per module; evaluate builds its own
network once per process. The run is not trained: a training step costs more tracing
time than this whole module, and evaluate reads the same variables either way."""

import gc
import json
import os
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import fetched, generator_outputs_nan, run_main, save_run
from cocosnet_tf import evaluate, fid_inception, heldout, metrics, runs
from cocosnet_tf.config import ConfigError, load_config
from cocosnet_tf.data.geometry import xy_grid
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.models.cocosnet.generator import Generator
from cocosnet_tf.runs import find_checkpoint, load_model
from cocosnet_tf.visualize import HEADER, label_picture

SIZE = 64
LEVELS = 3
TINY = [f"data.crop_size=[{SIZE},{SIZE}]", "model.nef=8", "model.ngf=8", "model.ndf=8", f"model.corr_levels={LEVELS}",
        "model.patchmatch_iterations=1", "losses.vgg=0", "losses.perceptual=0", "losses.contextual=0",
        "train.batch_size=2", "data.synthetic.num_samples=16", "data.synthetic.cross_scene_probability=0.3"]
# one batch (eager: tracing costs seconds; the traced path has its own test), a grid of three
EVAL = ["evaluate.num_samples=6", "evaluate.grid_rows=3", "evaluate.swd_patches=32", "evaluate.swd_directions=64"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    run = root / "run"
    config = load_config(None, TINY)
    keras.utils.set_random_seed(config.train.seed)  # as train.py: the same weights every session
    model = save_run(config, run)
    with generator_outputs_nan(model):
        tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(root / "nan" / "checkpoints"), 1).save()
    config.save(root / "nan" / "config.yaml")

    # a run whose checkpoint holds a generator of another width
    other = root / "other"
    narrow = Generator(config.data.semantic_nc, LEVELS, ngf=4)
    warps = [tf.zeros([1, SIZE // f, SIZE // f, 3]) for f in (8, 4, 2)]
    narrow(tf.zeros([1, SIZE, SIZE, config.data.semantic_nc]), warps)
    holder = tf.Module()
    holder.correspondence, holder.generator = model.correspondence, narrow
    tf.train.CheckpointManager(tf.train.Checkpoint(model=holder), str(other / "checkpoints"), 1).save()
    config.save(other / "config.yaml")
    return SimpleNamespace(root=root, run=str(run), other=str(other), nan=str(root / "nan"), config=config)


MACHINE_CACHE = os.environ.get("COCOSNET_TF_WEIGHTS")


@pytest.fixture(autouse=True)
def no_inception_weights(tmp_path, monkeypatch):
    """An empty weights cache: FID is 'not computed' whatever this machine holds."""
    monkeypatch.setenv("COCOSNET_TF_WEIGHTS", str(tmp_path / "weights"))


def evaluate_main(args, capsys):
    """(exit code, stdout, stderr) of python -m cocosnet_tf.evaluate ARGS."""
    return run_main(evaluate.main, args, capsys)


# ----------------------------------------------------------------------------- the command on a trained run


def test_writes_every_file_with_its_keys_and_the_same_numbers_twice(tiny, tmp_path, capsys):
    outputs = []
    for name in ("first", "second"):
        out = tmp_path / name
        code, stdout, err = evaluate_main(["--run", tiny.run, "--out", out, "--set", *EVAL], capsys)
        assert code == 0, err
        assert "6/6 pairs" in stdout and "FID not computed" in stdout
        assert sorted(os.listdir(out)) == sorted(evaluate.OUTPUT_FILES)  # and no staging folder left
        outputs.append(out)
    first, second = ((o / "metrics.json").read_bytes() for o in outputs)
    assert first == second
    assert (outputs[0] / "metrics.md").read_text() == (outputs[1] / "metrics.md").read_text()

    result = json.loads(first)
    assert set(result) == {"run", "checkpoint", "split", "conventions", "correspondence", "quality", "swd", "fid",
                           "colour", "sesim_distance"}
    assert result["checkpoint"].endswith("ckpt-1")
    split = result["split"]
    assert split["pairs"] == 6 and split["phase"] == "test" and split["seed"] == 10007
    assert 0 < split["pairs_with_flow"] < 6  # cross-scene pairs have no flow

    corr = result["correspondence"]
    assert corr["computed"] and [e["factor"] for e in corr["levels"]] == [8, 4, 2]
    for entry in corr["levels"]:
        assert entry["pixels"] > 0 and entry["size"] == [SIZE // entry["factor"]] * 2
        for method in heldout.FLOW_METHODS:
            m = entry[method]
            assert set(m["pck"]) == {"1", "3", "5"} and m["pck"]["1"] <= m["pck"]["3"] <= m["pck"]["5"]
            assert m["epe_image_pixels"] == pytest.approx(m["epe"] * entry["factor"])
    assert corr["levels"][-1]["zero_flow"]["epe"] > 0.5  # the exemplar is warped: identity is wrong
    # at level 0 the upsampled coarsest flow is the model's own
    assert corr["levels"][0]["coarsest_upsampled"]["epe"] == pytest.approx(corr["levels"][0]["model"]["epe"])

    quality = result["quality"]
    assert quality["output"]["pairs"] == 6 and 0 < quality["output"]["ssim"] < 1
    assert [w["warp"]["pairs"] for w in quality["warps"]] == [split["self_ref_pairs"]] * LEVELS
    assert quality["warps"][0]["warp"]["ssim"] is None  # 8 x 8 is below SSIM's window
    assert all(w["exemplar"]["psnr"] < 120 for w in quality["warps"])

    swd = result["swd"]
    assert swd["level_sizes"] == [[64, 64], [32, 32], [16, 16]]
    assert len(swd["output_vs_target"]["levels"]) == 3 and swd["output_vs_target"]["mean"] > 0
    assert result["fid"] == {"computed": False, "reason": result["fid"]["reason"]}
    assert "cocosnet_tf.weights fetch inception" in result["fid"]["reason"]
    assert not result["sesim_distance"]["computed"] and "fetch vgg16" in result["sesim_distance"]["reason"]
    assert "uint8" in result["conventions"]["fid"] and "uint8" in result["conventions"]["images"]

    colour = result["colour"]
    assert colour["output_vs_exemplar"]["regions"] == colour["target_vs_exemplar"]["regions"] > 0
    assert set(colour["output_vs_exemplar"]["per_class"]) <= {str(c) for c in range(8)}

    markdown = (outputs[0] / "metrics.md").read_text()
    for heading in ("## Correspondence", "## Quality against the target", "## Distribution",
                    "## Exemplar faithfulness", "FID not computed", "## Structure"):
        assert heading in markdown
    grid = np.asarray(Image.open(outputs[0] / "examples.png"))
    columns = 2 + LEVELS + 2  # input, exemplar, warps, output, target
    assert grid.shape == (HEADER + 3 * SIZE, columns * SIZE, 3) and grid.std() > 1
    saved = load_config(outputs[0] / "config.yaml")
    assert saved.evaluate.num_samples == 6 and saved.model == tiny.config.model


def test_several_batches_run_traced_and_give_the_eager_outputs(tiny):
    config = load_config(os.path.join(tiny.run, "config.yaml"))
    model = load_model(config, find_checkpoint(tiny.run, None))
    batch = next(iter(build_dataset(evaluate.evaluation_data(config), 2, repeat=False)))
    inputs = [batch[k] for k in ("label", "exemplar", "exemplar_label")]
    eager = heldout.inference_function(model, config, several_batches=False)(*inputs)
    traced_function = heldout.inference_function(model, config, several_batches=True)
    assert isinstance(traced_function, tf.types.experimental.GenericFunction)
    traced = traced_function(*inputs)
    assert set(traced) == {"image", "warps", "positions", "weights", "dense_best"}
    assert len(traced["warps"]) == LEVELS and len(traced["positions"]) == LEVELS - 1
    # float differences of graph and eager may flip a near-tie of PatchMatch's top-K here and there
    for got, want in zip(tf.nest.flatten(traced), tf.nest.flatten(eager)):
        assert got.shape == want.shape and np.mean(np.abs(got.numpy() - want.numpy()) <= 1e-4) > 0.99


# ----------------------------------------------------------------------------- wiring, without the network


def shifted_batch(shift):
    """Two pairs: the first's exemplar is its target moved by `shift` (x, y) pixels, the second has no flow."""
    flow = np.stack([xy_grid(SIZE, SIZE) + shift, np.zeros((SIZE, SIZE, 2))]).astype(np.float32)
    images = np.zeros((2, SIZE, SIZE, 3), np.float32)
    label = np.zeros((2, SIZE, SIZE, 8), np.float32)
    label[..., 0] = 1
    flow_mask = np.stack([np.ones((SIZE, SIZE, 1)), np.zeros((SIZE, SIZE, 1))]).astype(np.float32)
    return {"flow": flow, "flow_mask": flow_mask, "has_flow": np.array([1.0, 0.0]), "self_ref": np.array([1.0, 0.0]),
            "image": images,
            "exemplar": images, "label": label, "exemplar_label": label}


def test_correspondence_metrics_of_a_known_shift_at_every_level():
    """A perfect prediction scores 0 at every level; the zero flow scores the shift, in
    level pixels and in image pixels; the coarse truth upsampled is exact for a shift."""
    config = load_config(None, TINY)
    shift = np.array([4.0, 8.0])
    batch = shifted_batch(shift)
    truth = [metrics.flow_at_level(batch["flow"], np.ones((2, SIZE, SIZE), bool), f)[0] for f in (8, 4, 2)]
    k = 16  # the true position as the first of K candidates, with all the weight
    positions = [np.repeat(t[:, :, :, None], k, axis=3) for t in truth[1:]]
    weights = [np.eye(k)[np.zeros(t.shape[:3], int)] for t in truth[1:]]
    ev = heldout.Evaluation(config)
    ev.add_correspondence(batch, {"dense_best": truth[0], "positions": positions, "weights": weights})
    result = heldout.correspondence_report(ev)
    assert result["pairs"] == 1
    for entry in result["levels"]:
        f = entry["factor"]
        # blocks whose whole flow stays inside the exemplar: x + 4 <= 63 and y + 8 <= 63
        assert entry["pixels"] == (60 // f) * (56 // f)
        assert entry["model"]["epe"] == pytest.approx(0, abs=1e-5) and entry["model"]["pck"]["1"] == 1.0
        assert entry["coarsest_upsampled"]["epe"] == pytest.approx(0, abs=1e-5)
        assert entry["zero_flow"]["epe"] == pytest.approx(np.hypot(*shift) / f, rel=1e-5)
        assert entry["zero_flow"]["epe_image_pixels"] == pytest.approx(np.hypot(*shift), rel=1e-5)
        assert entry["zero_flow"]["pck"]["5"] == float(np.hypot(*shift) / f <= 5)


def identity_outputs():
    """Correspondence outputs that match every pixel with itself, at every level."""
    fine = [np.repeat(xy_grid(SIZE // f, SIZE // f)[None, :, :, None], 2, axis=0).repeat(16, axis=3)
            for f in (4, 2)]
    return {"dense_best": np.repeat(xy_grid(8, 8)[None], 2, axis=0), "positions": fine,
            "weights": [np.ones(p.shape[:4]) / 16 for p in fine]}


def test_without_any_known_flow_correspondence_is_not_computed():
    config = load_config(None, TINY)
    batch = shifted_batch(np.zeros(2))
    batch["has_flow"][:] = 0
    ev = heldout.Evaluation(config)
    ev.add_correspondence(batch, identity_outputs())
    result = heldout.correspondence_report(ev)
    assert result["computed"] is False and "known flow" in result["reason"]


def test_a_level_without_a_whole_known_block_is_reported_empty():
    """Shifted by 57 pixels, only columns 0..6 have a flow inside the exemplar: no 8-pixel
    block is whole, but 4- and 2-pixel blocks are."""
    ev = heldout.Evaluation(load_config(None, TINY))
    ev.add_correspondence(shifted_batch(np.array([57.0, 0.0])), identity_outputs())
    result = heldout.correspondence_report(ev)
    assert result["computed"] and [e["pixels"] for e in result["levels"]] == [0, 1 * 16, 3 * 32]
    assert result["levels"][0]["model"] == {"epe": None, "epe_image_pixels": None,
                                            "pck": {"1": None, "3": None, "5": None}}
    assert result["levels"][2]["zero_flow"]["epe_image_pixels"] == pytest.approx(57.0)
    assert "| 0 (1/8) | 8x8 | model | - | - | - | - | - |" in evaluate.correspondence_markdown(result)


def test_the_inputs_are_pictured_only_for_the_structure_distance(monkeypatch):
    """Picturing every batch's semantic input is work that only sesim_distance reads."""
    pictured = []

    def counted(semantic):
        pictured.append(len(semantic))
        return label_picture(semantic)

    monkeypatch.setattr(heldout, "label_picture", counted)
    batch = shifted_batch(np.zeros(2))
    out = {"image": batch["image"], "warps": [batch["image"][:, ::f, ::f] for f in (8, 4, 2)], **identity_outputs()}
    config = load_config(None, TINY)
    ev = heldout.Evaluation(config)
    ev.add(batch, out)
    assert pictured == [] and ev.inputs == []
    ev = heldout.Evaluation(config, keep_inputs=True)
    ev.add(batch, out)
    assert pictured == [2] and ev.inputs[0].shape == (2, SIZE, SIZE, 3) and ev.inputs[0].dtype == np.uint8


def test_regions_are_label_classes_or_the_whole_image():
    config = load_config(None, TINY)
    label = np.zeros((1, 2, 2, 8), np.float32)
    label[0, 0, 0, 3] = label[0, 0, 1, 7] = label[0, 1, 0, 0] = 1  # one pixel without a class
    np.testing.assert_array_equal(heldout.region_ids(label, config.data), [[[3, 7], [0, -1]]])
    edges = load_config(None, ["data.dataset=edges", "data.root=x"]).data
    np.testing.assert_array_equal(heldout.region_ids(np.ones((1, 2, 2, 1)), edges), np.zeros((1, 2, 2)))


def test_the_finest_warps_colour_distance_is_measured_at_the_images_size():
    """A warp that is the exemplar at half size, in 2x2 blocks, reproduces the exemplar's
    colours exactly once upsampled; the output, a grey image, does not."""
    config = load_config(None, TINY + ["evaluate.histogram_min_pixels=1"])
    rng = np.random.default_rng(0)
    half = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    exemplar = np.repeat(np.repeat(half, 2, axis=1), 2, axis=2)
    label = np.zeros((1, 16, 16, config.data.semantic_nc), np.float32)
    label[:, :, :8, 1] = label[:, :, 8:, 2] = 1
    batch = {"label": label, "exemplar_label": label, "exemplar": exemplar, "image": exemplar}
    ev = heldout.Evaluation(config)
    ev.add_colours(batch, {"image": np.zeros_like(exemplar), "warps": [half[:, ::2, ::2], half]})
    report = heldout.colour_report(ev)
    assert report["warp_vs_exemplar"]["regions"] == report["output_vs_exemplar"]["regions"] == 2
    assert report["warp_vs_exemplar"]["mean"] == 0.0 < report["output_vs_exemplar"]["mean"]


def test_fid_is_computed_with_the_fetched_inception(tiny, tmp_path, capsys, monkeypatch):
    # this machine's weights cache, not the fixture's empty one
    if MACHINE_CACHE is None:
        monkeypatch.delenv("COCOSNET_TF_WEIGHTS")
    else:
        monkeypatch.setenv("COCOSNET_TF_WEIGHTS", MACHINE_CACHE)
    weights = fetched("inception")
    out = tmp_path / "fid"
    code, stdout, err = evaluate_main(["--run", tiny.run, "--out", out, "--set", *EVAL,
                                       f"evaluate.inception_weights={weights}"], capsys)
    assert code == 0, err
    fid = json.loads((out / "metrics.json").read_text())["fid"]
    assert fid["computed"] and fid["pairs"] == 6 and "2015" in fid["image_format"]
    # an untrained generator's outputs are further from the targets than its exemplars are
    assert fid["output_vs_target"] > fid["exemplar_vs_target"] > 0


def test_fid_report_compares_outputs_and_exemplars_with_targets(monkeypatch):
    """The FID wiring with a small stand-in network (the Fréchet distance itself is tested
    in test_metrics)."""
    # 3 features from 6 pairs: full-rank covariances
    stand_in = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    monkeypatch.setattr(fid_inception, "build", lambda weights: stand_in)
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    images = {"output": targets.copy(), "target": targets, "exemplar": targets // 2}
    result = evaluate.fid_report(images, "weights.h5", "")
    assert result["computed"] and result["pairs"] == 6 and "uint8" in result["image_format"]
    assert abs(result["output_vs_target"]) < 1e-6 < result["exemplar_vs_target"]


def test_the_evaluate_section_is_validated():
    assert load_config(None, []).evaluate.num_samples == 256
    with pytest.raises(ConfigError, match="unknown key evaluate.bogus"):
        load_config(None, ["evaluate.bogus=1"])
    with pytest.raises(ConfigError, match="evaluate.swd_min_resolution: 128: allowed from 7 .* to 64"):
        load_config(None, [f"data.crop_size=[{SIZE},{SIZE}]", "evaluate.swd_min_resolution=128"])
    with pytest.raises(ConfigError, match="evaluate.batch_size: must be >= 1"):
        load_config(None, ["evaluate.batch_size=0"])


def test_the_split_is_the_held_out_one_with_the_data_sections_exemplars():
    config = load_config(None, TINY + ["evaluate.num_samples=5"])
    data = evaluate.evaluation_data(config)
    assert (data.phase, data.shuffle, data.seed, data.max_samples) == ("test", False, 10007, 5)
    assert data.synthetic == config.data.synthetic


# ----------------------------------------------------------------------------- bad input


def bad_runs(tiny, tmp_path):
    """name -> (arguments, text the error must contain)."""
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    tiny.config.save(untrained / "config.yaml")
    return {
        "missing run": (["--run", tmp_path / "nothing"], "folder does not exist"),
        "run without checkpoint": (["--run", untrained], "no checkpoint"),
        "diverged checkpoint": (["--run", tiny.nan, "--set", "evaluate.num_samples=2"], "output is not finite"),
        "unknown key": (["--run", tiny.run, "--set", "evaluate.bogus=1"], "evaluate.bogus"),
        "bad value": (["--run", tiny.run, "--set", "evaluate.num_samples=-1"], "evaluate.num_samples"),
        "missing Inception file": (["--run", tiny.run, "--set", "evaluate.inception_weights=/no/such.h5"],
                                   "evaluate.inception_weights: /no/such.h5 does not exist"),
        "missing config file": (["--run", tiny.run, "--config", tmp_path / "none.yaml"], "none.yaml"),
    }


CASES = ["missing run", "run without checkpoint", "diverged checkpoint", "unknown key", "bad value",
         "missing Inception file", "missing config file"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_error_and_writes_nothing(tiny, tmp_path, capsys, case):
    cases = bad_runs(tiny, tmp_path)
    assert sorted(cases) == sorted(CASES)  # none made but left untested
    args, message = cases[case]
    code, _, err = evaluate_main(args + ["--out", tmp_path / "out"], capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_out_may_not_be_the_run_directory(tiny, capsys):
    before = sorted(os.listdir(tiny.run))
    code, _, err = evaluate_main(["--run", tiny.run, "--out", tiny.run], capsys)
    assert code == 2 and "is the run directory" in err
    assert sorted(os.listdir(tiny.run)) == before


def test_a_checkpoint_of_another_architecture_is_one_error_and_leaves_no_warnings(tiny, tmp_path, capsys, caplog):
    """Last in the module: the failed read drops the cached network. Without that, its
    pending values would log a warning each at exit, hundreds of lines after the error;
    clearing the cache here stands in for the exit."""
    code, _, err = evaluate_main(["--run", tiny.other, "--out", tmp_path / "out"], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "does not fit the model of this run's config (model.nef=8" in err, err
    assert not (tmp_path / "out").exists()
    runs._BUILT.clear()
    gc.collect()
    assert not [r for r in caplog.records if "unrestored values" in r.getMessage()]
