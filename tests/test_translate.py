"""python -m cocosnet_tf.translate: outputs equal the restored model's, warps and pair
lists, and bad input is one clear error that writes nothing.

One tiny run directory (64 x 64, widths 8, two correspondence levels) is made once per
module, the way train.py writes it; translate builds the network once per process."""

import os
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import generator_outputs_nan, run_main, save_run
from cocosnet_tf import translate
from cocosnet_tf.config import load_config
from cocosnet_tf.data.synthetic import make_pair
from cocosnet_tf.visualize import to_uint8, upsample_nearest

SIZE = 64
LABEL_NC = 8
TINY = [f"data.crop_size=[{SIZE},{SIZE}]", "model.nef=8", "model.ngf=8", "model.ndf=8", "model.corr_levels=2",
        "model.patchmatch_iterations=1", "losses.vgg=0", "losses.perceptual=0", "losses.contextual=0",
        "train.batch_size=2"]


def save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return str(path)


def read(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    run = root / "run"
    config = load_config(None, TINY)
    model = save_run(config, run)
    with generator_outputs_nan(model):
        tf.train.Checkpoint(model=model).write(str(root / "nan" / "ckpt"))

    # a checkpoint of another model, one missing the correspondence network, one with no model
    class Other(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.generator = keras.layers.Dense(2)

        def call(self, x):
            return self.generator(x)

    other = Other()
    other(tf.zeros([1, 3]))
    tf.train.Checkpoint(model=other).write(str(root / "other" / "ckpt"))
    generator_only = tf.Module()
    generator_only.generator = model.generator
    tf.train.Checkpoint(model=generator_only).write(str(root / "generator_only" / "ckpt"))
    tf.train.Checkpoint(step=tf.Variable(1)).write(str(root / "nomodel" / "ckpt"))

    # three synthetic pairs as files: label ids, exemplar photo, exemplar label ids
    data = root / "data"
    pairs = []
    for i in range(3):
        pair = make_pair(0, i, SIZE, SIZE, cross_scene_probability=1.0 if i == 2 else 0.0)
        photo = np.clip(np.rint(pair.exemplar * 255), 0, 255).astype(np.uint8)
        pairs.append(SimpleNamespace(
            input=save(data / f"in{i}.png", pair.classes), exemplar=save(data / "photos" / f"ex{i}.png", photo),
            exemplar_input=save(data / "photos" / f"ex{i}_labels.png", pair.exemplar_classes),
            label=np.eye(LABEL_NC, dtype=np.float32)[pair.classes], photo=photo,
            exemplar_label=np.eye(LABEL_NC, dtype=np.float32)[pair.exemplar_classes]))
    return SimpleNamespace(root=root, run=str(run), model=model, config=config, pairs=pairs, data=data)


def expected(model, pairs):
    """The model called directly: (uint8 outputs [B, H, W, 3], uint8 warps per level at full size)."""
    out = model(np.stack([p.label for p in pairs]), np.stack([p.photo.astype(np.float32) / 127.5 - 1 for p in pairs]),
                np.stack([p.exemplar_label for p in pairs]))
    warps = [np.stack([to_uint8(upsample_nearest(x[i], SIZE, SIZE)) for i in range(len(pairs))])
             for x in (w.numpy() for w in out["warps"])]
    return to_uint8(out["image"].numpy()), warps


def assert_same_picture(got, want):
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1, f"differs by up to {diff.max()} levels"
    assert (diff == 0).mean() > 0.99


def translate_main(args, capsys):
    """(exit code, stdout, stderr) of python -m cocosnet_tf.translate ARGS."""
    return run_main(translate.main, args, capsys)


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


# ----------------------------------------------------------------------------- with the network


def test_one_pair_equals_the_restored_model_with_warps(tiny, tmp_path, capsys):
    p = tiny.pairs[0]
    out = tmp_path / "out" / "result.png"
    code, stdout, err = translate_main(["--run", tiny.run, "--input", p.input, "--exemplar", p.exemplar,
                                        "--exemplar-input", p.exemplar_input, "--out", out, "--warps"], capsys)
    assert code == 0, err
    assert "ckpt-1" in stdout
    image, warps = expected(tiny.model, [p])
    assert image[0].std() > 1  # not a flat picture: the comparison can tell models apart
    assert_same_picture(read(out), image[0])
    assert files_under(tmp_path / "out") == ["result.png", "result_warp0.png", "result_warp1.png"]
    for level, warp in enumerate(warps):
        assert_same_picture(read(tmp_path / "out" / f"result_warp{level}.png"), warp[0])
    # the coarse warp is blocky (nearest-upsampled from 1/8 size), the finer one less so
    assert np.array_equal(read(tmp_path / "out" / "result_warp0.png")[::8, ::8].repeat(8, 0).repeat(8, 1),
                          read(tmp_path / "out" / "result_warp0.png"))


def test_pair_list_writes_one_output_per_line(tiny, tmp_path, capsys):
    lines = ["# input,exemplar,exemplar labels"]
    for p in tiny.pairs:
        lines.append(",".join(os.path.relpath(x, tiny.data) for x in (p.input, p.exemplar, p.exemplar_input)))
    lines.insert(2, "")
    pairs_file = tiny.data / "pairs.txt"
    pairs_file.write_text("\n".join(lines) + "\n")
    out_dir = tmp_path / "batch"
    code, stdout, err = translate_main(["--run", tiny.run, "--pairs", pairs_file, "--out-dir", out_dir,
                                        "--batch-size", 2], capsys)
    assert code == 0, err
    names = ["0002_in0_ex0.png", "0004_in1_ex1.png", "0005_in2_ex2.png"]  # line numbers in the list
    assert files_under(out_dir) == sorted(names + ["config.yaml"])
    assert load_config(out_dir / "config.yaml").to_dict() == tiny.config.to_dict()
    images, _ = expected(tiny.model, tiny.pairs)
    for name, image in zip(names, images):
        assert_same_picture(read(out_dir / name), image)
    assert "3/3 pairs" in stdout


def test_a_checkpoint_of_another_model_is_refused(tiny, tmp_path, capsys):
    p = tiny.pairs[0]
    out = tmp_path / "out" / "x.png"
    base = ["--run", tiny.run, "--input", p.input, "--exemplar", p.exemplar, "--exemplar-input", p.exemplar_input,
            "--out", out]
    for other in ("other", "generator_only"):
        code, _, err = translate_main(base + ["--checkpoint", tiny.root / other / "ckpt"], capsys)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert "does not fit the model" in err and "corr_levels=2" in err, err
    code, _, err = translate_main(base + ["--checkpoint", tiny.root / "nomodel" / "ckpt"], capsys)
    assert code == 2 and "holds no model" in err
    assert not (tmp_path / "out").exists()


def test_non_finite_output_writes_nothing(tiny, tmp_path, capsys):
    p = tiny.pairs[0]
    out = tmp_path / "new" / "x.png"
    code, _, err = translate_main(["--run", tiny.run, "--checkpoint", tiny.root / "nan" / "ckpt", "--input", p.input,
                                   "--exemplar", p.exemplar, "--exemplar-input", p.exemplar_input, "--out", out,
                                   "--warps"], capsys)
    assert code == 2 and "not finite" in err and "in0.png" in err
    assert not (tmp_path / "new").exists()  # nor the folder it created


# ----------------------------------------------------------------------------- bad input, before the network


def bad_inputs(tiny, tmp_path):
    """name -> (arguments replacing the good ones, text the error must contain)."""
    p = tiny.pairs[0]
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    tiny.config.save(untrained / "config.yaml")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[5, 7] = LABEL_NC + 1
    too_high = save(tmp_path / "too_high.png", ids)
    np.save(tmp_path / "five.npy", np.zeros((SIZE, SIZE, 5), np.float32))
    np.save(tmp_path / "labels.npy", p.exemplar_label)
    holes = np.zeros((SIZE, SIZE, LABEL_NC), np.float32)
    holes[1, 2, 3], holes[4, 5, 6] = np.nan, np.inf
    np.save(tmp_path / "holes.npy", holes)
    colour = save(tmp_path / "colour.png", p.photo)
    return {
        "run without config": ({"--run": empty_run}, "config.yaml"),
        "run without checkpoint": ({"--run": untrained}, "no checkpoint"),
        "missing exemplar": ({"--exemplar": tmp_path / "nope.png"}, "nope.png: file does not exist"),
        "corrupt input": ({"--input": corrupt}, "corrupt.png: unreadable"),
        "label id too high": ({"--input": too_high}, f"too_high.png: label ids [{LABEL_NC + 1}]"),
        "photo as input": ({"--input": colour}, "colour.png: label map is a colour image"),
        "label map as exemplar": ({"--exemplar": save(tmp_path / "binary.png", (ids > 0) * 255)},
                                  "binary.png: the exemplar has only black and white"),
        "no exemplar input": ({"--exemplar-input": None}, "cannot derive it"),
        "wrong channels": ({"--input": tmp_path / "five.npy"}, f"five.npy: semantic map of shape [64, 64, 5]; "
                           f"this run needs [H, W, {LABEL_NC}]"),
        "different kinds": ({"--exemplar-input": tmp_path / "labels.npy"}, "(label map) and the exemplar's map"),
        "non-finite array": ({"--input": tmp_path / "holes.npy"}, "holes.npy: values must be finite, but it holds "
                             "1 NaN, 1 +inf (the first at row 1, column 2, channel 3)"),
        "exemplar map of another size": ({"--exemplar-input": save(tmp_path / "small.png", np.zeros((32, 48)))},
                                         "small.png: 48x32 but its exemplar"),
        "bad checkpoint path": ({"--checkpoint": tmp_path / "nothing"}, "not a checkpoint"),
    }


CASES = ["run without config", "run without checkpoint", "missing exemplar", "corrupt input", "label id too high",
         "photo as input", "label map as exemplar", "no exemplar input", "wrong channels", "different kinds",
         "non-finite array", "exemplar map of another size", "bad checkpoint path"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_error_and_writes_nothing(tiny, tmp_path, capsys, case):
    p = tiny.pairs[0]
    given = {"--run": tiny.run, "--input": p.input, "--exemplar": p.exemplar, "--exemplar-input": p.exemplar_input,
             "--out": tmp_path / "out" / "x.png"}
    cases = bad_inputs(tiny, tmp_path)
    assert sorted(cases) == sorted(CASES)  # none made but left untested
    replaced, message = cases[case]
    given.update(replaced)
    args = [str(x) for k, v in given.items() if v is not None for x in (k, v)] + ["--warps"]
    code, _, err = translate_main(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_a_bad_pair_list_names_every_bad_line_and_writes_nothing(tiny, tmp_path, capsys):
    p = tiny.pairs[0]
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(f"{p.input},{p.exemplar},{p.exemplar_input}\n"
                          f"{p.input},{p.exemplar},{p.exemplar_input}\n"
                          f"{p.input},photos/missing.png,{p.exemplar_input}\n"
                          f"{p.input},{p.exemplar}\n")
    out_dir = tmp_path / "batch"
    code, _, err = translate_main(["--run", tiny.run, "--pairs", pairs_file, "--out-dir", out_dir], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "2 of 4 pairs" in err and "line 3:" in err and "missing.png: file does not exist" in err
    assert "line 4:" in err and "line 1:" not in err and "line 2:" not in err
    assert not out_dir.exists()
    pairs_file.write_text(f"{p.input}\n")
    code, _, err = translate_main(["--run", tiny.run, "--pairs", pairs_file, "--out-dir", out_dir], capsys)
    # one field is a line for a kind without exemplar (pix2pixHD); a CoCosNet run refuses it
    assert code == 2 and "line 1: a cocosnet run translates after an exemplar" in err
    code, _, err = translate_main(["--run", tiny.run, "--pairs", pairs_file, "--out-dir", out_dir,
                                   "--input", p.input], capsys)
    assert code == 2 and "not both" in err
    assert not out_dir.exists()


# ----------------------------------------------------------------------------- other tasks' inputs (no network)


def test_edges_inputs_photos_and_edge_maps(tmp_path):
    config = load_config(None, ["data.dataset=edges", "data.root=unused", f"data.crop_size=[{SIZE},{SIZE}]"])
    pair = make_pair(0, 0, SIZE, SIZE)
    photo = save(tmp_path / "photo.png", np.rint(pair.image * 255))
    exemplar = save(tmp_path / "exemplar.png", np.rint(pair.exemplar * 255))
    edges = translate.prepare(translate.Job(photo, exemplar, None, "x.png"), config)
    assert edges["label"].shape == (SIZE, SIZE, 1) and 0 < edges["label"].mean() < 0.5
    assert set(np.unique(edges["label"])) <= {0.0, 1.0}
    # without --exemplar-input the exemplar's edges come from its photo, as the input's from its photo
    swapped = translate.prepare(translate.Job(exemplar, photo, None, "x.png"), config)
    assert np.array_equal(swapped["label"], edges["exemplar_label"])
    # a binary edge map is used as it is, white on black or black on white
    white = save(tmp_path / "white_edges.png", edges["label"][..., 0] * 255)
    black = save(tmp_path / "black_edges.png", 255 - edges["label"][..., 0] * 255)
    for drawn in (white, black):
        given = translate.prepare(translate.Job(drawn, exemplar, None, "x.png"), config)
        assert np.array_equal(given["label"], edges["label"])
    with pytest.raises(translate.DataError, match="only black and white"):
        translate.prepare(translate.Job(photo, white, None, "x.png"), config)


def test_pose_inputs_from_keypoint_files(tmp_path):
    config = load_config(None, ["data.dataset=deepfashion", "data.root=unused", f"data.crop_size=[{SIZE},{SIZE}]"])
    rng = np.random.default_rng(0)
    for name in ("person", "model"):
        candidate = np.column_stack([rng.uniform(200, 800, (18, 2)), np.ones(18), np.arange(18)])
        np.savetxt(tmp_path / f"{name}_candidate.txt", candidate)
        np.savetxt(tmp_path / f"{name}_subset.txt", np.r_[np.arange(18), 30.0, 18.0][None])
    photo = save(tmp_path / "model.jpg", rng.integers(0, 255, (110, 75, 3)))  # not square: padded like the dataset
    job = translate.Job(str(tmp_path / "person_candidate.txt"), photo, str(tmp_path / "model_subset.txt"), "x.png")
    sample = translate.prepare(job, config)
    assert sample["label"].shape == (SIZE, SIZE, 20) and sample["exemplar_label"].shape == (SIZE, SIZE, 20)
    assert sample["exemplar"].shape == (SIZE, SIZE, 3)
    assert not np.array_equal(sample["label"], sample["exemplar_label"])
    with pytest.raises(translate.DataError, match="cannot derive it"):
        translate.prepare(translate.Job(job.input, photo, None, "x.png"), config)
    with pytest.raises(translate.DataError, match="keypoint files"):
        translate.prepare(translate.Job(photo, photo, job.exemplar_input, "x.png"), config)
    np.save(tmp_path / "pose.npy", sample["label"])
    with pytest.raises(translate.DataError, match="are of different kinds"):
        translate.prepare(translate.Job(str(tmp_path / "pose.npy"), photo, job.exemplar_input, "x.png"), config)

