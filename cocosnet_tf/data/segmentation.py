"""Segmentation folders: photos plus label PNGs of class ids (ADE20K, COCO-Stuff,
Cityscapes or any custom layout), optional instance maps -> boundary channel."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from cocosnet_tf.data.folders import FolderSource, resize_ids, resize_image
from cocosnet_tf.data.labels import semantic_map
from cocosnet_tf.fileio import DataError, list_images, read_label_ids, read_rgb

if TYPE_CHECKING:  # the configuration imports the data kinds, which import this module
    from cocosnet_tf.config import DataConfig

log = logging.getLogger(__name__)

# (image dir, label dir, instance dir) per phase, and the file-name suffixes that tie a
# photo to its maps. Label semantics (offset, don't-care id) live in the YAML configs.
LAYOUTS = {
    "ade20k": {
        "train": ("images/training", "annotations/training", ""),
        "test": ("images/validation", "annotations/validation", ""),
        "suffixes": ("", "", ""),
    },
    "cocostuff": {
        "train": ("train_img", "train_label", "train_inst"),
        "test": ("val_img", "val_label", "val_inst"),
        "suffixes": ("", "", ""),
    },
    "cityscapes": {
        "train": ("leftImg8bit/train", "gtFine/train", "gtFine/train"),
        "test": ("leftImg8bit/val", "gtFine/val", "gtFine/val"),
        "suffixes": ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_instanceIds"),
    },
}


class SegmentationSource(FolderSource):
    def __init__(self, config: DataConfig):
        super().__init__(config)
        seg = config.segmentation
        if seg.layout == "custom":
            if not (seg.image_dir and seg.label_dir):
                raise DataError("data.segmentation: layout 'custom' needs image_dir and label_dir")
            self.dir_sets = [(seg.image_dir, seg.label_dir, seg.instance_dir)]
            self.suffixes = ("", "", "")
        else:
            preset = LAYOUTS[seg.layout]
            other = "test" if config.phase == "train" else "train"
            own = tuple(mine or theirs for mine, theirs in
                        zip((seg.image_dir, seg.label_dir, seg.instance_dir), preset[config.phase]))
            # the other phase's folders too, so that pair lists may point across splits
            self.dir_sets = [own, preset[other]]
            self.suffixes = preset["suffixes"]
        if not config.use_instance:
            self.dir_sets = [(i, lab, "") for i, lab, _ in self.dir_sets]
        elif not self.dir_sets[0][2]:
            raise DataError("data.use_instance is true but no instance folder is configured "
                            "(data.segmentation.instance_dir)")
        image_dir, label_dir, _ = self.dir_sets[0]
        for folder in (image_dir, label_dir):
            if not os.path.isdir(os.path.join(self.root, folder)):
                raise DataError(f"{os.path.join(self.root, folder)}: folder does not exist")
        keys, unlabelled = [], []
        for rel in list_images(os.path.join(self.root, image_dir)):
            key = f"{image_dir}/{rel}"
            (keys if os.path.isfile(self._map_path(key, 1)) else unlabelled).append(key)
        self._report_unmatched(unlabelled, label_dir, image_dir, keys)
        self._by_name: dict[str, str] | None = None
        self._finish(keys)

    def resolve_key(self, entry: str) -> str:
        """The official ADE20K pair lists name bare files (ADE_val_...jpg,ADE_train_...jpg):
        look those up in the image folders of both phases."""
        if "/" in entry or os.path.isfile(os.path.join(self.root, entry)):
            return entry
        if self._by_name is None:
            self._by_name = {}
            for image_dir in dict.fromkeys(d[0] for d in self.dir_sets):
                if os.path.isdir(os.path.join(self.root, image_dir)):
                    for rel in list_images(os.path.join(self.root, image_dir)):
                        self._by_name.setdefault(os.path.basename(rel), f"{image_dir}/{rel}")
        return self._by_name.get(entry, entry)

    def _report_unmatched(self, unlabelled: list[str], label_dir: str, image_dir: str, keys: list[str]) -> None:
        labelled_maps = {os.path.normpath(self._map_path(k, 1)) for k in keys}
        # Cityscapes keeps other maps (colour, instance ids) beside the label ids
        label_ending = self.suffixes[1] + ".png"
        orphans = [p for p in list_images(os.path.join(self.root, label_dir))
                   if p.endswith(label_ending)
                   and os.path.normpath(os.path.join(self.root, label_dir, p)) not in labelled_maps]
        if not (unlabelled or orphans):
            return
        message = (f"{self.root}: {len(unlabelled)} images in {image_dir} have no label map "
                   f"(e.g. {unlabelled[:3]}), {len(orphans)} label maps in {label_dir} have no image "
                   f"(e.g. {orphans[:3]})")
        if self.config.on_bad_sample == "error" or not keys:
            raise DataError(message + "; set data.on_bad_sample=skip to leave them out")
        log.warning("%s; skipped", message)

    def _map_path(self, key: str, which: int) -> str:
        """Path of the label (which=1) or instance (which=2) map of photo `key`."""
        for dirs in self.dir_sets:
            image_dir = dirs[0]
            if key.startswith(image_dir + "/") and dirs[which]:
                sub, name = os.path.split(key[len(image_dir) + 1:])
                stem = os.path.splitext(name)[0]
                if self.suffixes[0] and stem.endswith(self.suffixes[0]):
                    stem = stem[: -len(self.suffixes[0])]
                return os.path.join(self.root, dirs[which], sub, stem + self.suffixes[which] + ".png")
        raise DataError(f"{os.path.join(self.root, key)}: not under any configured image folder "
                        f"({', '.join(d[0] for d in self.dir_sets)}), so its label map cannot be found")

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        c, seg = self.config, self.config.segmentation
        image_path, label_path = os.path.join(self.root, key), self._map_path(key, 1)
        image = read_rgb(image_path)
        ids = read_label_ids(label_path)
        if ids.shape != image.shape[:2]:
            raise DataError(f"{label_path}: label map is {ids.shape[1]}x{ids.shape[0]} but its image "
                            f"{image_path} is {image.shape[1]}x{image.shape[0]}")
        instance = None
        if c.use_instance:
            instance_path = self._map_path(key, 2)
            instance = read_label_ids(instance_path)
            if instance.shape != ids.shape:
                raise DataError(f"{instance_path}: instance map size differs from its label map {label_path}")
            instance = resize_ids(instance, self.height, self.width)
        ids = resize_ids(ids, self.height, self.width) + seg.label_offset
        label = semantic_map(ids, c.label_nc, dontcare_id=seg.dontcare_id,
                             contain_dontcare_label=c.contain_dontcare_label, instance=instance, source=label_path)
        return resize_image(image, self.height, self.width), label
