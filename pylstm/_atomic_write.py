"""Writing a file so that an interrupted save never leaves a half-written one: every saver of
pylstm (`pylstm.models`, `pylstm.nn` state dicts) writes through `atomic_write`."""

import contextlib
import os
import re
import secrets
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def atomic_write(path, write):
    """Calls `write(f)` on a fresh binary file beside `path`, then moves it onto `path`, so an
    interrupted save never leaves a half-written file at `path`.

    The temporary file is `.pylstm-<pid>-<random hex>.tmp`, locked (`flock`, where the system
    has it) while it is written. A save killed midway cannot remove its own, so each save
    first removes those of earlier saves into the same folder that are stale: not locked,
    and whose process is gone (or, since a pid can be reused, older than a day). After the
    rename the folder is synced too (where the system allows it), so that the rename
    survives a power cut.

    Args:
        path: str or path-like.
        write: callable taking a writable binary file object.

    Raises:
        FileNotFoundError: if the folder of `path` does not exist (it is not created, so that a
            mistyped folder is noticed; the message names `path`).
        IsADirectoryError: if `path` is a folder.
    """
    path = os.fspath(path)
    directory = check_destination(path)
    _remove_stale_temp_files(directory)
    # A fresh name opened with "xb" gets the usual umask permissions (mkstemp's are 0600).
    tmp = os.path.join(directory, f".pylstm-{os.getpid()}-{secrets.token_hex(8)}.tmp")
    try:
        with open(tmp, "xb") as f:
            _lock(f.fileno(), blocking=True)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


_TEMP_NAME = re.compile(r"\.pylstm-(\d+)-[0-9a-f]{16}\.tmp\Z")
_STALE_AGE_S = 24 * 3600


def check_destination(path):
    """Returns the folder of `path`, after checking that a file can be saved there: savers call
    it before any work (or optional import) so that a mistyped folder is named first.

    Raises:
        FileNotFoundError: if the folder of `path` does not exist.
        IsADirectoryError: if `path` is a folder.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot save to {path!r}: the folder {directory!r} does not "
                                f"exist. Create it first (os.makedirs).")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot save to {path!r}: it is a folder. Pass a file path.")
    return directory


def _lock(fd, blocking):
    """Takes an exclusive `flock` on `fd`; returns False if another holds it. Where the
    system or filesystem has no `flock`, returns True (nothing to wait for)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove_stale_temp_files(directory):
    """Removes the temporary files of killed saves into `directory` (see `atomic_write`);
    never fails a save."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            if os.name == "posix":
                _remove_if_stale(entry.path, int(match.group(1)))
            elif time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_AGE_S:
                # Windows refuses to delete a file that a save still has open.
                os.unlink(entry.path)


def _remove_if_stale(path, pid):
    """Removes the temporary file `path` of process `pid` if no save holds its lock and the
    process is gone (our own pid counts as alive: another thread's save) or the file is
    older than a day."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        stat = os.fstat(fd)
        old = time.time() - stat.st_mtime > _STALE_AGE_S
        if (os.path.samestat(stat, os.stat(path, follow_symlinks=False))
                and _lock(fd, blocking=False)
                and (old or (pid != os.getpid() and not _pid_alive(pid)))):
            os.unlink(path)
    finally:
        os.close(fd)


def _fsync_directory(directory):
    """Syncs `directory`'s entries to disk; skipped where directories cannot be opened or
    synced (Windows, some filesystems)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
