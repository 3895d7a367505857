"""Read TensorFlow checkpoints (the tensor-bundle format) with Python and numpy only.

A TF checkpoint `PREFIX` is `PREFIX.index` plus `PREFIX.data-NNNNN-of-NNNNN` shards. The
index is a LevelDB-style sorted table: a 48-byte footer (metaindex and index block handles,
magic `0xdb4775248b80fb57`) points at an index block whose entries point at data blocks.
Every block ends in a restart array and is followed by a 5-byte trailer (compression type,
masked CRC32C of block + type). Keys are prefix-compressed against the previous key. The
empty key holds a `BundleHeaderProto`; every other key is a variable name whose value is a
`BundleEntryProto` (dtype, shape, shard, offset, size, masked CRC32C of the bytes) - both
decoded here by a few lines of protobuf varint parsing, so neither TensorFlow nor protobuf is
needed. This is what lets people convert the released TF1 ALBERT checkpoints on a Python where
TensorFlow 1.x no longer installs.

Tensors are read one at a time (`read_tensor`), straight from the shard into a freshly
allocated array with `readinto`, and their checksum is verified: a 900 MB checkpoint never
needs two copies in memory. Every malformed input is one `AlbertError` naming the file.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from albert.errors import AlbertError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1
CRC_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto -> numpy dtype as stored on disk (little-endian)
DTYPES: dict[int, tuple[str, np.dtype]] = {
    1: ("float32", np.dtype("<f4")),
    2: ("float64", np.dtype("<f8")),
    3: ("int32", np.dtype("<i4")),
    4: ("uint8", np.dtype("u1")),
    5: ("int16", np.dtype("<i2")),
    6: ("int8", np.dtype("i1")),
    9: ("int64", np.dtype("<i8")),
    10: ("bool", np.dtype("?")),
    14: ("bfloat16", np.dtype("<u2")),  # raw bits; widened to float32 exactly on read
    17: ("uint16", np.dtype("<u2")),
    19: ("float16", np.dtype("<f2")),
    22: ("uint32", np.dtype("<u4")),
    23: ("uint64", np.dtype("<u8")),
}
DT_STRING = 7


# ----------------------------------------------------------------------------------------
# CRC32C (Castagnoli), the checksum TF and LevelDB use


def _crc_tables() -> np.ndarray:
    """Slicing-by-4 tables for the reflected Castagnoli polynomial 0x82F63B78."""
    tables = np.zeros((4, 256), dtype=np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        tables[0, n] = c
    for k in range(1, 4):
        prev = tables[k - 1]
        tables[k] = (prev >> 8) ^ tables[0][prev & 0xFF]
    return tables


_TABLES = _crc_tables()
_T0 = [int(v) for v in _TABLES[0]]
# A 32-bit step as two gathers from 65536-entry tables (half the gathers of slicing-by-4)
_LOW16 = (_TABLES[3][np.arange(65536) & 0xFF] ^ _TABLES[2][np.arange(65536) >> 8]).astype(np.uint32)
_HIGH16 = (_TABLES[1][np.arange(65536) & 0xFF] ^ _TABLES[0][np.arange(65536) >> 8]).astype(np.uint32)
LANE_BYTES = 256  # bytes each vectorised lane checksums before lanes are combined
LANES = 8192  # lanes per vectorised block: 2 MiB a block


def _crc_bytes(crc: int, data: bytes | memoryview) -> int:
    """Byte-at-a-time update of a raw (unconditioned) register: for short tails."""
    for b in bytes(data):
        crc = _T0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _zero_operator(nbytes: int) -> np.ndarray:
    """The GF(2)-linear map 'feed `nbytes` zero bytes to a raw CRC register', as four
    256-entry tables (one per input byte), built by squaring the one-zero-byte map."""
    one = np.array([_crc_bytes(1 << bit, b"\0") for bit in range(32)], dtype=np.uint32)
    result = np.array([1 << bit for bit in range(32)], dtype=np.uint32)  # identity
    power, n = one, nbytes
    while n:
        if n & 1:
            result = _apply_columns(power, result)
        power = _apply_columns(power, power)
        n >>= 1
    return _operator_tables(result)


def _apply_columns(op: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """op (32 column images) applied to each 32-bit vector in `vectors`."""
    out = np.zeros_like(vectors)
    for bit in range(32):
        out ^= np.where((vectors >> np.uint32(bit)) & np.uint32(1), op[bit], np.uint32(0))
    return out


def _operator_tables(columns: np.ndarray) -> np.ndarray:
    byte_values = np.arange(256, dtype=np.uint32)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for bit in range(8):
            tables[k] ^= np.where((byte_values >> bit) & 1, columns[8 * k + bit], np.uint32(0))
    return tables


def _apply_tables(tables: np.ndarray, x: np.ndarray) -> np.ndarray:
    return tables[0][x & 0xFF] ^ tables[1][(x >> 8) & 0xFF] ^ tables[2][(x >> 16) & 0xFF] ^ tables[3][x >> 24]


_SHIFT_TABLES: dict[int, np.ndarray] = {}


def _shift(nbytes: int) -> np.ndarray:
    if nbytes not in _SHIFT_TABLES:
        _SHIFT_TABLES[nbytes] = _zero_operator(nbytes)
    return _SHIFT_TABLES[nbytes]


def _block_crc(crc: int, block: np.ndarray) -> int:
    """Raw CRC register after feeding `block` (LANES * LANE_BYTES bytes): every lane is
    checksummed in parallel with numpy (two 16-bit table gathers per 4 bytes), then the lanes are folded pairwise,
    CRC(AB) = shift_len(B)(CRC(A)) ^ CRC(B), in log2(LANES) vectorised steps."""
    words = block.view("<u4").reshape(LANES, LANE_BYTES // 4).T.copy()
    regs = np.zeros(LANES, dtype=np.uint32)
    regs[0] = crc
    for row in words:
        x = regs ^ row
        regs = _LOW16[x & 0xFFFF] ^ _HIGH16[x >> 16]
    length = LANE_BYTES
    while len(regs) > 1:
        regs = _apply_tables(_shift(length), regs[0::2]) ^ regs[1::2]
        length *= 2
    return int(regs[0])


def _crc32c_python(data: bytes | memoryview | np.ndarray) -> int:
    buf = (
        np.frombuffer(data, dtype=np.uint8)
        if not isinstance(data, np.ndarray)
        else data.reshape(-1).view(np.uint8)
    )
    crc = 0xFFFFFFFF
    block = LANES * LANE_BYTES
    full = len(buf) // block * block
    for start in range(0, full, block):
        crc = _block_crc(crc, buf[start : start + block])
    return _crc_bytes(crc, buf[full:].tobytes()) ^ 0xFFFFFFFF


def _fast_crc32c() -> object | None:
    """A compiled CRC32C if one of the well-known packages happens to be installed."""
    try:
        import google_crc32c

        return lambda data: google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)
    except ImportError:
        pass
    try:
        import crc32c

        return crc32c.crc32c
    except ImportError:
        return None


_FAST = _fast_crc32c()


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """CRC32C of `data` (compiled if `google-crc32c` / `crc32c` is installed, else numpy)."""
    if _FAST is not None:
        return int(_FAST(data.reshape(-1).view(np.uint8).data if isinstance(data, np.ndarray) else data))
    return _crc32c_python(data)


def unmask_crc(masked: int) -> int:
    rot = (masked - CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------
# protobuf: the few message fields a bundle uses


def _varint(buf: bytes, pos: int, file: Path) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise AlbertError(f"{file}: malformed varint; the index file is corrupted - re-download it")
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes, file: Path) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field: an int for varint/fixed fields, bytes for
    length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, file)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, file)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos, file)
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise AlbertError(f"{file}: unsupported protobuf wire type {wire}; the index file is corrupted")
        if pos > len(buf):
            raise AlbertError(f"{file}: truncated protobuf; the index file is corrupted - re-download it")
        yield number, value


@dataclass
class TensorEntry:
    """Where one variable lives: dtype, shape, shard and byte range, and its checksum."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # masked, as stored
    sliced: bool = False

    @property
    def dtype_name(self) -> str:
        return (
            DTYPES[self.dtype][0]
            if self.dtype in DTYPES
            else ("string" if self.dtype == DT_STRING else f"dtype {self.dtype}")
        )

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _parse_shape(buf: bytes, file: Path) -> tuple[int, ...]:
    dims = []
    for number, value in _proto_fields(buf, file):
        if number == 2 and isinstance(value, bytes):
            size = 0
            for n, v in _proto_fields(value, file):
                if n == 1 and isinstance(v, int):
                    size = v - (1 << 64) if v >= 1 << 63 else v
            dims.append(size)
    return tuple(dims)


