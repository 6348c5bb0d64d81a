"""Defaults of the audit that the CLI shows in --help, kept apart so --help imports nothing heavy."""

from functools import lru_cache

# Significance level for `detected`, per scheme, after the correction over its tests. With the
# three built-in schemes an unmarked image is flagged with probability < 3e-6 (docs/audit.md).
DEFAULT_ALPHA = 1e-6

# Decompression-bomb guard: larger images are refused from their header, before any pixel is
# decoded. 8192x8192 covers x4 upscales of 2048-pixel outputs; decoding one takes ~200 MB.
MAX_PIXELS = 8192 * 8192

# The image formats an audit decodes (PIL's names; JPEG's plugin also opens cameras' MPO files).
# Images come from anywhere, and Image.open would otherwise try every plugin PIL has: EPS and PS
# files are rasterised by running Ghostscript on them, others (WMF, FITS, PSD...) are formats no
# generated or shared image travels in.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "AVIF", "GIF", "BMP", "TIFF", "JPEG2000", "PPM", "QOI", "TGA")


@lru_cache(maxsize=1)
def image_formats() -> tuple[str, ...]:
    """IMAGE_FORMATS that this PIL can open (AVIF came with Pillow 11.3), for Image.open(formats=)."""
    from PIL import Image

    Image.init()
    return tuple(name for name in IMAGE_FORMATS if name in Image.OPEN)


# Files larger than this are not read at all (a scan reads each file into memory once).
MAX_FILE_BYTES = 512 * 1024 * 1024

# When to search for marks an edit moved off the aligned grid (searches.wanted): auto searches
# every image the aligned test does not detect a scheme in (crops, resizes, mirrors); always also
# tries rotations by 1-2 degrees and reads the crop search's blocks for the encoder's step too.
SEARCH_POLICIES = ("auto", "always", "never")

# Dataset audits (sources.py, engines.py): what the inputs are, where the shard tasks run, and how
# many more times a shard that failed (or killed its worker) is tried before it is listed as failed.
INPUT_FORMATS = ("auto", "files", "webdataset", "parquet")
ENGINES = ("local", "dask")
SHARD_RETRIES = 2
