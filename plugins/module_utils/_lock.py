# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An exclusive lock on a file, held for the life of a ``with`` block.

``fcntl.flock`` locks belong to the open file description, so the kernel drops
the lock when the holder exits or is killed: a crashed run never leaves a
stale lock behind. The holder writes its pid (and what it is doing) into the
file so a process that finds the lock busy can say who holds it.

The lock file is never unlinked: removing it would let a newcomer lock a fresh
inode while an old holder still locks the unlinked one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time


class LockBusy(Exception):
    """The lock is held by another process and the timeout ran out."""

    def __init__(self, path, holder_pid=None, holder_purpose=None, waited=0):
        self.path = path
        self.holder_pid = holder_pid
        self.holder_purpose = holder_purpose
        self.waited = waited
        who = 'pid %s' % holder_pid if holder_pid else 'pid unknown'
        if holder_purpose:
            who += ', %s' % holder_purpose
        super().__init__('lock %s is held by another process (%s); waited %ss' % (path, who, waited))


def read_holder(path):
    """(pid, purpose) written into lock file ``path`` by its holder, or (None, None)."""
    try:
        with open(path, 'r') as f:
            lines = f.read(4096).splitlines()
    except (OSError, UnicodeDecodeError):
        return None, None
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    purpose = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return pid, purpose


class FileLock:
    """``with FileLock(path, timeout=0, purpose='...'):`` -- exclusive, across processes.

    ``timeout`` is how many seconds to wait for a busy lock (0: fail at once);
    on expiry ``LockBusy`` is raised with the holder's pid. The file is created
    (mode 0644) if missing; a symlink in its place is refused (O_NOFOLLOW).
    """

    def __init__(self, path, timeout=0, purpose=None, poll_interval=0.2):
        self.path = path
        self.timeout = max(0, timeout or 0)
        self.purpose = purpose
        self.poll_interval = poll_interval
        self.fd = None

    def acquire(self):
        # O_CLOEXEC: programs we start must not inherit (and so keep) the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            waited = time.monotonic() - start
            if waited >= self.timeout:
                os.close(fd)
                raise LockBusy(self.path, *self._holder(), waited=round(waited, 1))
            time.sleep(min(self.poll_interval, self.timeout - waited))
        os.ftruncate(fd, 0)
        os.write(fd, ('%d\n%s\n' % (os.getpid(), self.purpose or '')).encode('utf-8'))
        os.fsync(fd)
        self.fd = fd
        return self

    def _holder(self):
        # The holder writes its pid just after it gets the lock: retry briefly
        # so a newcomer racing that write still names it.
        for dummy in range(5):
            pid, purpose = read_holder(self.path)
            if pid:
                return pid, purpose
            time.sleep(0.02)
        return None, None

    def release(self):
        if self.fd is None:
            return
        try:
            # Empty the file before unlocking so nobody reads a stale pid.
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    @property
    def locked(self):
        return self.fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
