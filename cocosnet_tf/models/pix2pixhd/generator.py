"""pix2pixHD's coarse-to-fine generator.

G1, the global generator, works at the input's size / 2^local_enhancers; each local
enhancer G2 doubles the resolution: its front-end reads the input at its own size, adds
the previous stage's last feature map (G1 or the inner enhancer, without an image head)
and refines the sum with residual blocks and a transposed convolution. Only the
outermost stage ends in the tanh image head. Widths: enhancer n (1 = innermost) works at
ngf * 2^(local_enhancers - n) and twice that, G1 at ngf * 2^local_enhancers and up.

Build every network inside layers.blocks.init_gain(model.init_gain), as CoCosNet's are.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.discriminator import downsample
from cocosnet_tf.layers.blocks import attached
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.models.pix2pixhd.units import ConvUnit, ImageHead, ResnetBlock


# a 7x7 reflection padding (3 rows) needs 4 rows to reflect, the residual blocks' 3x3 ones 2
SMALLEST_INPUT, SMALLEST_BOTTLENECK = 4, 2


def check_size(x: tf.Tensor, factor: int, smallest: int, who: str) -> None:
    """Both sides of x must be multiples of factor (each halving exact) and >= smallest."""
    height, width = x.shape[1], x.shape[2]
    if any(side is not None and (side % factor or side < smallest) for side in (height, width)):
        raise ValueError(f"{who} needs height and width multiples of {factor}, at least {smallest}, "
                         f"got {height} x {width}")


@keras.saving.register_keras_serializable("pix2pixhd")
class GlobalGenerator(Composite, keras.layers.Layer):
    """G1: a 7x7 reflection-padded front-end (ngf), n_downsample_global stride-2 convolutions
    (doubling the width each), n_blocks_global residual blocks, as many transposed
    convolutions back, then the image head. features(x) stops before the head."""

    def __init__(self, output_nc: int = 3, ngf: int = 64, n_downsample_global: int = 4, n_blocks_global: int = 9,
                 **kwargs):
        super().__init__(**kwargs)
        if n_downsample_global < 0 or n_blocks_global < 0:
            raise ValueError(f"GlobalGenerator needs n_downsample_global and n_blocks_global >= 0, got "
                             f"{n_downsample_global} and {n_blocks_global}")
        self.output_nc, self.ngf = output_nc, ngf
        self.n_downsample_global, self.n_blocks_global = n_downsample_global, n_blocks_global
        units = [ConvUnit(ngf, 7, "reflect", name="front")]
        units += [ConvUnit(ngf * 2 ** (i + 1), 3, "down", name=f"down_{i}") for i in range(n_downsample_global)]
        units += [ResnetBlock(ngf * 2 ** n_downsample_global, name=f"block_{i}") for i in range(n_blocks_global)]
        units += [ConvUnit(ngf * 2 ** (n_downsample_global - i - 1), 3, "up", name=f"up_{i}")
                  for i in range(n_downsample_global)]
        self.units = attached(self, "unit", units)
        self.head = ImageHead(output_nc, name="head")

    def smallest_input(self) -> int:
        bottleneck = SMALLEST_BOTTLENECK if self.n_blocks_global else 1
        return max(SMALLEST_INPUT, bottleneck * 2 ** self.n_downsample_global)

    def features(self, x):
        check_size(x, 2 ** self.n_downsample_global, self.smallest_input(), "GlobalGenerator")
        for unit in self.units:
            x = unit(x)
        return x

    def call(self, x):
        return self.head(self.features(x))

    def get_config(self):
        return {**super().get_config(), "output_nc": self.output_nc, "ngf": self.ngf,
                "n_downsample_global": self.n_downsample_global, "n_blocks_global": self.n_blocks_global}


@keras.saving.register_keras_serializable("pix2pixhd")
class LocalEnhancer(Composite, keras.layers.Layer):
    """G2, one stage: call(x, previous) with x at this stage's size and previous (the inner
    stage's last feature map, 2 * filters channels) at half of it. output_nc None: no
    image head, the output is this stage's feature map (filters channels)."""

    def __init__(self, filters: int, n_blocks_local: int = 3, output_nc: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.n_blocks_local, self.output_nc = filters, n_blocks_local, output_nc
        self.front = ConvUnit(filters, 7, "reflect", name="front")
        self.down = ConvUnit(2 * filters, 3, "down", name="down")
        self.blocks = attached(self, "block", [ResnetBlock(2 * filters, name=f"block_{i}")
                                               for i in range(n_blocks_local)])
        self.up = ConvUnit(filters, 3, "up", name="up")
        self.head = None if output_nc is None else ImageHead(output_nc, name="head")

    def call(self, x, previous):
        y = self.down(self.front(x))
        if y.shape[-1] != previous.shape[-1]:
            raise ValueError(f"LocalEnhancer({self.filters}) adds a feature map of {y.shape[-1]} channels, "
                             f"the previous stage gave {previous.shape[-1]}")
        y = y + previous
        for block in self.blocks:
            y = block(y)
        y = self.up(y)
        return y if self.head is None else self.head(y)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "n_blocks_local": self.n_blocks_local,
                "output_nc": self.output_nc}


