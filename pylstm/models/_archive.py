"""Bounded reading of untrusted zip members and JSON, shared by pylstm's model loaders.

Design:
    pylstm's own format (`saving`) and Keras's `.keras` (`keras_io`) are zip archives holding a
    JSON config and weights. Both read their members through `Member`, which bounds the work a
    member can cause before anything is inflated: an encrypted member, a compression other
    than stored or deflated (bzip2 and LZMA inflate without a bound on the output of each
    call) and a declared size over the caller's limit are refused when the member is opened;
    reads go in chunks and stop at the declared size, where zipfile checks the CRC; a member
    whose data ends before its declared size is refused. Configs are parsed by `parse_json`,
    in which deep nesting (a `RecursionError`) is an invalid file like any other bad JSON.

    Each format keeps its own checks (the .npy headers of `saving`, the size of the weights
    member of `keras_io`) and the start of its messages: every refusal here is the caller's
    `invalid(why)`, an exception whose message names the file, chained to its cause.
"""

import json
import struct
import zipfile
import zlib

# What zipfile and zlib raise on a damaged archive or member (RuntimeError and
# NotImplementedError: zipfile's refusals; struct.error: a truncated header).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
              ValueError, RuntimeError, NotImplementedError, struct.error)

# The most bytes one read asks zipfile for.
CHUNK_BYTES = 2**22

_ZIP_ENCRYPTED = 0x1


class Member:
    """A member of an open zip archive, read within the size its zip entry declares.

    Args:
        archive: an open `zipfile.ZipFile`.
        info: the member's `zipfile.ZipInfo`.
        what: str, the member in messages ("its config.json", "its member 'weight_0000.npy'").
        limit: int, the most bytes the member may declare.
        why: str, where `limit` comes from, for the message ("a model config may have").
        invalid: callable taking a reason (str) and returning the exception to raise, whose
            message names the file.

    Raises:
        The exception of `invalid`: for an encrypted member, a compression other than stored
        or deflated, a declared size over `limit` (all before anything is inflated), and on
        reading, a damaged member (zipfile's and zlib's errors, a CRC mismatch) or one that
        ends before its declared size.
    """

    def __init__(self, archive, info, what, limit, why, invalid):
        self.what, self.size, self._invalid = what, info.file_size, invalid
        if info.flag_bits & _ZIP_ENCRYPTED:
            raise invalid(f"{what} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise invalid(f"{what} uses zip compression method {info.compress_type}, not "
                          f"stored or deflated")
        if info.file_size > limit:
            raise invalid(f"{what} declares {info.file_size} bytes, more than the {limit} "
                          f"bytes {why}")
        self._f = self._guarded(archive.open, info)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def _guarded(self, fn, *args):
        try:
            return fn(*args)
        except ZIP_ERRORS as e:
            raise self._invalid(f"the zip archive is damaged ({type(e).__name__}: {e})") from e

    def read(self, n):
        """At most `n` bytes (fewer at the declared size), as a binary file's `read` does."""
        return self._guarded(self._f.read, n)

    def tell(self):
        return self._f.tell()

    def read_into(self, out):
        """Fills `out`, a writable 1-D buffer of bytes (a bytearray, an array's `uint8` view),
        from the member in chunks of at most `CHUNK_BYTES`; zipfile checks the CRC if this
        reaches the declared size."""
        view = memoryview(out)
        pos = 0
        while pos < len(view):
            chunk = self.read(min(CHUNK_BYTES, len(view) - pos))
            if not chunk:
                raise self._invalid(f"{self.what} holds {self.tell()} bytes, its zip entry "
                                    f"declares {self.size}")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)

    def read_all(self):
        """The rest of the member, up to its declared size, as a bytearray."""
        data = bytearray(self.size - self.tell())
        self.read_into(data)
        return data


def parse_json(data, what, invalid):
    """`data` (UTF-8 bytes, or str) parsed as JSON.

    Args:
        data: bytes, bytearray or str.
        what: str, the text in messages ("its config.json", "model_config").
        invalid: as for `Member`.

    Raises:
        The exception of `invalid`: for bytes that are not UTF-8, or text that is not JSON,
        nesting too deep for Python's parser included.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise invalid(f"{what} is not UTF-8 text ({e})") from e
    try:
        return json.loads(data)
    except RecursionError as e:
        raise invalid(f"{what} is not valid JSON (nested too deeply)") from e
    except (TypeError, ValueError) as e:
        raise invalid(f"{what} is not valid JSON ({type(e).__name__}: {e})") from e
