"""A reader of untrusted HDF5 files: Keras's weights files and legacy model files.

Design:
    HDF5's C library (under h5py) crashes or hangs on some damaged files, and follows links,
    virtual datasets and external storage to other files. Files are parsed instead with
    pyfive, a pure-Python HDF5 reader, in which damaged bytes can only raise an exception;
    only its parsing is used, the data of compact, contiguous and chunked datasets is read
    here.

    - Read budget: pyfive reads through `BoundedFile`, which refuses to read more than
      `READ_FACTOR` times the file's size plus `READ_EXTRA` bytes, each call counting
      `CALL_COST` more. A valid file is read about once, so a cycle in its B-trees, heaps or
      object headers ends in an error instead of a hang. An object header continuing into
      itself is refused, and an attribute declaring more values than its bytes hold is
      refused before pyfive allocates for it (`_checked_objects_class`).
    - Refused, since they read other files or bytes outside this one: virtual datasets,
      external storage, external and user-defined links, soft links (only hard links inside
      the file are followed), a user block, and data or chunks outside the file; also HDF5
      filters other than gzip and shuffle.
    - A dataset's layout, dtype and shape are checked before its data is read
      (`Dataset.read`), so a small file that declares a huge array allocates nothing; a
      chunk may not be larger than its dataset (beyond 1 MiB), and each inflates to at most
      its own size, so compressed chunks cannot inflate past the data's size either.

    Every failure is the caller's `invalid(why)` exception (a ValueError naming the file),
    chained to its cause, pyfive's own errors on damaged bytes included.
"""

import functools
import math
import os
import struct
import zlib

import numpy as np

# How much an HDF5 file may make its reader read, as a multiple of its size plus a constant:
# a valid file reads each byte about once; a cyclic B-tree, heap or header loops until this.
READ_FACTOR, READ_EXTRA = 4, 4 * 2**20
# Cost charged per read or seek call, so that many tiny reads also exhaust the budget.
CALL_COST = 16
# A chunk may be larger than its dataset (HDF5 allows it) up to this many bytes.
_MAX_SMALL_CHUNK = 2**20


class Refused(Exception):
    """Raised inside pyfive's parsing for a structure this module refuses (its message says
    which); `HDF5.parse` turns it into the caller's `invalid`."""


def open_file(path, invalid, data=None, what=None):
    """`HDF5` of `data`, the bytes of a member of an archive at `path` named `what` in messages,
    or else of the file at `path`.

    Args:
        path: str, the file's path.
        invalid: callable taking a reason (str) and returning the exception to raise, whose
            message names the file.
        data: bytes or bytearray, or None to read the file at `path`.
        what: str, the member holding `data` in messages ("its model.weights.h5").

    Raises:
        OSError: if the file at `path` cannot be opened.
        The exception of `invalid`: if the file is not HDF5, or damaged or refused.
    """
    if data is not None:
        return HDF5(data, len(data), what, invalid)
    f = open(path, "rb")
    try:
        return HDF5(f, os.fstat(f.fileno()).st_size, "the HDF5 file", invalid)
    except BaseException:
        f.close()
        raise


def _pyfive():
    try:
        import pyfive.btree
        import pyfive.core
        import pyfive.dataobjects
        import pyfive.misc_low_level
    except ImportError:
        raise ImportError("Reading Keras files needs pyfive: `pip install pyfive` (or "
                          "`pip install pylstm[keras]`).") from None
    return pyfive