def _parse_entry(name: str, buf: bytes, file: Path) -> TensorEntry:
    entry = TensorEntry(name, 0, (), 0, 0, 0, 0)
    for number, value in _proto_fields(buf, file):
        if number == 1 and isinstance(value, int):
            entry.dtype = value
        elif number == 2 and isinstance(value, bytes):
            entry.shape = _parse_shape(value, file)
        elif number == 3 and isinstance(value, int):
            entry.shard = value
        elif number == 4 and isinstance(value, int):
            entry.offset = value
        elif number == 5 and isinstance(value, int):
            entry.size = value
        elif number == 6 and isinstance(value, int):
            entry.crc32c = value
        elif number == 7:
            entry.sliced = True
    return entry


def _parse_header(buf: bytes, file: Path) -> tuple[int, int]:
    """(num_shards, endianness) from the BundleHeaderProto (defaults 1 and little-endian)."""
    shards, endianness = 1, 0
    for number, value in _proto_fields(buf, file):
        if number == 1 and isinstance(value, int):
            shards = value
        elif number == 2 and isinstance(value, int):
            endianness = value
    return shards, endianness


# ----------------------------------------------------------------------------------------
# the .index table


def _decompress_snappy(data: bytes, file: Path) -> bytes:
    for module in ("cramjam", "snappy"):
        try:
            if module == "cramjam":
                import cramjam

                return bytes(cramjam.snappy.decompress_raw(data))
            import snappy

            return snappy.uncompress(data)
        except ImportError:
            continue
    raise AlbertError(
        f"{file} has Snappy-compressed blocks; install a Snappy decoder (`pip install cramjam` or "
        "`pip install python-snappy`) and retry"
    )


