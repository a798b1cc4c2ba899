"""`python -m cocosnet_tf.translate`: translate inputs into photos with a trained run.

    python -m cocosnet_tf.translate --run runs/demo --input labels.png --exemplar photo.png \\
        --exemplar-input photo_labels.png --out out.png [--warps]
    python -m cocosnet_tf.translate --run runs/demo --pairs pairs.txt --out-dir out/ [--batch-size 4]

The input is what the run's dataset (`data.dataset` in RUN/config.yaml) feeds the
network, given as files:

  synthetic, segmentation   a label-id map (one-channel PNG of class ids, the dataset's
                            own files: data.segmentation.label_offset and dontcare_id apply)
  edges                     a photo (its Canny edges are computed, data.edges) or a binary
                            edge map (one channel, only 0/255 or 0/1; white edges on black)
  deepfashion               OpenPose keypoints: NAME_candidate.txt (or NAME_subset.txt; the
                            other file must lie beside it), drawn as the 20-channel pose map
  any dataset               a .npy float array [H, W, C] in [0, 1] with the run's C channels

The exemplar is a photo. Its semantic map is `--exemplar-input` (same forms as the input);
an edges run derives it from the exemplar photo when it is not given; the other tasks
cannot derive it and need it. Pair lists hold lines `input,exemplar[,exemplar_input]`,
paths relative to the list's folder; `#` comments and blank lines are skipped.

Design decisions:

- Size: every input is resized to the run's data.crop_size (photos bicubic, label ids,
  edge maps and .npy maps by nearest neighbour) and the output is written at that size.
  The whole picture is kept (no crop, unlike training's random crop), so the output
  shows all of the input; an input of another aspect ratio is stretched. Edge maps of
  photos are computed after the resize, as the edges dataset does, so that edges are
  one pixel thick as in training. `--set data.crop_size=[H,W]` translates at another
  size (the networks are resolution-general; quality away from the trained size is
  not guaranteed). DeepFashion exemplars that are not square are padded and resized to
  the keypoint frame first, as the dataset does.
- Kinds: the input and the exemplar's semantic map are made the same way (both label
  maps, both keypoint files or both .npy arrays), so that the correspondence compares
  like with like; only edges runs mix freely (a drawn edge map against edges computed
  from the exemplar photo is the usual use). A label map of an exemplar must have the
  exemplar's size (they are resized independently). An exemplar that has only black and
  white pixels is refused: it is an edge or label map given where a photo belongs.
  Runs with data.use_instance need the instance-boundary channel, which a label map
  alone does not give: they take .npy maps. A one-channel binary picture in an edges
  run is an edge map; if most of it is white it is taken as black edges on white and
  inverted (edges are sparse).
- Validation first: every file of every pair is read and converted before the network
  is built, and all problems are reported in one line (pair lists: with line numbers).
  Label ids are checked after the resize to crop size, as the data pipeline does.
- Nothing half-written: outputs go to a hidden staging folder beside them and are moved
  into place only when every pair has been translated with finite values; any error
  removes them (and the output folder, if this command created it and it is empty).
  Ctrl-C therefore keeps nothing either.
- Output names: single mode writes --out (a .png) and, with --warps, OUT_warp0.png ...
  OUT_warp{L-1}.png beside it, coarsest level first, each nearest-upsampled to the output
  size. Pair lists write `NNNN_INPUT_EXEMPLAR.png` per line into --out-dir (NNNN = the
  line number in the list, so names are unique, sort in list order and lead back to
  their line; keypoint suffixes _candidate/_subset are dropped from INPUT), warps as
  `NNNN_INPUT_EXEMPLAR_warp0.png` ..., and the resolved config.yaml. Single mode writes
  no config.yaml: its folder is the user's (often the run directory, whose config.yaml
  must not change).
- Checkpoint: the newest in RUN/checkpoints, or --checkpoint (a folder, or a prefix such
  as RUN/checkpoints/ckpt-1000). Only the correspondence network and the generator are
  restored (optimisers, step and discriminator are ignored, so checkpoints written by
  Checkpoint.write or without a discriminator work too); every one of their variables
  must be matched and of its shape, so a checkpoint of another architecture (or another
  model config through --set) or one missing weights is an error, never random weights.
  The discriminator is not built.
- Precision: inference runs in float32 whatever train.mixed_precision was (mixed
  precision keeps float32 weights), except for a float64 run (numerical checks),
  whose float64 weights run in float64.
- Execution: one batch runs eagerly; more batches run through one tf.function traced
  for any batch size (the last, partial batch does not retrace): tracing costs seconds
  and pays off only over several calls. In one process, repeated calls with the same
  model config reuse the built network (building is the slow part at small sizes) and
  restore the checkpoint into it each time.

Errors (missing run, config or checkpoint, missing or corrupt files, label ids outside
data.label_nc, wrong channel counts, mismatched kinds, a checkpoint that does not fit or
is truncated, non-finite output) end the command with one line `error: ...` and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cocosnet_tf.cli import add_run_arguments, add_set_argument, run
from cocosnet_tf.config import Config, ConfigError, DataConfig
from cocosnet_tf.data.deepfashion import keypoint_stem
from cocosnet_tf.data.edges import binary_picture, edge_map
from cocosnet_tf.data.exemplars import normalise_key
from cocosnet_tf.data.folders import resize_ids, resize_image
from cocosnet_tf.data.kinds import ARRAY, dataset_kind
from cocosnet_tf.data.sources import make_sample
from cocosnet_tf.fileio import DataError, Staging, read_rgb
from cocosnet_tf.visualize import to_uint8, upsample_nearest

from cocosnet_tf.models.registry import model_kind

if TYPE_CHECKING:  # TensorFlow loads only once a network is needed: --help and input checks answer at once
    import keras

KEEP_PREPARED_BYTES = 256 * 2**20  # validated inputs stay in memory up to this size
MAX_LISTED_PROBLEMS = 5
PROGRESS_SECONDS = 5.0  # pair lists print progress at most this often

# kinds of semantic-map files


@dataclass(frozen=True)
class Job:
    """One translation: files in, output path, and where it was asked for (for errors)."""

    input: str
    exemplar: str | None  # None: none given (kinds that need no exemplar)
    exemplar_input: str | None
    out: str
    where: str = ""  # "" on the command line, "LIST: line N" in a pair list

    def located(self, message: str) -> str:
        """`message`, led by the pair list line the job comes from (if any)."""
        return f"{self.where}: {message}" if self.where else message


# ----------------------------------------------------------------------------- inputs


def read_array(path: str, data: DataConfig, hw: tuple[int, int]) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError(f"{path}: file does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err})") from err
    if array.ndim != 3 or array.shape[-1] != data.semantic_nc:
        raise DataError(f"{path}: semantic map of shape {list(array.shape)}; this run needs "
                        f"[H, W, {data.semantic_nc}] ({dataset_kind(data).channel_layout(data)})")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{path}: array of {array.dtype}; expected numbers in [0, 1]")
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        bad = array[~finite]
        counts = {"NaN": np.isnan(bad).sum(), "+inf": (bad > 0).sum(), "-inf": (bad < 0).sum()}
        found = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        y, x, c = np.argwhere(~finite)[0].tolist()
        raise DataError(f"{path}: values must be finite, but it holds {found} "
                        f"(the first at row {y}, column {x}, channel {c})")
    if array.min() < 0 or array.max() > 1:
        raise DataError(f"{path}: values must be within [0, 1], found [{array.min():g}, {array.max():g}]")
    return resize_ids(array, *hw)


def read_semantic(path: str, data: DataConfig, hw: tuple[int, int]) -> tuple[np.ndarray, str, tuple | None]:
    """(semantic map float32 [h, w, C] at the crop size, its form, the file's own (H, W) or None)."""
    if path.lower().endswith(".npy"):
        return read_array(path, data, hw), ARRAY, None
    return dataset_kind(data).read_input(path, data, hw)


def read_exemplar(path: str, data: DataConfig) -> np.ndarray:
    """The exemplar photo, uint8 at its own size (DeepFashion: in the keypoint frame)."""
    if path.lower().endswith((".npy", ".txt")):
        raise DataError(f"{path}: the exemplar must be a photo (an image file)")
    rgb = read_rgb(path)
    if binary_picture(rgb) is not None:
        raise DataError(f"{path}: the exemplar has only black and white pixels, like an edge or label map; "
                        "expected a photo")
    return dataset_kind(data).exemplar_photo(rgb)


def prepare(job: Job, config: Config) -> dict[str, np.ndarray]:
    """label, exemplar ([-1, 1]) and exemplar_label of one job at the crop size."""
    data = config.data
    kind = dataset_kind(data)
    hw = tuple(data.crop_size)
    label, form, _ = read_semantic(job.input, data, hw)
    if job.exemplar is None:
        return {"label": label}
    photo = read_exemplar(job.exemplar, data)
    if job.exemplar_input is None:
        if not kind.derives_exemplar_map:
            raise DataError(f"{job.exemplar}: the exemplar's semantic map is missing; a {kind.name} run cannot "
                            f"derive it from the photo: give it with --exemplar-input (pair lists: a third field)")
        exemplar = resize_image(photo, *hw)
        exemplar_label = edge_map(exemplar, data.edges)
    else:
        exemplar_label, exemplar_form, own_size = read_semantic(job.exemplar_input, data, hw)
        # a map derived from the exemplar photo is as good as a given one, so those mix freely
        if not kind.derives_exemplar_map and exemplar_form != form:
            raise DataError(f"the input {job.input} ({form}) and the exemplar's map {job.exemplar_input} "
                            f"({exemplar_form}) are of different kinds; give both the same way")
        if own_size is not None and own_size != photo.shape[:2]:
            raise DataError(f"{job.exemplar_input}: {own_size[1]}x{own_size[0]} but its exemplar {job.exemplar} is "
                            f"{photo.shape[1]}x{photo.shape[0]}; a map must have its photo's size")
        exemplar = resize_image(photo, *hw)
    # make_sample checks the sizes and scales photos to [-1, 1]; there is no target image
    sample = make_sample(exemplar, label, exemplar, exemplar_label, False, None)
    if not model_kind(config).needs_exemplar:
        # not an exemplar to follow: a photo whose appearance the model takes (pix2pixHD's features)
        return {"label": sample["label"], "photo": sample["exemplar"], "photo_label": sample["exemplar_label"]}
    return {k: sample[k] for k in ("label", "exemplar", "exemplar_label")}


def prepare_all(jobs: list[Job], config: Config) -> list[dict] | None:
    """Read and check every job before anything runs; all problems in one error. Returns
    the prepared inputs when they fit in memory (else they are read again later)."""
    h, w = config.data.crop_size
    keep = len(jobs) * h * w * (2 * config.data.semantic_nc + 3) * 4 <= KEEP_PREPARED_BYTES
    prepared, problems = [], []
    for job in jobs:
        try:
            sample = prepare(job, config)
        except DataError as err:
            problems.append(job.located(str(err)))
            continue
        if keep:
            prepared.append(sample)
    if problems:
        if len(jobs) == 1:
            raise DataError(problems[0])
        shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise DataError(f"{len(problems)} of {len(jobs)} pairs cannot be translated (nothing was written): "
                        + shown + (f"; ... {more} more" if more > 0 else ""))
    return prepared if keep else None


def _stem(path: str) -> str:
    name = os.path.basename(path)
    return keypoint_stem(name) or os.path.splitext(name)[0]


def read_pairs(path: str, out_dir: str) -> list[Job]:
    """Lines `input,exemplar[,exemplar_input]`, relative to the list's folder."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: pair list does not exist")
    folder = os.path.dirname(os.path.abspath(path))
    jobs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = [normalise_key(x) for x in line.rstrip("\n").split(",")]
            if len(fields) not in (1, 2, 3) or not all(fields):
                raise DataError(f"{path}: line {number}: expected 'input[,exemplar[,exemplar_input]]', "
                                f"got {line.strip()!r}")
            paths = [os.path.join(folder, p) for p in fields] + [None] * (3 - len(fields))
            name = f"{number:04d}_{'_'.join(_stem(p) for p in paths[:2] if p)}.png"
            jobs.append(Job(*paths, os.path.join(out_dir, name), f"{path}: line {number}"))
    if not jobs:
        raise DataError(f"{path}: pair list is empty")
    return jobs


# ----------------------------------------------------------------------------- outputs


def picture_path(out: str, name: str) -> str:
    """Where a picture the model gives besides the image (CoCosNet: warp0 ...) goes."""
    return f"{os.path.splitext(out)[0]}_{name}.png"


# ----------------------------------------------------------------------------- translation


def network_call(model: keras.Model, config: Config, several_batches: bool):
    """The model kind's inference function, eager for one batch; for several, one
    tf.function traced for any batch size, so that the last, partial batch does not
    retrace (tracing costs seconds)."""
    kind = model_kind(config)
    if not several_batches:
        return kind.inference(model)
    import tensorflow as tf

    h, w = config.data.crop_size
    specs = [tf.TensorSpec([None, h, w, channels]) for channels in kind.input_channels(config).values()]
    return tf.function(kind.inference(model), input_signature=specs)


def stage_outputs(staging: Staging, job: Job, pictures: dict[str, np.ndarray], warps: bool,
                  checkpoint: str) -> None:
    """One job's image (and the model's other pictures at its size); refuses non-finite output."""
    if not all(np.isfinite(x).all() for x in pictures.values()):
        raise DataError(job.located(f"the network's output for {job.input} with exemplar {job.exemplar} is not "
                                    f"finite (NaN or inf); checkpoint {checkpoint} may have diverged "
                                    "(nothing was written)"))
    image = pictures["image"]
    staging.add(job.out, to_uint8(image))
    if warps:
        h, w = image.shape[:2]
        for name, x in pictures.items():
            if name != "image":
                staging.add(picture_path(job.out, name), to_uint8(upsample_nearest(x, h, w)))


def print_progress(done: int, total: int, start_time: float) -> None:
    rate = done / max(time.perf_counter() - start_time, 1e-9)
    print(f"{done}/{total} pairs  {rate:.2f} pairs/s  ETA {(total - done) / rate:.0f} s", flush=True)


def translate(model: keras.Model, jobs: list[Job], prepared: list[dict] | None, config: Config, batch_size: int,
              staging: Staging, warps: bool, checkpoint: str, progress: bool = False) -> int:
    """Translate `jobs` in batches into `staging`; `prepared` are their inputs, or None to read them again.
    Returns how many pictures besides the image the model gives per pair."""
    call = network_call(model, config, several_batches=len(jobs) > batch_size)
    kind = model_kind(config)
    start_time = shown = time.perf_counter()
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        inputs = prepared[start:start + batch_size] if prepared is not None else [prepare(j, config) for j in chunk]
        batch = {k: np.stack([x[k] for x in inputs]) for k in inputs[0]}
        out = {k: v.numpy() for k, v in call(*kind.batch_inputs(model, batch)).items()}
        for i, job in enumerate(chunk):
            stage_outputs(staging, job, {k: v[i] for k, v in out.items()}, warps, checkpoint)
        done = start + len(chunk)
        if progress and (time.perf_counter() - shown >= PROGRESS_SECONDS or done == len(jobs)):
            shown = time.perf_counter()
            print_progress(done, len(jobs), start_time)
    return len(out) - 1


# ----------------------------------------------------------------------------- pix2pixHD


def feature_choices(parser: argparse.ArgumentParser, given: list[str]) -> dict[int, int]:
    """--feature-cluster CLASS=K ... -> {class: cluster}."""
    choices = {}
    for item in given:
        parts = item.split("=")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            parser.error(f"--feature-cluster {item}: expected CLASS=K, two non-negative integers")
        choices[int(parts[0])] = int(parts[1])
    return choices


def pix2pixhd_features(model, choices: dict[int, int], photoless: list[Job]) -> None:
    """Check that a pix2pixHD model can make the feature map of every job: the chosen
    clusters exist, and jobs without a photo have the run's clusters to take them from."""
    if model.encoder is None:
        if choices:
            raise ConfigError("--feature-cluster: this pix2pixHD run has no feature encoder "
                              "(model.pix2pixhd.feature_channels 0)")
        return
    if model.centres is None and (choices or photoless):
        raise ConfigError("this pix2pixHD run has no feature clusters yet: make them with python -m "
                          "cocosnet_tf.pix2pixhd_features --run RUN, or give a photo (--exemplar, and its "
                          "--exemplar-input) to take the features from")
    try:
        model.choose_clusters(choices)
    except ValueError as err:
        raise ConfigError(f"--feature-cluster: {err}") from err


