# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small host-side helpers that every module shares, one home each.

Is a process alive; how much space is free and how much a tree takes; a
program's stderr turned into one line of a message; small files written
atomically; private directories. Standard library only.
"""

import errno
import os
import stat


class HostError(Exception):
    """Something the user must fix or know; the message says what, with which value, and what to do.

    The modules' own error classes derive from it, so a helper here can raise
    one that every module reports the same way.
    """


# -- processes -------------------------------------------------------------------

def pid_state(pid, program=None):
    """``'dead'``, ``'alive'`` or ``'reused'`` for process ``pid``.

    A zombie counts as dead. With ``program`` (a name such as
    ``pg_probackup``), a live process whose command is another program is
    ``'reused'``: the pid was given to someone else after its owner died. A
    process we may not signal, or whose command we cannot read, counts as
    alive: never take over what might still run.
    """
    if not pid or pid < 1:
        return 'dead'
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return 'dead'
    except PermissionError:
        pass
    try:
        with open('/proc/%d/stat' % pid) as f:
            if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                return 'dead'
        if program is None:
            return 'alive'
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv0 = f.read().split(b'\0')[0]
    except (OSError, IndexError):
        return 'alive'
    return 'alive' if program.encode() in os.path.basename(argv0) else 'reused'


def pid_alive(pid, program=None):
    """Whether ``pid`` is a live process (running ``program``, when given); see pid_state."""
    return pid_state(pid, program) == 'alive'


# -- space -------------------------------------------------------------------------

def human(n):
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(n) < 1024 or unit == 'TiB':
            return ('%d %s' % (n, unit)) if unit == 'B' else ('%.1f %s' % (n, unit))
        n /= 1024.0


def free_bytes(path):
    """Free bytes for unprivileged users on the filesystem of ``path`` or its nearest existing parent."""
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def check_space(path, needed, what, advice, error=HostError):
    """Free bytes at ``path``; raise ``error`` saying so when fewer than ``needed``.

    ``what`` says what needs the space, ``advice`` what to do about it.
    """
    free = free_bytes(path)
    if free < needed:
        raise error('not enough free space for %s in %s: %d bytes (%s) free, %d bytes (%s) needed; %s'
                    % (what, path, free, human(free), needed, human(needed), advice))
    return free


def tree_bytes(path, one_file_system=True):
    """Bytes of the regular files under ``path`` (like ``du -s --apparent-size``); links never followed.

    A missing path is 0. Hard-linked files count once. With
    ``one_file_system``, mount points below are not entered (``du -x``).
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISREG(top.st_mode):
        return top.st_size
    if not stat.S_ISDIR(top.st_mode):
        return 0
    total, seen = 0, set()
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or (st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen):
                continue
            if st.st_nlink > 1:
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
        if one_file_system:
            dirs[:] = [d for d in dirs if _same_device(os.path.join(root, d), top.st_dev)]
    return total


def _same_device(path, dev):
    try:
        return os.lstat(path).st_dev == dev
    except OSError:
        return False


# -- a program's failure as one line -----------------------------------------------

# What PostgreSQL's programs and most others print on the line that matters.
ERROR_MARKERS = ('PANIC', 'FATAL', 'ERROR', 'error:')


def stderr_summary(stderr, limit=3):
    """The lines of a program's stderr that say what went wrong, as one line.

    The lines carrying an error marker (``ERROR:``, ``FATAL:``, ``error:``)
    when there are any, else the last ``limit`` lines. Commands run with
    ``LC_ALL=C`` (see _runner), so the markers are English.
    """
    if isinstance(stderr, bytes):
        stderr = stderr.decode('utf-8', 'replace')
    lines = [line.strip() for line in (stderr or '').splitlines() if line.strip()]
    marked = [line for line in lines if any(m in line for m in ERROR_MARKERS)]
    chosen = marked[:limit] if marked else lines[-limit:]
    return ' '.join(chosen) or 'no error output'


def exit_description(rc):
    """``failed with exit code 2`` or ``was killed by signal 9 (exit code -9)``."""
    if rc is not None and (rc < 0 or rc > 128):
        return 'was killed by signal %d (exit code %d)' % (-rc if rc < 0 else rc - 128, rc)
    return 'failed with exit code %s' % rc


def command_failure(what, rc, stderr, limit=3):
    """``<what> failed with exit code N: <the error lines>``: the one way a failed program is reported."""
    return '%s %s: %s' % (what, exit_description(rc), stderr_summary(stderr, limit))


# -- small files and private dirs ---------------------------------------------------

def fsync_dir(path):
    """Make a rename or a new name in directory ``path`` durable (a no-op where directories cannot be fsynced)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path, data, mode=0o600, uid=-1, gid=-1, replace=True):
    """Write a small file so that readers see all of it or nothing.

    ``replace=True``: written to a temporary name in the same directory,
    fsynced, then renamed over ``path``. ``replace=False``: ``path`` is
    created exclusively (O_EXCL, never following a link), for files whose
    creation is the point (a lease, a temporary file about to be renamed);
    FileExistsError when it exists. ``data`` is text or bytes.
    """
    if isinstance(data, str):
        data = data.encode('utf-8')
    target = path if not replace else '%s.%d.tmp' % (path, os.getpid())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
    if replace and os.path.lexists(target):
        os.unlink(target)  # our own pid's leftover
    fd = os.open(target, flags, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.rename(target, path)
    except BaseException:
        try:
            os.unlink(target)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or '.')


def make_private_dir(path, uid=-1, gid=-1, error=HostError):
    """``path`` as an existing directory, mode 0700, owned by uid:gid; parents made as needed.

    A symlink or a non-directory in its place is refused with ``error``.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise error('%s is not a directory (%s): give a directory path'
                    % (path, 'a symlink' if stat.S_ISLNK(st.st_mode) else 'a file or other non-directory'))
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    os.chmod(path, 0o700)


def is_enospc(e):
    """Whether ``e`` says the disk (or the quota) is full."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
