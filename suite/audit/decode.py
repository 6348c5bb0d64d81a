"""A vectorised dwtDct reader whose raw bits equal invisible-watermark 0.2.0's decoder.

The reference (`imwatermark/maxDct.py`) converts BGR to YUV with OpenCV, takes a one-level Haar
`pywt.dwt2` of the U channel, cuts its LL band into 4x4 blocks in row-major order and, per block,
reads the largest of the 15 non-first coefficients: the block votes 1 when `value % 36 > 18`.
Block k votes for bit `k % L`, and a bit is 1 when `mean * 255 > 127`.

Here the per-block values are computed once per channel order with whole-array numpy operations,
and every message length is read from them afterwards. An LL coefficient is the sum S of four
pixels over 2, off by a few ulps of pywt's float rounding. Comparing integer sums finds each
block's largest coefficient exactly (distinct sums differ by 0.5, far more than the rounding),
and `S / 2 % 36 > 18` is decided by the integer alone unless S / 2 sits exactly on a boundary
(a multiple of 18), where the last bits decide. Only those blocks get pywt's exact floats,
reproduced through a lookup table of its Haar arithmetic, so the votes are bit-identical.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from suite.watermark import ChannelOrder

ORDERS: tuple[ChannelOrder, ...] = ("bgr", "rgb")

SCALE = 36  # the U channel's quantisation step in imwatermark (scales [0, 36, 36])
BLOCK = 4  # LL coefficients per block side; one block covers 8x8 pixels

# pywt's Haar analysis filter tap (1/sqrt(2) rounded to float64) and its arithmetic: a column pair
# (a over c) becomes fl(fl(a*h) + fl(c*h)) * h along the rows, then two such pairs are added.
_H = 0.7071067811865476
_TAP = np.arange(256, dtype=np.float64) * _H
_PAIR = ((_TAP[:, None] + _TAP[None, :]) * _H).ravel()  # index (a << 8) | c

# What the encoders fed to OpenCV for each order, seen from an RGB array: the reference scripts
# passed BGR pixels; "rgb" encoders handed RGB pixels to the BGR-expecting encoder.
_CONVERSION = {"bgr": cv2.COLOR_RGB2YUV, "rgb": cv2.COLOR_BGR2YUV}


@dataclass(frozen=True)
class Blocks:
    """The LL band of one image's U channel as the reference cuts it into 4x4 blocks, once per
    channel order (leading axis, in the order of `orders`).

    Blocks are numbered row-major, as the encoder numbers them; the reference reads only the
    15 non-first coefficients of each block.
    """

    orders: tuple[ChannelOrder, ...]
    u: np.ndarray  # (orders, rows * 8, cols * 8): the U channel each encoder marked (uint8; float32 rebuilt, maybe one sample per 2x2)
    sums: np.ndarray  # (orders, rows * 4, cols * 4): LL coefficients times 2 (uint16, exact; float32 from float planes)
    grid: tuple[int, int]  # blocks per column, blocks per row

    @cached_property
    def peak_sums(self) -> np.ndarray:
        """(orders, blocks): twice the value the reference decoder reads in each block (its
        largest non-first coefficient). pywt's float for it is this over 2, give or take a few ulps.
        """
        return _reduce(self.sums, np.maximum)

    @cached_property
    def trough_sums(self) -> np.ndarray:
        """(orders, blocks): twice the smallest non-first coefficient."""
        return _reduce(self.sums, np.minimum)

    @property
    def exact(self) -> bool:
        """Whether these are the reference decoder's integer pixels (votes bit-identical to its)."""
        return self.sums.dtype == np.uint16

    def votes(self, order: int) -> np.ndarray:
        """(blocks,): the reference's scores in the `order`-th channel order, bit-identical:
        1 where `peak % 36 > 18`."""
        if not self.exact:
            return np.remainder(self.peak_sums[order] / 2, SCALE) > SCALE / 2
        phase = self.peak_sums[order] % np.uint16(2 * SCALE)  # the value's position in its step, doubled
        result = phase > SCALE
        boundary = np.flatnonzero(phase % np.uint16(SCALE) == 0)  # on a multiple of 18
        if boundary.size:
            exact = self._exact_peak(np.full(boundary.size, order), boundary)
            result[boundary] = np.remainder(exact, SCALE) > SCALE / 2
        return result

    @cached_property
    def band(self) -> np.ndarray:
        """The sums as float32 (orders, rows * 4, cols * 4), for the filtered readings."""
        return self.sums if self.sums.dtype == np.float32 else self.sums.astype(np.float32)

    @cached_property
    def unblurred_peak_sums(self) -> np.ndarray:
        """(orders, blocks): `peak_sums` of the band with 4:2:0 chroma upsampling undone (_UNBLUR)."""
        return _reduce(np.stack([unblur(plane) for plane in self.band]), np.maximum)

    def impulses(self, centre: float | None = None) -> np.ndarray:
        """(orders, blocks): how far each block's read coefficient (its largest or, with `centre`,
        the one farthest from it, then signed away from it) stands out from the ring of samples
        RING away (sums units). The ring's mean changes slowly, so its mean over the block stands in
        for its value at the read coefficient.

        The encoder moves that coefficient by 9 + 18 * bit - (value mod 36): -9 on average for a 0,
        +9 for a 1. Lossy chroma coding blurs the lattice position away but keeps much of that step.
        """
        return steps(self.peak_sums, None if centre is None else self.trough_sums, self.surround, centre)

    @cached_property
    def surround(self) -> np.ndarray:
        """(orders, blocks): the mean, over each block, of the ring around each of its coefficients."""
        return block_surround(self.sums)  # uint16 sums box-filter faster than their float copy

    def _exact_peak(self, order: np.ndarray, block: np.ndarray) -> np.ndarray:
        """pywt's own float LL maximum for the given (order, block) pairs."""
        _, height, width = self.u.shape
        rows, cols = np.divmod(block, self.grid[1])
        corner = order * (height * width) + rows * (8 * width) + cols * 8  # the block's first pixel
        pixels = self.u.ravel()[corner[:, None, None, None] + _pixel_offsets(width)].astype(np.intp)
        halves = _PAIR[(pixels[..., 0] << 8) | pixels[..., 1]]  # (pairs, 15, 2): left and right column
        return (halves[..., 0] + halves[..., 1]).max(axis=1)


