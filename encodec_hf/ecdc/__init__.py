"""EnCodec 0.1.1's .ecdc compressed files, in layers: the container (`container`: header, framing, bit packing,
varints), the arithmetic coder and its distributions (`coder`), the language-model coding loops (`lm_coding`) and
the API (`api`), which `encodec_hf` re-exports:

    from encodec_hf import compress, decompress, compress_file, decompress_file
"""

from .api import compress, compress_codes, compress_file, decompress, decompress_file, decompress_iter
from .container import EcdcHeader, model_name, pack_bits, read_header, unpack_bits, write_header

__all__ = [
    "compress",
    "decompress",
    "decompress_iter",
    "compress_codes",
    "compress_file",
    "decompress_file",
    "EcdcHeader",
    "pack_bits",
    "unpack_bits",
    "read_header",
    "write_header",
    "model_name",
]