# ----------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.translate",
                                     description=__doc__.split("\nDesign decisions:")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    add_set_argument(parser)  # no --config: the run's config.yaml is the config
    single = parser.add_argument_group("one pair")
    single.add_argument("--input", metavar="FILE", help="the semantic input (see above)")
    single.add_argument("--exemplar", metavar="FILE", help="the exemplar photo")
    single.add_argument("--exemplar-input", metavar="FILE", help="the exemplar's semantic map (see above)")
    single.add_argument("--out", metavar="FILE", help="output PNG")
    batch = parser.add_argument_group("a pair list")
    batch.add_argument("--pairs", metavar="FILE",
                       help="lines input,exemplar[,exemplar_input] (relative to FILE's folder)")
    batch.add_argument("--out-dir", metavar="DIR", help="output folder (one PNG per line, and config.yaml)")
    batch.add_argument("--batch-size", type=int, default=1, metavar="N", help="pairs per network call (default 1)")
    parser.add_argument("--warps", action="store_true", help="also write each correspondence level's warp")
    parser.add_argument("--feature-cluster", action="extend", nargs="+", default=[], metavar="CLASS=K",
                        help="pix2pixHD: class CLASS takes feature cluster K of the run's clusters (default 0 "
                             "for every class), e.g. --feature-cluster 3=1 5=4")
    args = parser.parse_args(argv)

    single_args = [a for a in ("input", "exemplar", "exemplar_input", "out") if getattr(args, a)]
    if args.pairs or args.out_dir:
        if single_args:
            parser.error("give either --input/--exemplar/--out or --pairs/--out-dir, not both")
        if not (args.pairs and args.out_dir):
            parser.error("--pairs and --out-dir go together")
    elif not (args.input and args.out):
        parser.error("give --input, --exemplar and --out (--exemplar not for pix2pixHD; or --pairs and --out-dir)")
    choices = feature_choices(parser, args.feature_cluster)
    if args.out and not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out}: the output is a PNG; name it .png")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    def body() -> None:
        from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config

        config = load_run_config(args.run, args.overrides)
        checkpoint = find_checkpoint(args.run, args.checkpoint)
        if args.pairs:
            if os.path.isdir(args.out_dir) and os.path.samefile(args.out_dir, args.run):
                raise ConfigError(f"--out-dir {args.out_dir} is the run directory; its config.yaml would be replaced")
            jobs = read_pairs(args.pairs, args.out_dir)
            folder = args.out_dir
        else:
            jobs = [Job(args.input, args.exemplar, args.exemplar_input, args.out)]
            folder = os.path.dirname(args.out)
        kind = model_kind(config)
        missing = [job for job in jobs if job.exemplar is None]
        if kind.needs_exemplar and missing:
            raise ConfigError(missing[0].located(f"a {kind.name} run translates after an exemplar: give "
                                                 "--exemplar (pair lists: a second field)"))
        if choices and config.model.kind != "pix2pixhd":
            raise ConfigError(f"--feature-cluster: a {kind.name} run has no feature clusters (pix2pixHD runs do)")
        prepared = prepare_all(jobs, config)
        model = load_model(config, checkpoint)
        kind.run_files(model, args.run)
        if config.model.kind == "pix2pixhd":
            pix2pixhd_features(model, choices, missing)
        with Staging(folder, prefix=".translate-") as staging:
            extra = translate(model, jobs, prepared, config, args.batch_size, staging, args.warps, checkpoint,
                      progress=bool(args.pairs))
            if args.pairs:
                staging.add_text(os.path.join(folder, "config.yaml"), config.to_yaml())
            staging.commit()
        levels = extra if args.warps else 0
        where = args.out_dir if args.pairs else args.out
        print(f"wrote {len(jobs)} translation{'s' if len(jobs) > 1 else ''}"
              + (f" with {levels} warps each" if levels else "") + f" to {where} (checkpoint {checkpoint})")

    run(body)


if __name__ == "__main__":
    main()