@lru_cache(maxsize=16)
def _pixel_offsets(width: int) -> np.ndarray:
    """(15, 2, 2) flat offsets, from a block's first pixel, of the pixels behind each read LL
    coefficient: [column][top, bottom] of its 2x2 square."""
    i, j = np.divmod(np.arange(1, 16), BLOCK)
    top_left = 2 * i * width + 2 * j
    offsets = top_left[:, None, None] + np.array([[0, width], [1, width + 1]])
    offsets.flags.writeable = False
    return offsets


def _reduce(band: np.ndarray, pick: np.ufunc) -> np.ndarray:
    """Per 4x4 block of the last two axes, `pick` over its 15 non-first entries (row-major blocks).

    Strided pairwise reductions: far cheaper than copying the band into block order.
    """
    lower = pick(pick(band[..., 1::4, :], band[..., 2::4, :]), band[..., 3::4, :])  # rows 1-3
    lower = pick(pick(lower[..., 0::4], lower[..., 1::4]), pick(lower[..., 2::4], lower[..., 3::4]))
    first = band[..., 0::4, :]  # row 0 of every block, without its first coefficient
    picked = pick(lower, pick(first[..., 1::4], pick(first[..., 2::4], first[..., 3::4])))
    return picked.reshape(*band.shape[:-2], -1)


def _inverse_triangle(taps: int = 4) -> np.ndarray:
    """The FIR that undoes a [1/8, 3/4, 1/8] blur: its response 3/4 + cos(w)/4 never falls below
    1/2, so the inverse is short and stable."""
    n = 256
    inverse = np.fft.ifft(1 / (0.75 + 0.25 * np.cos(2 * np.pi * np.arange(n) / n))).real
    kernel = np.concatenate([inverse[-taps:], inverse[: taps + 1]]).astype(np.float32)
    kernel.flags.writeable = False
    return kernel


