"""Correspondence, image-quality, distribution and colour metrics on NumPy arrays.

Flow convention: absolute exemplar positions (x, y), pixel centres at integers. Images
are float in [-1, 1] unless a function says uint8.
"""

from __future__ import annotations

import numpy as np

from cocosnet_tf.data.geometry import inside, xy_grid
from cocosnet_tf.visualize import to_uint8


def expected_positions(positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[..., K, 2] candidate positions and [..., K] softmax weights -> [..., 2]: the
    position the warp effectively samples."""
    return np.sum(positions * weights[..., None], axis=-2)


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """[B, H, W, ...] -> [B, H/f, W/f, ...]: means over f x f blocks (a level's pooling)."""
    b, h, w = array.shape[:3]
    blocks = array.reshape(b, h // factor, factor, w // factor, factor, *array.shape[3:])
    return blocks.mean(axis=(2, 4))


COHERENT_LEVEL_PIXELS = 0.5


def flow_at_level(flow: np.ndarray, mask: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution flow [B, H, W, 2] and mask -> the flow between level pixels.

    Level pixel i covers full pixels f i .. f i + f - 1, whose centre is f i + (f - 1) / 2;
    a level pixel counts only when its whole block has a valid flow, and a coherent one:
    every pixel's flow within COHERENT_LEVEL_PIXELS level pixels of the block's mean (a
    block across two objects that move apart has no one flow).
    """
    mean = block_mean(flow, factor)
    b, h, w = flow.shape[:3]
    blocks = flow.reshape(b, h // factor, factor, w // factor, factor, 2)
    spread = np.abs(blocks - mean[:, :, None, :, None]).max(axis=(2, 4, 5)) / factor
    level = (mean - (factor - 1) / 2.0) / factor
    return level, (block_mean(mask.astype(np.float32), factor) == 1.0) & (spread <= COHERENT_LEVEL_PIXELS)


def valid_flow_mask(batch: dict) -> np.ndarray:
    """[B, H, W]: pixels of samples with a known flow (`flow_mask`) that lands inside the
    exemplar."""
    flow = batch["flow"]
    known = (batch["flow_mask"][..., 0] > 0) & (np.reshape(batch["has_flow"], (-1, 1, 1)) > 0)
    return inside(flow, *flow.shape[1:3]) & known


def endpoint_errors(predicted: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Euclidean distances between predicted and true positions at the masked pixels."""
    return np.hypot(*np.moveaxis(predicted - flow, -1, 0))[mask]


def identity_positions(batch: int, height: int, width: int) -> np.ndarray:
    """The zero flow: every pixel matched to itself."""
    return np.broadcast_to(xy_grid(height, width), (batch, height, width, 2))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image PSNR (dB) of images in [-1, 1], peak 1 after mapping to [0, 1]."""
    mse = np.mean(((a - b) / 2.0) ** 2, axis=tuple(range(1, a.ndim)))
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def quantise(image: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] -> the same in [-1, 1], rounded to the 256 levels a PNG holds."""
    return to_uint8(image).astype(np.float32) / 127.5 - 1.0


# ----------------------------------------------------------------------------- correspondence


def upsampled_positions(coarse: np.ndarray, ratio: int) -> np.ndarray:
    """Positions [B, h, w, 2] of a coarse level -> positions at a level `ratio` times finer:
    the coarse displacement, scaled by `ratio` and repeated over each block (nearest
    upsampling of the flow as displacements), added to each fine pixel's own position."""
    b, h, w = coarse.shape[:3]
    displacement = (coarse - xy_grid(h, w)) * ratio
    fine = np.repeat(np.repeat(displacement, ratio, axis=1), ratio, axis=2)
    return fine + xy_grid(h * ratio, w * ratio)


class EndpointStats:
    """Running end-point-error statistics: mean error and PCK (share of errors at most t)."""

    def __init__(self, thresholds: tuple[float, ...]):
        self.thresholds = thresholds
        self.count, self.total = 0, 0.0
        self.within = [0] * len(thresholds)

    def add(self, errors: np.ndarray) -> None:
        self.count += errors.size
        self.total += float(np.sum(errors, dtype=np.float64))
        for i, t in enumerate(self.thresholds):
            self.within[i] += int(np.count_nonzero(errors <= t))

    def mean(self) -> float:
        return self.total / self.count

    def pck(self) -> dict[str, float]:
        return {f"{t:g}": n / self.count for t, n in zip(self.thresholds, self.within)}


# ----------------------------------------------------------------------------- image quality

SSIM_SIGMA, SSIM_WINDOW, SSIM_K1, SSIM_K2 = 1.5, 11, 0.01, 0.03


def l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image mean absolute difference of images in [-1, 1], in [0, 1] intensity units."""
    return np.mean(np.abs(a - b) / 2.0, axis=tuple(range(1, a.ndim)))


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-x ** 2 / (2.0 * sigma ** 2))
    return kernel / kernel.sum()


def _filter_valid(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable filtering of [B, H, W, C] without padding (the output shrinks by k - 1)."""
    rows = np.lib.stride_tricks.sliding_window_view(images, kernel.size, axis=1) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, kernel.size, axis=2) @ kernel


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image SSIM (Wang et al. 2004) of images [B, H, W, C] in [-1, 1]: mapped to
    [0, 1] (L = 1), 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, each
    channel separately, averaged over the valid (unpadded) windows and the channels;
    the same definition as tf.image.ssim. Both sides must be at least 11 pixels."""
    if min(a.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}, got {a.shape[1:3]}")
    x, y = (a.astype(np.float64) + 1.0) / 2.0, (b.astype(np.float64) + 1.0) / 2.0
    kernel = gaussian_kernel(SSIM_WINDOW, SSIM_SIGMA)
    mu_x, mu_y = _filter_valid(x, kernel), _filter_valid(y, kernel)
    var_x = _filter_valid(x * x, kernel) - mu_x ** 2
    var_y = _filter_valid(y * y, kernel) - mu_y ** 2
    cov = _filter_valid(x * y, kernel) - mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.mean(axis=(1, 2, 3))


# ----------------------------------------------------------------------------- sliced Wasserstein distance

PYRAMID_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # the binomial 5-tap of Burt & Adelson
SWD_SCALE = 1e3  # reported x 1e3, as Karras et al.


def _blur(images: np.ndarray) -> np.ndarray:
    """[B, H, W, C] filtered by the 5 x 5 binomial kernel, mirrored borders (d c b | a b c d)."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    return _filter_valid(padded, PYRAMID_KERNEL)


def pyramid_down(images: np.ndarray) -> np.ndarray:
    return _blur(images)[:, ::2, ::2]


def pyramid_up(images: np.ndarray) -> np.ndarray:
    """Twice the size: zeros between the pixels, then the blur with 4 times the gain."""
    b, h, w, c = images.shape
    spread = np.zeros((b, 2 * h, 2 * w, c), images.dtype)
    spread[:, ::2, ::2] = images
    return 4.0 * _blur(spread)


def pyramid_levels(height: int, width: int, min_resolution: int) -> int:
    """Levels from full size down to the last whose shorter side is still >= min_resolution
    (and that halving reaches exactly: both sides even)."""
    levels = 1
    while min(height, width) // 2 >= min_resolution and height % 2 == 0 and width % 2 == 0:
        levels, height, width = levels + 1, height // 2, width // 2
    return levels


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """[B, H, W, C] -> band-pass levels, finest first; the last is the low-pass residual."""
    pyramid, current = [], images.astype(np.float64)
    for _ in range(levels - 1):
        smaller = pyramid_down(current)
        pyramid.append(current - pyramid_up(smaller))
        current = smaller
    return pyramid + [current]


def patch_corners(rng: np.random.Generator, count: int, per_image: int, height: int, width: int,
                  size: int) -> np.ndarray:
    """[count, per_image, 2] random top-left corners (row, col) of size x size patches."""
    rows = rng.integers(0, height - size + 1, (count, per_image))
    cols = rng.integers(0, width - size + 1, (count, per_image))
    return np.stack([rows, cols], axis=-1)


def extract_patches(level: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    """The size x size patches of images [n, H, W, C] at corners [n, per_image, 2] (row,
    col): [n * per_image, size, size, C]."""
    offsets = np.arange(size)
    rows = corners[..., 0, None, None] + offsets[:, None]  # [n, p, size, 1]
    cols = corners[..., 1, None, None] + offsets[None, :]  # [n, p, 1, size]
    patches = level[np.arange(level.shape[0])[:, None, None, None], rows, cols]  # [n, p, size, size, C]
    return patches.reshape(-1, size, size, level.shape[-1])


def pyramid_patches(images: np.ndarray, corners: list[np.ndarray], size: int, chunk: int = 16) -> list[np.ndarray]:
    """Per pyramid level (corners[l] for level l), the patches at the corners, each channel
    normalised to zero mean and unit variance over the whole set, flattened to [N * p, D].
    Pyramids are built `chunk` images at a time: only the patches stay in memory."""
    per_level: list[list[np.ndarray]] = [[] for _ in corners]
    for start in range(0, images.shape[0], chunk):
        pyramid = laplacian_pyramid(images[start:start + chunk], len(corners))
        for patches, level, level_corners in zip(per_level, pyramid, corners):
            patches.append(extract_patches(level, level_corners[start:start + chunk], size))
    descriptors = []
    for patches in per_level:
        patches = np.concatenate(patches)
        patches = (patches - patches.mean(axis=(0, 1, 2))) / np.maximum(patches.std(axis=(0, 1, 2)), 1e-12)
        descriptors.append(patches.reshape(patches.shape[0], -1))
    return descriptors


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, directions: int,
                       chunk: int = 128) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the
    projections of two equally large descriptor sets [N, D] (sorted and matched)."""
    distances = []
    for start in range(0, directions, chunk):
        basis = rng.standard_normal((a.shape[1], min(chunk, directions - start)))
        basis /= np.linalg.norm(basis, axis=0, keepdims=True)
        distances.append(np.abs(np.sort(a @ basis, axis=0) - np.sort(b @ basis, axis=0)).mean(axis=0))
    return float(np.concatenate(distances).mean())


def swd(a: np.ndarray, b: np.ndarray, seed: int, patches: int, directions: int, min_resolution: int,
        patch_size: int = 7) -> list[float]:
    """Sliced Wasserstein distance per Laplacian-pyramid level (finest first, x SWD_SCALE)
    between two image sets of the same size and count [N, H, W, C] (Karras et al. 2018):
    `patches` 7 x 7 patches per image and level, at the same random positions in both sets
    (so a set against itself gives exactly 0), normalised per level and channel within
    each set, compared along `directions` random directions; all draws from `seed`."""
    if a.shape != b.shape:
        raise ValueError(f"SWD compares image sets of one shape, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    n, h, w = a.shape[:3]
    corners = [patch_corners(rng, n, patches, h >> level, w >> level, patch_size)
               for level in range(pyramid_levels(h, w, min_resolution))]
    pairs = zip(pyramid_patches(a, corners, patch_size), pyramid_patches(b, corners, patch_size))
    return [SWD_SCALE * sliced_wasserstein(da, db, rng, directions) for da, db in pairs]


# ----------------------------------------------------------------------------- Fréchet distance


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, N - 1) of features [N, D]."""
    features = features.astype(np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2), the Fréchet distance of two Gaussians.

    Tr (C1 C2)^1/2 is taken as the sum of the square roots of the eigenvalues of
    C1^1/2 C2 C1^1/2 (similar to C1 C2, but symmetric), so that it stays real and exact for
    the singular covariances of fewer samples than dimensions."""
    values, vectors = np.linalg.eigh(cov1)
    root1 = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root1 @ cov2 @ root1
    trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root)


# ----------------------------------------------------------------------------- colour faithfulness

COLOUR_BINS = 256  # one bin per uint8 level, per channel


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance between the colour histograms of two pixel sets [N, 3] and
    [M, 3] of uint8: per channel the 1-D Wasserstein-1 distance of the 256-bin histograms
    (the area between their cumulative distributions), in [0, 1] intensity units, averaged
    over R, G and B. Shifting every value of a channel by d levels moves it by d / 255."""
    distances = []
    for channel in range(3):
        cdf_a = np.cumsum(np.bincount(a[:, channel], minlength=COLOUR_BINS)) / a.shape[0]
        cdf_b = np.cumsum(np.bincount(b[:, channel], minlength=COLOUR_BINS)) / b.shape[0]
        distances.append(np.abs(cdf_a - cdf_b).sum() / (COLOUR_BINS - 1))
    return float(np.mean(distances))


def class_colour_distances(image: np.ndarray, classes: np.ndarray, exemplar: np.ndarray,
                           exemplar_classes: np.ndarray, min_pixels: int) -> dict[int, float]:
    """colour_distance between the pixels of each class in `image` and in `exemplar`
    (uint8 [H, W, 3], class ids [H, W], -1 for none), for every class that covers at least
    `min_pixels` pixels in both."""
    distances = {}
    for cls in np.intersect1d(np.unique(classes), np.unique(exemplar_classes)):
        mine, theirs = classes == cls, exemplar_classes == cls
        if cls < 0 or mine.sum() < min_pixels or theirs.sum() < min_pixels:
            continue
        distances[int(cls)] = colour_distance(image[mine], exemplar[theirs])
    return distances