@keras.saving.register_keras_serializable("pix2pixhd")
class Pix2PixHDGenerator(Composite, keras.Model):
    """call(x) -> image at x's size. x: the generator's input (semantic map, optional
    instance boundaries and instance features, see encoder.generator_input). G1 reads x
    average-pooled (3x3, stride 2, padding not counted) local_enhancers times."""

    def __init__(self, output_nc: int = 3, ngf: int = 64, n_downsample_global: int = 4, n_blocks_global: int = 9,
                 local_enhancers: int = 1, n_blocks_local: int = 3, **kwargs):
        super().__init__(**kwargs)
        if local_enhancers not in (0, 1, 2):
            raise ValueError(f"local_enhancers must be 0, 1 or 2, got {local_enhancers}")
        self.output_nc, self.ngf = output_nc, ngf
        self.n_downsample_global, self.n_blocks_global = n_downsample_global, n_blocks_global
        self.local_enhancers, self.n_blocks_local = local_enhancers, n_blocks_local
        self.global_generator = GlobalGenerator(output_nc, ngf * 2 ** local_enhancers, n_downsample_global,
                                                n_blocks_global, name="global_generator")
        self.enhancers = attached(self, "enhancer", [
            LocalEnhancer(ngf * 2 ** (local_enhancers - n), n_blocks_local,
                          output_nc if n == local_enhancers else None, name=f"enhancer_{n}")
            for n in range(1, local_enhancers + 1)])

    def pyramid(self, x) -> list:
        """[x, x / 2, ...], local_enhancers + 1 levels, finest first."""
        scale = 2 ** self.local_enhancers
        check_size(x, scale * 2 ** self.n_downsample_global, scale * self.global_generator.smallest_input(),
                   "Pix2PixHDGenerator")
        levels = [x]
        for _ in range(self.local_enhancers):
            levels.append(downsample(levels[-1]))
        return levels

    def coarse(self, x):
        """G1's own image from x at the coarsest level (what the global-only phase trains)."""
        return self.global_generator(self.pyramid(x)[-1])

    def call(self, x):
        if not self.local_enhancers:
            return self.coarse(x)
        levels = self.pyramid(x)
        y = self.global_generator.features(levels[-1])
        for n, enhancer in enumerate(self.enhancers, start=1):
            y = enhancer(levels[self.local_enhancers - n], y)
        return y

    def get_config(self):
        return {**super().get_config(), "output_nc": self.output_nc, "ngf": self.ngf,
                "n_downsample_global": self.n_downsample_global, "n_blocks_global": self.n_blocks_global,
                "local_enhancers": self.local_enhancers, "n_blocks_local": self.n_blocks_local}
