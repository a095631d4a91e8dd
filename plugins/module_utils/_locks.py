# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The locks of alation.backup, one home for both kinds.

``FileLock``: an exclusive lock on a file, held for the life of a ``with``
block (one module call: the pg_probackup catalog).

``fcntl.flock`` locks belong to the open file description, so the kernel drops
the lock when the holder exits or is killed: a crashed run never leaves a
stale lock behind. The holder writes its pid (and what it is doing) into the
file so a process that finds the lock busy can say who holds it.

The lock file is never unlinked: removing it would let a newcomer lock a fresh
inode while an old holder still locks the unlinked one.

The lease (``acquire_lease``/``release_lease``): the per-host backup lock, a
file that outlives one module call. A whole backup run is many module calls,
so no process holds it for the run's length and ``flock`` cannot serve.
Instead the run creates a lease file with O_EXCL that says who holds it, and
removes it at the end with its token. A lease is stale, and may be taken
over, when the host rebooted since it was taken (another boot id) or when it
expired (a run killed on the controller never releases it; the expiry bounds
how long that blocks backups).

Both write who holds them as JSON; ``read_holder`` reads either.
"""

import errno
import fcntl
import json
import os
import secrets
import time

from ansible_collections.alation.backup.plugins.module_utils._host import write_file

BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id'


class LockBusy(Exception):
    """The lock is held by another process and the timeout ran out."""

    def __init__(self, path, holder=None, waited=0):
        holder = holder or {}
        self.path = path
        self.holder_pid = holder.get('pid')
        self.holder_purpose = holder.get('purpose')
        self.waited = waited
        holder_pid, holder_purpose = self.holder_pid, self.holder_purpose
        who = 'pid %s' % holder_pid if holder_pid else 'pid unknown'
        if holder_purpose:
            who += ', %s' % holder_purpose
        super().__init__('lock %s is held by another process (%s); waited %ss' % (path, who, waited))


def read_holder(path):
    """What the holder of lock or lease ``path`` wrote about itself (a dict), or None when unreadable or empty."""
    try:
        with open(path, 'r') as f:
            holder = json.loads(f.read(65536))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


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
                raise LockBusy(self.path, self._holder(), waited=round(waited, 1))
            time.sleep(min(self.poll_interval, self.timeout - waited))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(dict(pid=os.getpid(), purpose=self.purpose)).encode('utf-8'))
        os.fsync(fd)
        self.fd = fd
        return self

    def _holder(self):
        # The holder writes its pid just after it gets the lock: retry briefly
        # so a newcomer racing that write still names it.
        for dummy in range(5):
            holder = read_holder(self.path)
            if holder and holder.get('pid'):
                return holder
            time.sleep(0.02)
        return None

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


# -- the lease: the per-host backup lock ------------------------------------------


class LockHeld(Exception):
    def __init__(self, path, holder):
        self.path = path
        self.holder = holder
        super().__init__('another run holds the host lock %s: %s' % (path, describe(holder)))


def boot_id():
    try:
        with open(BOOT_ID_FILE) as f:
            return f.read().strip()
    except OSError:
        return None


def describe(holder):
    if not holder:
        return 'unknown holder (unreadable lock file)'
    started = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(holder.get('started', 0)))
    return 'held by %s since %s (run %s, expires in %ds)' % (
        holder.get('owner', '?'), started, holder.get('run_id', '?'),
        max(0, int(holder.get('expires', 0) - time.time())))


def stale_reason(holder, now=None):
    """Why a lease may be taken over, or None while it is valid."""
    now = time.time() if now is None else now
    if holder is None:
        return 'the lock file is unreadable'
    if holder.get('boot_id') and boot_id() and holder['boot_id'] != boot_id():
        return 'the host rebooted since it was taken'
    if holder.get('expires', 0) <= now:
        return 'it expired'
    return None


class _DirGuard(object):
    """Serialise the read-check-replace of a lease (held for milliseconds, never for the run).

    It locks the lease's directory itself, so it leaves no file behind. Where
    a directory cannot be locked (some network filesystems) the O_EXCL
    create of the lease still refuses a second holder.
    """

    def __init__(self, path, timeout=30, poll_interval=0.05):
        self.dir = os.path.dirname(os.path.abspath(path))
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, 'O_CLOEXEC', 0))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    return self  # cannot lock a directory here
            if time.monotonic() >= deadline:
                os.close(self.fd)
                raise LockBusy(self.dir, None, waited=self.timeout)
            time.sleep(self.poll_interval)

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock
        return False


def _guard(path):
    return _DirGuard(path)


def acquire_lease(path, owner, run_id, max_age):
    """Take the lease; return (record, taken_over_reason). Raise LockHeld if valid and not ours.

    Taking it again with the same ``run_id`` returns the existing lease, so a
    retried task of the same run does not lock itself out.
    """
    now = time.time()
    record = dict(owner=owner, run_id=run_id, pid=os.getpid(), started=now, expires=now + max_age,
                  boot_id=boot_id(), token=secrets.token_hex(16))
    with _guard(path):
        taken_over = None
        if os.path.lexists(path):
            holder = read_holder(path)
            if holder and holder.get('run_id') == run_id:
                return holder, None
            taken_over = stale_reason(holder, now)
            if taken_over is None:
                raise LockHeld(path, holder)
            os.unlink(path)
        write_file(path, json.dumps(record), replace=False)
        return record, taken_over


def release_lease(path, token):
    """Remove the lease if it is ours; return True when removed."""
    with _guard(path):
        holder = read_holder(path)
        if holder is None or holder.get('token') != token:
            return False
        os.unlink(path)
        return True
