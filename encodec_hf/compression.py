"""Deprecated alias of `encodec_hf.ecdc` (the .ecdc code moved into that subpackage); removed in the next release.
Import `compress`, `decompress`, `compress_file` and `decompress_file` from `encodec_hf` instead."""

import warnings

from .ecdc import (
    compress,
    compress_codes,
    compress_file,
    decompress,
    decompress_file,
    decompress_iter,
    model_name,
    pack_bits,
    read_header,
    unpack_bits,
    write_header,
)

warnings.warn(
    "encodec_hf.compression is deprecated and will be removed in the next release: import from encodec_hf "
    "(compress, decompress, compress_file, decompress_file) or encodec_hf.ecdc",
    FutureWarning,
    stacklevel=2,
)

__all__ = [
    "compress",
    "decompress",
    "decompress_iter",
    "compress_codes",
    "compress_file",
    "decompress_file",
    "pack_bits",
    "unpack_bits",
    "read_header",
    "write_header",
    "model_name",
]
