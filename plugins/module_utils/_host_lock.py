# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-host backup lock: a lease file that outlives one module call.

A whole backup run is many module calls, so no process holds it for the run's
length and ``flock`` cannot serve. Instead the run creates a lease file with
O_EXCL that says who holds it, and removes it at the end with its token. A
lease is stale, and may be taken over, when the host rebooted since it was
taken (another boot id) or when it expired (a run killed on the controller
never releases it; the expiry bounds how long that blocks backups).
"""

from __future__ import annotations

import json
import os
import secrets
import time

from ansible_collections.alation.backup.plugins.module_utils._lock import FileLock

BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id'


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


def read_holder(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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


def _guard(path):
    """Serialise the read-check-replace of a lease (held for milliseconds, never for the run)."""
    return FileLock(path + '.guard', timeout=30, purpose='host lock bookkeeping')


def acquire(path, owner, run_id, max_age):
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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        return record, taken_over


def release(path, token):
    """Remove the lease if it is ours; return True when removed."""
    with _guard(path):
        holder = read_holder(path)
        if holder is None or holder.get('token') != token:
            return False
        os.unlink(path)
        return True