class BoundedFile:
    """A read-only view of a binary file for pyfive that refuses to read more than `budget`
    bytes in all (each call also counts `CALL_COST`), and never past `size`.

    It has no `fileno`, `name` or `fs`, so pyfive neither memory-maps, reopens nor reads it
    from threads.
    """

    closed = False

    def __init__(self, raw, size, budget):
        # `raw`: a binary file object, or the bytes themselves (read without a copy).
        self._raw, self.size, self._left, self._pos = raw, size, budget, 0
        self._view = (memoryview(raw).toreadonly() if isinstance(raw, (bytes, bytearray))
                      else None)

    def _charge(self, n):
        self._left -= n + CALL_COST
        if self._left < 0:
            raise Refused("reading it takes more than a valid file of its size needs (a cycle "
                          "in its B-trees, heaps or headers?)")

    def seek(self, offset, whence=0):
        self._charge(0)
        base = (0, self._pos, self.size)[whence]
        if base + offset < 0:
            raise Refused(f"an address points before the start of the file ({offset})")
        self._pos = base + offset
        return self._pos

    def tell(self):
        return self._pos

    def read(self, n=-1, view=False):
        """At most `n` bytes (all that are left if `n` is negative), as `bytes`, or with `view`
        as a read-only buffer without a copy where the bytes are in memory."""
        left = max(0, self.size - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        self._charge(n)
        if self._view is not None:
            data = self._view[self._pos:self._pos + n]
            data = data if view else data.tobytes()
        else:
            self._raw.seek(self._pos)
            data = self._raw.read(n)
        self._pos += len(data)
        return data

    def close(self):
        if self._view is None:
            self._raw.close()


@functools.lru_cache(maxsize=None)
def _checked_objects_class():
    """pyfive's DataObjects (an HDF5 object header) with three structures checked before pyfive
    acts on them: the header's continuation blocks (each read once), links (only hard and soft
    links; `Group` refuses soft ones) and attribute values (an element count that the bytes
    holding it cannot hold is refused before pyfive allocates for it)."""
    pyfive = _pyfive()
    base = pyfive.dataobjects.DataObjects
    p5t = pyfive.dataobjects

    unpack, continuation = pyfive.core._unpack_struct_from, p5t.OBJECT_CONTINUATION_MSG_TYPE

    def more(fh, msg_data, offset, seen):
        """Reads the continuation block that the message at `offset` points at, once."""
        address, size = struct.unpack_from("<QQ", msg_data, offset)
        if address in seen:
            raise Refused("an object header continues into itself")
        seen.add(address)
        fh.seek(address)
        return fh.read(size)

    class CheckedObjects(base):
        # pyfive 1.3's header parsers, with two changes: a continuation block read twice (a
        # cycle) is refused, and the header grows in a bytearray (pyfive's bytes concatenation
        # is quadratic in the number of continuations).
        @staticmethod
        def _parse_v1_objects(fh):
            header = pyfive.core._unpack_struct_from_file(p5t.OBJECT_HEADER_V1, fh)
            if header["version"] != 1:
                raise Refused(f"an object header of version {header['version']}")
            msg_data = bytearray(fh.read(header["object_header_size"]))
            msgs, offset, seen = [], 0, set()
            for _ in range(header["total_header_messages"]):
                msg = unpack(p5t.HEADER_MSG_INFO_V1, msg_data, offset)
                msg["offset_to_message"] = offset + 8
                if msg["type"] == continuation:
                    msg_data += more(fh, msg_data, offset + 8, seen)
                msgs.append(msg)
                offset += 8 + msg["size"]
            return msgs, bytes(msg_data), header

        def _parse_v2_objects(self, fh):
            header, order_size = self._parse_v2_header(fh)
            msg_data = bytearray(fh.read(header["size_of_chunk_0"]))
            msgs, offset, seen = [], 0, set()
            chunk_sizes, chunk, done = [header["size_of_chunk_0"]], 0, 0
            while offset < len(msg_data) - 4:
                msg = unpack(p5t.HEADER_MSG_INFO_V2, msg_data, offset)
                msg["offset_to_message"] = offset + 4 + order_size
                if msg["type"] == continuation:
                    block = more(fh, msg_data, offset + 4 + order_size, seen)
                    if block[:4] != b"OCHK":
                        raise Refused("an object header continuation has no OCHK signature")
                    chunk_sizes.append(len(block) - 4)
                    msg_data += block[4:]
                msgs.append(msg)
                offset += 4 + msg["size"] + order_size
                if offset - done + 4 >= chunk_sizes[chunk]:  # to the next block
                    offset += chunk_sizes[chunk] - (offset - done)
                    done += chunk_sizes[chunk]
                    chunk += 1
            return msgs, bytes(msg_data), header

        @staticmethod
        def _decode_link_msg(data, offset):
            flags = data[offset + 1]
            link_type = data[offset + 2] if flags & 0x8 else 0
            if link_type not in (0, 1):
                raise Refused("it holds an external or user-defined link (to another file); "
                              "links out of the file are refused")
            return base._decode_link_msg(data, offset)

        def _attr_value(self, ptype, buf, count, offset):
            vlen = isinstance(ptype, (p5t.P5SequenceType, p5t.P5ReferenceType,
                                      p5t.P5VlenStringType))
            itemsize = 8 if isinstance(ptype, p5t.P5ReferenceType) else (
                16 if vlen else ptype.dtype.itemsize)
            if count * max(itemsize, 1) > len(buf) - offset:
                raise Refused(f"an attribute declares {count} values, more than its "
                              f"{len(buf) - offset} bytes hold")
            return super()._attr_value(ptype, buf, count, offset)

    return CheckedObjects


class HDF5:
    """An untrusted HDF5 file opened with pyfive: `root` is its root `Group`.

    Args:
        raw: the HDF5 bytes, or a seekable binary file object holding them (closed on exit).
        size: int, the number of bytes.
        what: str, the file's name in messages ("the HDF5 file", "its model.weights.h5").
        invalid: as for `open_file`.
    """

    def __init__(self, raw, size, what, invalid):
        self.what, self.size, self.invalid = what, size, invalid
        self._objects_class = _checked_objects_class()
        self.fh = BoundedFile(raw, size, READ_FACTOR * size + READ_EXTRA)
        self._cache = {}

        def open_root():
            superblock = _pyfive().misc_low_level.SuperBlock(self.fh, 0)
            if superblock._contents.get("base_address", 0):
                raise Refused("its superblock declares a user block")
            end = superblock._contents["end_of_file_address"]
            if end > size:  # HDF5's own check for a truncated file
                raise Refused(f"it is truncated: it declares {end} bytes, {size} are there")
            return superblock.offset_to_dataobjects

        self.root = Group(self, "", self.parse(open_root))

    def parse(self, fn, *args):
        """`fn(*args)`, where any failure to parse the file's bytes is a damaged file."""
        try:
            return fn(*args)
        except MemoryError:
            raise
        except Refused as e:
            raise self.invalid(f"{self.what}'s HDF5 structure is damaged or hostile: "
                               f"{e}") from e
        except Exception as e:  # any error of the parser on these bytes: a damaged file
            raise self.invalid(f"{self.what}'s HDF5 structure is damaged or hostile "
                               f"({type(e).__name__}: {e})") from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def objects(self, address):
        """The parsed object header at `address` (cached: a link cycle parses nothing twice)."""
        if address not in self._cache:
            self._cache[address] = self.parse(self._objects_class, self.fh, address)
        return self._cache[address]


class _Object:
    """An object of an `HDF5` file `h5`: `name` is its path, `address` its header's."""

    def __init__(self, h5, name, address):
        self.h5, self.name, self.address = h5, name, address
        self._objects = h5.objects(address)


class Group(_Object):
    """An HDF5 group of an `HDF5` file: its hard links, attributes and members."""

    @property
    def links(self):
        # Cached in the object header's entry: a group is reached once per path through it.
        if not hasattr(self._objects, "pylstm_links"):
            self._objects.pylstm_links = self.h5.parse(self._objects.get_links)
        return self._objects.pylstm_links

    @property
    def attrs(self):
        return self.h5.parse(self._objects.get_attributes)  # cached by pyfive

    def keys(self):
        return list(self.links)

    def text(self, name, max_chars):
        """The text attribute `name`, None if absent; refused unless it is UTF-8 text of at
        most `max_chars` characters."""
        value = self.attrs.get(name)
        if value is None:
            return None
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        if isinstance(value, bytes):
            value = self._decoded(name, value)
        if not isinstance(value, str) or len(value) > max_chars:
            raise self.h5.invalid(f"its `{name}` attribute is not text of at most {max_chars} "
                                  f"characters (received {type(value).__name__})")
        return value

    def names(self, name):
        """The attribute `name` as a list of str (one name, or an array of them), None if
        absent."""
        values = self.attrs.get(name)
        if values is None:
            return None
        if not isinstance(values, np.ndarray):
            values = np.asarray([values], dtype=object)
        names = []
        for value in values.reshape(-1).tolist():
            if isinstance(value, bytes):
                value = self._decoded(name, value)
            if not isinstance(value, str):
                raise self.h5.invalid(f"its `{name}` attribute holds a "
                                      f"{type(value).__name__}, expected names")
            names.append(value)
        return names

    def _decoded(self, name, value):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.h5.invalid(f"its `{name}` attribute is not UTF-8 text") from e

    def __contains__(self, name):
        return self.get(name) is not None

    def get(self, name):
        """The `Group` or `Dataset` at the relative path `name`, or None if absent."""
        obj = self
        for part in name.strip("/").split("/"):
            if not isinstance(obj, Group) or part not in obj.links:
                return None
            obj = obj._member(part)
        return obj

    def _member(self, part):
        target = self.links[part]
        name = f"{self.name}/{part}".lstrip("/")
        if not isinstance(target, int):
            raise self.h5.invalid(f"'{name}' in {self.h5.what} is a soft link (to "
                                  f"{target!r:.100}); links are refused")
        objects = self.h5.objects(target)
        kind = self.h5.parse(lambda: "dataset" if objects.is_dataset else "group")
        return (Dataset if kind == "dataset" else Group)(self.h5, name, target)

    def datasets(self):
        """Yields the paths (relative to this group) of the datasets below it."""
        seen, queue = {self.address}, [self]
        while queue:
            group = queue.pop(0)
            for part in group.keys():
                obj = group._member(part)
                if isinstance(obj, Dataset):
                    yield obj.name[len(self.name):].lstrip("/")
                elif obj.address not in seen:
                    seen.add(obj.address)
                    queue.append(obj)


# Header message types (HDF5 file format specification, IV.A.2).
_MSG_EXTERNAL_FILES, _MSG_LAYOUT, _MSG_FILTERS = 0x0007, 0x0008, 0x000B
_COMPACT, _CONTIGUOUS, _CHUNKED, _VIRTUAL = 0, 1, 2, 3
_FILTERS = {1: "gzip", 2: "shuffle"}  # the HDF5 filters read, by id


class Dataset(_Object):
    """An HDF5 dataset of an `HDF5` file, read only after its storage, dtype and shape are
    checked."""

    @property
    def shape(self):
        shape = self.h5.parse(lambda: self._objects.shape)
        return None if shape is None else tuple(int(d) for d in shape)

    def read(self, shape, kinds="f"):
        """The dataset as a native-byte-order array.

        Refused before anything is read (the caller's `invalid`) when its storage reads other
        files or uses other filters than gzip and shuffle, or its dtype kind is not in `kinds`;
        raises `ShapeMismatch` when its shape is not `shape`; refused after when its data is
        missing or of another size."""
        h5, objects, what = self.h5, self._objects, f"'{self.name}' in {self.h5.what}"
        types = {msg["type"] for msg in objects.msgs}
        if _MSG_EXTERNAL_FILES in types:
            raise h5.invalid(f"{what} is stored in external files; reading other "
                             f"files is refused")
        _, layout, offset = h5.parse(objects.get_id_storage_params)
        if _MSG_FILTERS in types:
            filters = h5.parse(lambda: [f["filter_id"] for f in objects.filter_pipeline])
            if layout != _CHUNKED or not set(filters) <= set(_FILTERS):
                raise h5.invalid(f"{what} is compressed or filtered with HDF5 filters "
                                 f"{filters}; only gzip (1) and shuffle (2) are read")
        if layout not in (_COMPACT, _CONTIGUOUS, _CHUNKED):
            raise h5.invalid(f"{what} is a virtual dataset (its data would come from "
                             f"other datasets or files); refused" if layout == _VIRTUAL else
                             f"{what} has an unknown storage layout ({layout})")
        dtype = h5.parse(lambda: objects.ptype.dtype)
        if not isinstance(dtype, np.dtype) or dtype.kind not in kinds or dtype.fields:
            raise h5.invalid(f"'{self.name}' is not finite floating-point data "
                             f"({h5.what} stores it as {dtype})" if kinds == "f" else
                             f"{what} has the HDF5 type {dtype}, expected kind {kinds!r}")
        declared = self.shape
        if declared != tuple(shape):
            raise ShapeMismatch(declared)
        nbytes = math.prod(shape) * dtype.itemsize
        if layout == _COMPACT:
            data = h5.parse(self._compact)
        elif layout == _CONTIGUOUS:
            data = h5.parse(self._contiguous, offset, nbytes)
        else:
            return h5.parse(self._chunked, shape, dtype).astype(dtype.newbyteorder("="),
                                                                copy=False)
        if data is None:
            raise h5.invalid(f"{what} has no data")
        if len(data) != nbytes:
            raise h5.invalid(f"{what} holds {len(data)} bytes, its shape {shape} and "
                             f"type {dtype} need {nbytes}")
        return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))

    def _compact(self):
        msg = self._objects.find_msg_type(_MSG_LAYOUT)[0]
        start = msg["offset_to_message"]
        layout = self._objects.msg_data[start:start + msg["size"]]
        if layout[0] not in (3, 4):
            raise Refused(f"a compact layout of version {layout[0]}")
        return layout[4:4 + int.from_bytes(layout[2:4], "little")]

    def _contiguous(self, offset, nbytes):
        (address,) = struct.unpack_from("<Q", self._objects.msg_data, offset)
        if address == 0xFFFFFFFFFFFFFFFF:
            return None
        if address + nbytes > self.h5.size:
            raise Refused(f"'{self.name}' declares data at bytes {address} to "
                          f"{address + nbytes}, past the end of the file ({self.h5.size})")
        self.h5.fh.seek(address)
        return self.h5.fh.read(nbytes, view=True)

    def _chunked(self, shape, dtype):
        objects, fh = self._objects, self.h5.fh
        objects._get_chunk_params()
        chunk = tuple(int(c) for c in objects._chunks)
        if len(chunk) != len(shape) or not all(chunk):
            raise Refused(f"'{self.name}' declares chunks of shape {chunk} for shape {shape}")
        out = np.zeros(shape, dtype)
        if out.size == 0:
            return out
        chunk_bytes = math.prod(chunk) * dtype.itemsize
        if chunk_bytes > max(out.nbytes, _MAX_SMALL_CHUNK):
            # Each chunk inflates to chunk_bytes: a chunk larger than its dataset would let a
            # small compressed file inflate to gigabytes.
            raise Refused(f"'{self.name}' declares chunks of shape {chunk} ({chunk_bytes} "
                          f"bytes), larger than its data of shape {shape}")
        filters = [f["filter_id"] for f in objects.filter_pipeline or ()]
        tree = _pyfive().btree.BTreeV1RawDataChunks(fh, objects._chunk_address,
                                                    objects._chunk_dims)
        seen = set()
        for node in tree.all_nodes[0]:
            for key, address in zip(node["keys"], node["addresses"]):
                start = tuple(int(s) for s in key["chunk_offset"][:-1])
                size = key["chunk_size"]
                if ((size != chunk_bytes and not filters) or start in seen
                        or len(start) != len(shape)
                        or any(s % c or s >= d for s, c, d in zip(start, chunk, shape))
                        or address + size > self.h5.size):
                    raise Refused(f"'{self.name}' has a damaged chunk index")
                seen.add(start)
                fh.seek(address)
                data = self._unfiltered(fh.read(size), filters, key["filter_mask"],
                                        chunk_bytes, dtype.itemsize)
                block = np.frombuffer(data, dtype).reshape(chunk)
                region = tuple(slice(s, min(s + c, d)) for s, c, d in zip(start, chunk, shape))
                out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
        if len(seen) != math.prod(-(-d // c) for d, c in zip(shape, chunk)):
            raise Refused(f"'{self.name}' lacks some of its chunks")
        return out

    def _unfiltered(self, data, filters, mask, nbytes, itemsize):
        """A chunk's `nbytes` bytes, its filters undone in reverse order (a bit of `mask` set
        skips that filter); inflating stops at `nbytes`, so a deflate bomb costs nothing."""
        for index in reversed(range(len(filters))):
            if mask >> index & 1:
                continue
            if filters[index] == 1:
                inflate = zlib.decompressobj()
                data = inflate.decompress(data, nbytes)
                if not inflate.eof or inflate.unconsumed_tail:
                    raise Refused(f"a chunk of '{self.name}' does not inflate to {nbytes} bytes")
            elif len(data) == nbytes:  # shuffle: byte k of every element, then byte k + 1
                data = np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.tobytes()
        if len(data) != nbytes:
            raise Refused(f"a chunk of '{self.name}' holds {len(data)} bytes, not {nbytes}")
        return data


class ShapeMismatch(Exception):
    """A dataset's declared shape is not the expected one (the caller names the layer)."""

    def __init__(self, declared):
        super().__init__(declared)
        self.declared = declared