# libjpeg's and libwebp's "fancy" upsampling of 4:2:0 chroma (a [1/4, 3/4] triangle between the
# stored samples) leaves each 2x2 pixel mean, so each LL coefficient, the stored sample blurred by
# [1/8, 3/4, 1/8] along both axes; this undoes it.
_UNBLUR = _inverse_triangle()
_IDENTITY = np.ones(1, np.float32)


def unblur(image: np.ndarray, vertical: bool = True, scale: float = 1.0) -> np.ndarray:
    """A float32 image (height, width[, channels]) with a [1/8, 3/4, 1/8] blur undone along its rows
    and, with `vertical`, its columns (4:2:2 chroma is subsampled along rows only), times `scale`;
    the edges as libjpeg's upsampler treats them (the last sample repeated)."""
    along_columns = _UNBLUR if vertical else _IDENTITY
    return cv2.sepFilter2D(
        image, cv2.CV_32F, _UNBLUR * np.float32(scale), along_columns, borderType=cv2.BORDER_REPLICATE
    )


# The ring a coefficient is compared with: 3 samples away, outside what lossy chroma coding smears
# the encoder's step over (a 7x7 ring found 77 % of JPEG q90 marks on the research corpus where the
# 8 nearest neighbours found 62 %).
RING = 3


def steps(peak: np.ndarray, trough: np.ndarray | None, surround: np.ndarray, centre: float | None) -> np.ndarray:
    """How far each block's read coefficient stands out from `surround` (Blocks.impulses): the
    largest (`peak`), or with `centre` the one farthest from it, signed away from it."""
    if centre is None or trough is None:
        return peak - surround
    middle = np.float32(2 * centre)
    above = peak - middle >= middle - trough
    return np.where(above, peak - surround, surround - trough)


def block_surround(band: np.ndarray) -> np.ndarray:
    """(orders, blocks): per 4x4 block of an LL band (orders, rows * 4, cols * 4; uint16 or float32),
    the mean of the ring around each of its coefficients (Blocks.impulses)."""
    rows, cols = band.shape[1] // BLOCK, band.shape[2] // BLOCK
    # an area resize by exactly 1/4 is the mean of each 4x4 block
    sums = [cv2.resize(ring_sum(plane), (cols, rows), interpolation=cv2.INTER_AREA) for plane in band]
    return np.stack(sums).reshape(len(sums), -1) / np.float32(RING_SAMPLES)


def neighbour_blocks_mean(band: np.ndarray) -> np.ndarray:
    """(orders, blocks): per 4x4 block of a float32 LL band (orders, rows * 4, cols * 4), the mean of
    the 8 blocks around it: a cheaper, coarser block_surround for the searches, which read many bands."""
    rows, cols = band.shape[1] // BLOCK, band.shape[2] // BLOCK
    means = [cv2.resize(plane, (cols, rows), interpolation=cv2.INTER_AREA) for plane in band]
    ring = [cv2.filter2D(plane, -1, _BLOCK_RING, borderType=cv2.BORDER_REFLECT) for plane in means]
    return np.stack(ring).reshape(len(ring), -1)


_BLOCK_RING = np.full((3, 3), 1 / 8, np.float32)
_BLOCK_RING[1, 1] = 0


_RING_SIDES = (2 * RING + 1, 2 * RING - 1)
RING_SAMPLES = _RING_SIDES[0] ** 2 - _RING_SIDES[1] ** 2


def ring_sum(plane: np.ndarray) -> np.ndarray:
    """float32: the sum of the ring of samples RING away from each sample (two box sums)."""
    outer, inner = (
        cv2.boxFilter(plane, cv2.CV_32F, (side, side), normalize=False, borderType=cv2.BORDER_REFLECT)
        for side in _RING_SIDES
    )
    return np.subtract(outer, inner, out=outer)


def block_grid(height: int, width: int) -> tuple[int, int]:
    """Blocks the reference reads: the LL band of the top-left rows//4*4 x cols//4*4 pixels in 4x4s."""
    return height // 8, width // 8