def _read_block(index: bytes, offset: int, size: int, file: Path) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(index):
        raise AlbertError(f"{file} is truncated (a block runs past the end of the file); re-download it")
    contents = index[offset : offset + size]
    block_type = index[offset + size]
    (stored,) = struct.unpack_from("<I", index, offset + size + 1)
    if crc32c(index[offset : offset + size + 1]) != unmask_crc(stored):
        raise AlbertError(
            f"{file}: block checksum mismatch at offset {offset}; the file is corrupted - re-download it"
        )
    if block_type == SNAPPY_COMPRESSION:
        return _decompress_snappy(contents, file)
    if block_type != NO_COMPRESSION:
        raise AlbertError(f"{file}: unknown block compression type {block_type}; the file is corrupted")
    return contents


def _block_entries(block: bytes, file: Path) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of one block, undoing the prefix compression."""
    if len(block) < 4:
        raise AlbertError(f"{file}: block too short to hold its restart array; the file is corrupted")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise AlbertError(f"{file}: block restart array is out of range; the file is corrupted")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, file)
        unshared, pos = _varint(block, pos, file)
        value_length, pos = _varint(block, pos, file)
        if shared > len(key) or pos + unshared + value_length > limit:
            raise AlbertError(f"{file}: malformed block entry; the file is corrupted - re-download it")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_length]
        pos += value_length


def _block_handle(buf: bytes, pos: int, file: Path) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, file)
    size, pos = _varint(buf, pos, file)
    return offset, size, pos


def read_index(file: Path) -> tuple[int, dict[str, TensorEntry]]:
    """(number of shards, {variable name: entry}) from a `.index` file."""
    try:
        index = file.read_bytes()
    except OSError as e:
        raise AlbertError(f"cannot read {file}: {e.strerror}") from None
    if len(index) < FOOTER_SIZE:
        raise AlbertError(
            f"{file} is too short to be a TensorFlow checkpoint index; it is truncated or not one"
        )
    footer = index[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise AlbertError(
            f"{file} is not a TensorFlow checkpoint index (wrong table magic); pass PREFIX.index of a TF checkpoint"
        )
    _, _, pos = _block_handle(footer, 0, file)  # metaindex: empty in tensor bundles
    index_offset, index_size, _ = _block_handle(footer, pos, file)
    shards, endianness, entries = 1, 0, {}
    for _, handle in _block_entries(_read_block(index, index_offset, index_size, file), file):
        offset, size, _ = _block_handle(handle, 0, file)
        for key, value in _block_entries(_read_block(index, offset, size, file), file):
            if key == b"":
                shards, endianness = _parse_header(value, file)
            else:
                name = key.decode("utf-8", "replace")
                entries[name] = _parse_entry(name, value, file)
    if endianness != 0:
        raise AlbertError(
            f"{file} was written on a big-endian machine; only little-endian checkpoints are read"
        )
    return shards, entries


# ----------------------------------------------------------------------------------------
# locating a checkpoint


def _prefix_in_directory(directory: Path) -> Path:
    """The `checkpoint` file's model_checkpoint_path when it exists here (released archives
    often hold their authors' absolute paths), else the single `*.index` in the directory."""
    state = directory / "checkpoint"
    if state.is_file():
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(errors="replace"), re.M)
        if match:
            named = Path(match.group(1))
            candidate = named if named.is_absolute() else directory / named
            for path in (candidate, directory / named.name):
                if Path(str(path) + ".index").is_file():
                    return path
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    if not indexes:
        raise AlbertError(f"{directory} holds no TensorFlow checkpoint (no *.index file)")
    names = ", ".join(p.name for p in indexes)
    raise AlbertError(
        f"{directory} holds several checkpoints ({names}); pass the one you want as PREFIX or PREFIX.index"
    )


