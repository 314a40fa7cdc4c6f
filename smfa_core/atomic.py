"""Atomic publication of an output file or directory.

Everything is written into a temporary sibling of the destination (same directory, so the final
rename never crosses a filesystem) and renamed into place only when complete and fsynced. A run
killed at any point (even ``kill -9``) leaves either nothing at the destination, the previous
complete content, or the new complete content, never a partial output under the final name.

Names used next to ``dest`` (``<name>`` is the destination's base name):

* ``.<name>.smfa-tmp-<pid>-<hex>``: the output being written;
* ``.<name>.smfa-old-<pid>-<hex>``: the previous content while it is being replaced
  (``overwrite=True`` on a filesystem without an atomic exchange).

:func:`cleanup_stale` removes those left behind by dead processes (and puts back a previous output
if a run died in the middle of replacing it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import stat

from .errors import SmfaError

__all__ = ["AtomicOutput", "cleanup_stale"]

_STALE_RE = re.compile(r"^\.(?P<name>.+)\.smfa-(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<rand>[0-9a-f]+)$")

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_renameat2 = None
_renameat2_checked = False


def _get_renameat2():
    global _renameat2, _renameat2_checked
    if not _renameat2_checked:
        _renameat2_checked = True
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = None
    return _renameat2


def _renameat2_call(src: str, dst: str, flags: int) -> bool:
    """True if done; False if renameat2/flag is unsupported here; raises OSError on other failures."""
    fn = _get_renameat2()
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), dst)


def _rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``; FileExistsError if ``dst`` exists (atomically where the OS allows)."""
    try:
        if _renameat2_call(src, dst, _RENAME_NOREPLACE):
            return
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "exists", dst) from None
        raise
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "exists", dst)
    os.rename(src, dst)


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths. False if unsupported here (the caller falls back)."""
    try:
        return _renameat2_call(a, b, _RENAME_EXCHANGE)
    except OSError:
        return False


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _fsync_path(path: str, is_dir: bool) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        if not is_dir:
            raise
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        for root, _dirs, files in os.walk(path, topdown=False):
            for f in files:
                p = os.path.join(root, f)
                if not os.path.islink(p):
                    _fsync_path(p, False)
            _fsync_path(root, True)
    elif os.path.isfile(path):
        _fsync_path(path, False)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class AtomicOutput:
    """Context manager: write into the returned temporary path; it becomes ``dest`` only on success.

    >>> with AtomicOutput("out/merged", overwrite=True) as tmp:   # doctest: +SKIP
    ...     write_everything_into(tmp)
    """

    def __init__(self, dest: str | os.PathLike, *, overwrite: bool = False, is_dir: bool = True):
        d = os.fspath(dest)
        norm = os.path.normpath(d)
        if not os.path.basename(norm) or os.path.basename(norm) in (".", ".."):
            raise SmfaError(f"{d}: not a valid output path")
        self.dest = d
        self._dest = os.path.abspath(norm)
        self.parent = os.path.dirname(self._dest)
        self.name = os.path.basename(self._dest)
        self.overwrite = overwrite
        self.is_dir = is_dir
        self.tmp: str | None = None

    def _sibling(self, kind: str) -> str:
        return os.path.join(self.parent, f".{self.name}.smfa-{kind}-{os.getpid()}-{secrets.token_hex(4)}")

    def __enter__(self) -> str:
        if os.path.lexists(self._dest) and not self.overwrite:
            raise SmfaError(f"{self.dest} exists; pass --overwrite")
        try:
            os.makedirs(self.parent, exist_ok=True)
        except OSError as e:
            raise SmfaError(f"{self.parent}: cannot create output directory: {e.strerror or e}") from None
        tmp = self._sibling("tmp")
        try:
            if self.is_dir:
                os.mkdir(tmp)
        except OSError as e:
            raise SmfaError(f"{self.dest}: cannot create temporary output {tmp}: {e.strerror or e}") from None
        self.tmp = tmp
        return tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        tmp = self.tmp
        assert tmp is not None, "AtomicOutput.__exit__ without __enter__"
        if exc_type is not None:
            _remove(tmp)
            return False
        try:
            self._publish(tmp)
        except BaseException:
            _remove(tmp)
            raise
        return False

    def _publish(self, tmp: str) -> None:
        if not os.path.lexists(tmp):
            raise SmfaError(f"{self.dest}: nothing was written (temporary output {tmp} does not exist)")
        try:
            _fsync_tree(tmp)
        except OSError as e:
            raise SmfaError(f"{self.dest}: cannot sync output to disk: {e.strerror or e}") from None
        dest = self._dest
        if not os.path.lexists(dest):
            try:
                _rename_noreplace(tmp, dest)
            except FileExistsError:
                if not self.overwrite:
                    raise SmfaError(
                        f"{self.dest} appeared while this run was writing it; not overwritten"
                    ) from None
                self._replace(tmp, dest)
            except OSError as e:
                raise SmfaError(f"{self.dest}: cannot publish output: {e.strerror or e}") from None
        elif not self.overwrite:
            raise SmfaError(f"{self.dest} exists; pass --overwrite")
        else:
            self._replace(tmp, dest)
        _fsync_path(self.parent, True)

    def _replace(self, tmp: str, dest: str) -> None:
        try:
            dest_is_dir = os.path.isdir(dest) and not os.path.islink(dest)
            tmp_is_dir = os.path.isdir(tmp)
            if not dest_is_dir and not tmp_is_dir:
                os.replace(tmp, dest)  # atomic for two files
                return
            if _exchange(tmp, dest):
                # dest now holds the new output and tmp the old one.
                _fsync_path(self.parent, True)
                _remove(tmp)
                return
            trash = self._sibling("old")
            os.rename(dest, trash)
            try:
                os.rename(tmp, dest)
            except OSError:
                with contextlib.suppress(OSError):
                    os.rename(trash, dest)  # put the old output back
                raise
            _fsync_path(self.parent, True)
            _remove(trash)
        except OSError as e:
            raise SmfaError(f"{self.dest}: cannot replace existing output: {e.strerror or e}") from None


def cleanup_stale(parent: str | os.PathLike) -> None:
    """Remove temporary siblings left in ``parent`` by processes that no longer run.

    A previous output parked as ``.<name>.smfa-old-*`` by a run that died while replacing it is put
    back in place if nothing has taken its name since; otherwise it is removed.
    """
    p = os.fspath(parent)
    try:
        entries = os.listdir(p)
    except OSError:
        return
    me = os.getpid()
    # Put back parked outputs first, so that a stale "tmp" never wins over the old complete output.
    for kind_wanted in ("old", "tmp"):
        for e in entries:
            m = _STALE_RE.match(e)
            if not m or m.group("kind") != kind_wanted:
                continue
            pid = int(m.group("pid"))
            if pid == me or _pid_alive(pid):
                continue
            path = os.path.join(p, e)
            if kind_wanted == "old":
                dest = os.path.join(p, m.group("name"))
                if not os.path.lexists(dest):
                    try:
                        _rename_noreplace(path, dest)
                        continue
                    except OSError:
                        pass
            _remove(path)
