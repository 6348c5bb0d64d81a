"""`sdsuite audit`: SD invisible-watermark decoding and detection, provenance metadata, folder scans.

decode    the reference dwtDct reader, vectorised (bits identical to invisible-watermark 0.2.0)
detect    the calibrated per-scheme test on the blocks' evidence
metadata  provenance fields the file declares (PNG text chunks, EXIF, XMP, C2PA)
scan      paths -> records, on every core, one record per file whatever goes wrong
output    table / JSON Lines / JSON / CSV writers
command   the CLI
defaults  the defaults --help shows (alpha, pixel limit), importable without numpy or OpenCV
"""