def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """A directory, a prefix or a `.index` path -> the checkpoint prefix."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _prefix_in_directory(p)
    if p.suffix == ".index" and p.is_file():
        return p.with_suffix("")
    if Path(str(p) + ".index").is_file():
        return p
    if re.search(r"\.data-\d{5}-of-\d{5}$", p.name):
        return p.with_name(p.name.rsplit(".data-", 1)[0])
    raise AlbertError(f"no TensorFlow checkpoint at {p} (expected a directory, PREFIX or PREFIX.index)")


def is_tf_checkpoint(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (
        (p.is_dir() and any(p.glob("*.index")))
        or Path(str(p) + ".index").is_file()
        or (p.suffix == ".index" and p.is_file())
    )


# ----------------------------------------------------------------------------------------
# reading tensors


class TFCheckpoint:
    """An open TF checkpoint: `entries` lists its variables; `read_tensor(name)` reads one.

    Use as a context manager (or call `close`) to release the shard files.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.prefix = checkpoint_prefix(path)
        self.index_file = Path(str(self.prefix) + ".index")
        self.num_shards, self.entries = read_index(self.index_file)
        self._files: dict[int, BinaryIO] = {}
        for entry in self.entries.values():
            if entry.shard >= self.num_shards:
                raise AlbertError(
                    f"{self.index_file}: {entry.name} names shard {entry.shard} of {self.num_shards}; the index is corrupted"
                )

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _shard(self, shard: int) -> BinaryIO:
        if shard not in self._files:
            path = self.shard_path(shard)
            try:
                self._files[shard] = open(path, "rb")  # noqa: SIM115 (closed in close())
            except OSError:
                raise AlbertError(
                    f"missing shard {path} of checkpoint {self.prefix}; copy every .data-* file next to the .index"
                ) from None
        return self._files[shard]

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> TFCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self) -> list[str]:
        return sorted(self.entries)

    def read_tensor(self, name: str) -> np.ndarray:
        """The variable `name` as a numpy array (bfloat16 widened exactly to float32), its
        checksum verified."""
        if name not in self.entries:
            raise AlbertError(f"{self.index_file} has no variable {name!r}")
        entry = self.entries[name]
        if entry.sliced:
            raise AlbertError(
                f"{self.index_file}: {name} is a partitioned variable; re-save the checkpoint unpartitioned"
            )
        if entry.dtype == DT_STRING:
            return self._read_strings(entry)
        if entry.dtype not in DTYPES:
            raise AlbertError(f"{self.index_file}: {name} has unsupported {entry.dtype_name}")
        dtype = DTYPES[entry.dtype][1]
        if entry.numel * dtype.itemsize != entry.size:
            raise AlbertError(
                f"{self.index_file}: {name} is {entry.size} bytes but its shape {list(entry.shape)} needs {entry.numel * dtype.itemsize}; the index is corrupted"
            )
        array = np.empty(entry.shape, dtype=dtype)
        self._read_into(entry, memoryview(array.reshape(-1).view(np.uint8)))
        if entry.dtype == 14:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array

    def _read_into(self, entry: TensorEntry, buffer: memoryview) -> None:
        f = self._shard(entry.shard)
        f.seek(entry.offset)
        got = f.readinto(buffer) if entry.size else 0
        if got != entry.size:
            raise AlbertError(
                f"{self.shard_path(entry.shard)} is truncated ({entry.name} needs bytes {entry.offset}..{entry.offset + entry.size}); re-download it"
            )
        if crc32c(buffer) != unmask_crc(entry.crc32c):
            raise AlbertError(
                f"{self.shard_path(entry.shard)}: checksum mismatch in {entry.name}; the file is corrupted - re-download it"
            )

    def _read_strings(self, entry: TensorEntry) -> np.ndarray:
        """String tensors (TF2's object graph): varint lengths, a masked CRC32C of them, then
        the bytes. Only the layout is checked: no ALBERT weight is a string."""
        data = bytearray(entry.size)
        path = self.shard_path(entry.shard)
        f = self._shard(entry.shard)
        f.seek(entry.offset)
        if f.readinto(data) != entry.size:
            raise AlbertError(f"{path} is truncated ({entry.name}); re-download it")
        raw = bytes(data)
        pos, lengths = 0, []
        for _ in range(entry.numel):
            length, pos = _varint(raw, pos, path)
            lengths.append(length)
        pos += 4  # masked CRC32C of the lengths
        values = []
        for length in lengths:
            values.append(raw[pos : pos + length])
            pos += length
        return np.array(values, dtype=object).reshape(entry.shape)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self.names():
            yield name, self.read_tensor(name)


def load_tf_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every variable of a checkpoint, by name (small checkpoints; stream big ones with
    `TFCheckpoint`)."""
    with TFCheckpoint(path) as ckpt:
        return dict(ckpt)