def u_planes(rgb: np.ndarray, orders: tuple[ChannelOrder, ...] = ORDERS) -> np.ndarray:
    """(orders, height, width) uint8: an RGB uint8 image's U channel as the encoder of each order saw it."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 array, got {rgb.dtype} {rgb.shape}")
    u = np.empty((len(orders), *rgb.shape[:2]), np.uint8)
    if rgb.size:
        pixels = np.ascontiguousarray(rgb)
        yuv = _scratch(pixels.shape)
        for i, order in enumerate(orders):
            cv2.extractChannel(cv2.cvtColor(pixels, _CONVERSION[order], dst=yuv), 1, dst=u[i])
    return u


def blocks_of(u: np.ndarray, orders: tuple[ChannelOrder, ...]) -> Blocks:
    """The LL band of U planes' whole 8x8 blocks, counted from the planes' top-left pixel (the
    crop search passes views that start anywhere in an image). uint8 planes give exact integer
    sums; float planes (rebuilt from a file's stored chroma, readers.py) float32 ones."""
    rows, cols = block_grid(u.shape[1], u.shape[2])
    u = u[:, : rows * 8, : cols * 8]
    return Blocks(tuple(orders), u, square_sums(u), (rows, cols))


def square_sums(u: np.ndarray) -> np.ndarray:
    """(orders, height // 2, width // 2): the sum of each 2x2 pixel square on the even grid of U
    planes, twice its LL coefficient: exact uint16 for uint8 planes, float32 for float ones."""
    u = u[:, : u.shape[1] // 2 * 2, : u.shape[2] // 2 * 2]
    wide = np.uint16 if u.dtype == np.uint8 else np.float32
    pairs = np.add(u[:, 0::2], u[:, 1::2], dtype=wide)  # vertical pairs, then horizontal ones
    return pairs[..., 0::2] + pairs[..., 1::2]


def blocks_of_samples(samples: np.ndarray, orders: tuple[ChannelOrder, ...], height: int, width: int) -> Blocks:
    """The LL band of a `height` x `width` image from chroma samples that each cover 2x2 of its pixels
    (a JPEG's stored 4:2:0 planes, as U): each LL coefficient is twice one sample, so the sums are
    four times it."""
    rows, cols = block_grid(height, width)
    sums = np.multiply(samples[:, : rows * 4, : cols * 4], np.float32(4), dtype=np.float32)
    return Blocks(tuple(orders), samples, sums, (rows, cols))


def read_blocks(rgb: np.ndarray, orders: tuple[ChannelOrder, ...] = ORDERS) -> Blocks:
    """The LL band of an RGB uint8 image's U channel as the encoder of each order saw it."""
    rows, cols = block_grid(rgb.shape[0], rgb.shape[1]) if rgb.ndim >= 2 else (0, 0)
    return blocks_of(u_planes(rgb[: rows * 8, : cols * 8], orders), orders)


_local = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """A per-thread YUV buffer, reused while images keep their size (a folder of SD outputs does):
    a fresh one costs its page faults again on every image."""
    buffer = getattr(_local, "yuv", None)
    if buffer is None or buffer.shape != shape:
        buffer = _local.yuv = np.empty(shape, np.uint8)
    return buffer


@lru_cache(maxsize=64)
def bit_layout(blocks: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Which bit each block carries (block k carries k % length) and how many blocks each bit has."""
    index = np.arange(blocks) % length
    index.flags.writeable = False
    counts = np.bincount(index, minlength=length)
    counts.flags.writeable = False
    return index, counts


def bits_from_votes(block_votes: np.ndarray, length: int) -> np.ndarray:
    """Majority-vote the blocks of each bit exactly as the reference does (`mean * 255 > 127`)."""
    index, counts = bit_layout(block_votes.size, length)
    ones = np.bincount(index, weights=block_votes, minlength=length)
    with np.errstate(invalid="ignore", divide="ignore"):  # a bit with no block reads 0, as there
        return (ones / counts) * 255 > 127


def decode(rgb: np.ndarray, lengths: tuple[int, ...], order: ChannelOrder = "bgr") -> dict[int, np.ndarray]:
    """Raw bits for each message length from one pass over the image's blocks."""
    block_votes = read_blocks(rgb, (order,)).votes(0)
    return {length: bits_from_votes(block_votes, length) for length in lengths}
