"""A user's own Keras training of CoCosNet, run by tests/test_fit.py in a process of its
own (logical CPUs can only be configured before TensorFlow initialises its devices):

    strategy scope: CoCosNet(...), build_all, compile()
    model.fit(dataset, ..., callbacks=[TensorBoard, BackupAndRestore])

on REPLICAS logical CPUs under MirroredStrategy; the final weights and both optimisers'
state go to a tf.train.Checkpoint at --out. Arguments: see --help.
"""

import argparse
from pathlib import Path

import keras
import tensorflow as tf

from cocosnet_tf.config import load_config
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.models.cocosnet.model import CoCosNet

REPO = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    pass


class InterruptAt(keras.callbacks.Callback):
    """Ends fit as a preempted job would, before epoch `epoch` (0-based) starts."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="checkpoint prefix of the final state")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps-per-epoch", type=int, required=True)
    parser.add_argument("--one-batch", action="store_true",
                        help="every step reads the data's first batch (otherwise the stream runs on across "
                             "epochs, as the training command's)")
    parser.add_argument("--backup", required=True, help="BackupAndRestore's folder")
    parser.add_argument("--logs", required=True, help="TensorBoard's folder")
    parser.add_argument("--interrupt-at", type=int, default=None, help="stop before this epoch (0-based)")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides of configs/demo.yaml")
    args = parser.parse_args()

    config = load_config(str(REPO / "configs" / "demo.yaml"), args.set)
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
    keras.mixed_precision.set_dtype_policy(config.train.mixed_precision)
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    keras.utils.set_random_seed(config.train.seed)  # the training command's initial weights
    with strategy.scope():
        model = CoCosNet(config, config.data.semantic_nc)
        model.build_all(*config.data.crop_size)
        model.compile()
    data = build_dataset(config.data, config.train.batch_size)
    if args.one_batch:
        # cached: the stream reshuffles each time it is re-read, so a plain take(1).repeat()
        # would give every epoch another batch, and a resumed job not the one it stopped at
        data = data.take(1).cache().repeat()
    callbacks = [keras.callbacks.TensorBoard(args.logs), keras.callbacks.BackupAndRestore(args.backup)]
    if args.interrupt_at is not None:
        callbacks.append(InterruptAt(args.interrupt_at))
    try:
        # shuffle=False: the pipeline shuffles by itself (Keras would warn that it cannot)
        history = model.fit(data, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, shuffle=False,
                            callbacks=callbacks, verbose=0)
    except Interrupted:
        print(f"interrupted before epoch {args.interrupt_at}", flush=True)
        return
    print("epochs run:", len(history.epoch), flush=True)
    tf.train.Checkpoint(model=model, g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer).write(args.out)


if __name__ == "__main__":
    main()
