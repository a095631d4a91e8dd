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

The holder removes the lock file on release, while it still holds the lock,
so a lock leaves nothing behind. A newcomer that locked the file just before
it was removed finds, once it has the lock, that the path is gone or is
another inode, and starts again on the path: two processes never hold locks
on two inodes of one path. A killed holder leaves the file; the next holder
removes it.

The lease (``acquire_lease``/``renew_lease``/``release_lease``): the per-host
backup lock, a file that outlives one module call. A whole backup run is many
module calls, so no process holds it for the run's length and ``flock``
cannot serve. Instead the run creates a lease file with O_EXCL that says who
holds it, renews it while it works (each step, and a ``Heartbeat`` thread in
its long-running modules), and removes it at the end with its token. A run
that was killed or cancelled stops renewing: once its lease has not been
renewed for ``stale_after`` seconds (or the host rebooted) the next run takes
it over and names the dead run. A live run is never taken over.

The lease records the machine (machine id and host name) and, beside the wall
clock of each renewal, CLOCK_BOOTTIME: on the same machine and boot, silence
is measured by the clock that does not jump, so a wall clock set back a day
(or ahead) neither keeps a dead run's lease nor frees a live one. Another
machine's lease (a storage dir shared over NFS) is judged by the wall clock
only, and never taken over while renewed within ``stale_after``.

Before each destructive act (emptying, deleting, publishing, renaming on the
far side) a module calls ``Heartbeat.check()``: it renews the lease and raises
``LeaseLost`` when the lease is no longer this run's, so a run that lost it
stops at once instead of at its end.

The owner marker (``.alation_backup_owner``): the machine that uses a backup
storage dir (and a pg staging dir kept elsewhere) says so in it; another
machine is refused (``check_owner``) before it reads, counts or removes
anything there.

Both write who holds them as JSON; ``read_holder`` reads either.
"""

import errno
import fcntl
import json
import os
import secrets
import socket
import threading
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import machine_id
from ansible_collections.alation.backup.plugins.module_utils._host import HostError, pid_alive, write_file

BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id'
UPTIME_FILE = '/proc/uptime'


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

    def _open(self):
        # O_CLOEXEC: programs we start must not inherit (and so keep) the lock.
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)

    def _is_current(self, fd):
        """Is ``fd`` still the file at our path (not removed or replaced by a releasing holder)?"""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def acquire(self):
        fd = self._open()
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self._is_current(fd):
                    break
                # We locked a file its holder removed on release: start again on the path.
                os.close(fd)
                fd = self._open()
                continue
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
            # Removed while still locked: whoever locks the old inode next sees it is gone.
            try:
                os.unlink(self.path)
            except OSError:
                os.ftruncate(self.fd, 0)  # at least nobody reads a stale pid
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

# A run renews its lease this often at most, and at least four times per stale_after.
HEARTBEAT_MAX_INTERVAL = 30


class LockHeld(Exception):
    def __init__(self, path, holder):
        self.path = path
        self.holder = holder
        super().__init__('another run holds the host lock %s: %s' % (path, describe(holder)))


class LeaseLost(Exception):
    """Our lease is gone or another run's: it was taken over (we did not renew it in time) or removed."""

    def __init__(self, path, holder):
        self.path = path
        self.holder = holder
        super().__init__('this run no longer holds the host lock %s (%s): it was not renewed in time and was '
                         'taken over, or it was removed' % (path, describe(holder) if holder else 'no lease'))


def boot_id():
    try:
        with open(BOOT_ID_FILE) as f:
            return f.read().strip()
    except OSError:
        return None


def boottime():
    """Seconds since this boot, suspend included (CLOCK_BOOTTIME): a clock no one sets; None if unreadable."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # Python 3.6 has no CLOCK_BOOTTIME; /proc/uptime is the same clock
        try:
            with open(UPTIME_FILE) as f:
                return float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def this_machine():
    """What a lease and an owner marker record of this machine: its machine id and host name."""
    return dict(machine_id=machine_id() or None, hostname=socket.gethostname())


def same_machine(record, me=None):
    """True when ``record`` (a lease or an owner marker) was written on this machine, False when on another,
    None when it does not say (a lease written before leases recorded the machine).

    Both the machine id and the host name must match: machines cloned from one image may share a machine id.
    """
    if not record or not (record.get('machine_id') or record.get('hostname')):
        return None
    me = me or this_machine()
    return record.get('machine_id') == me['machine_id'] and record.get('hostname') == me['hostname']


def machine_words(record):
    """``host alation-2 (machine id 0123abcd...)``: the machine a lease or marker names."""
    mid = (record or {}).get('machine_id') or ''
    return 'host %s%s' % ((record or {}).get('hostname') or '?',
                          ' (machine id %s...)' % mid[:12] if mid else '')


def utc_text(ts):
    """Epoch seconds as ISO 8601 UTC, for messages and records."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ts or 0))


def _renewed(holder):
    return holder.get('renewed', holder.get('started', 0))


def silence(holder, now=None, uptime=None):
    """Seconds since ``holder`` last renewed its lease.

    On this machine and boot, by CLOCK_BOOTTIME (``uptime``): a wall clock
    that jumped back a day or ahead says nothing about it. Else by the wall
    clock (``now``): another machine's boot clock cannot be compared with
    ours, and a lease from before the machine was recorded has none.
    """
    now = time.time() if now is None else now
    if (same_machine(holder) and holder.get('boot_id') and holder.get('boot_id') == boot_id()
            and holder.get('renewed_boottime') is not None):
        uptime = boottime() if uptime is None else uptime
        if uptime is not None:
            return uptime - holder['renewed_boottime']
    return now - _renewed(holder)


def describe(holder, now=None, renewed=True, uptime=None):
    """Who holds a lease, in words: owner, run, pid, machine, since when (and when last renewed)."""
    if not holder:
        return 'unknown holder (unreadable lock file)'
    text = 'run %s of %s (pid %s)%s, started %s' % (
        holder.get('run_id', '?'), holder.get('owner', '?'), holder.get('pid', '?'),
        ' on %s' % machine_words(holder) if holder.get('hostname') or holder.get('machine_id') else '',
        utc_text(holder.get('started')))
    return text + (', last renewed %ds ago' % max(0, int(silence(holder, now, uptime))) if renewed else '')


def stale_reason(holder, stale_after, now=None, uptime=None):
    """Why a lease may be taken over, or None while its run is alive.

    A live run renews its lease at every step and from a heartbeat in its
    long-running modules; one that was killed stops renewing. The holder's
    own ``stale_after`` (what it promised) counts; ``stale_after`` is for a
    lease that does not say. ``now`` is the wall clock, ``uptime`` the
    boot clock (CLOCK_BOOTTIME), both read when not given.
    """
    now = time.time() if now is None else now
    if holder is None:
        return 'the lock file is unreadable'
    limit = holder.get('stale_after') or stale_after
    machine = same_machine(holder)
    if machine is False:
        # Another machine (a storage dir shared over NFS): its boot id and boot
        # clock mean nothing here, so only the wall clocks of both hosts can be
        # compared. A lease renewed within stale_after by that clock is never taken.
        silent = now - _renewed(holder)
        if silent > limit:
            return ('not renewed for %ds by the wall clock (stale after %gs): that run on %s is gone'
                    % (silent, limit, machine_words(holder)))
        return None
    # Only this same machine with another boot id rebooted; a lease that does
    # not name its machine may be another's, so only the wall clock judges it.
    if machine and holder.get('boot_id') and boot_id() and holder['boot_id'] != boot_id():
        return 'the host rebooted since it was taken'
    silent = silence(holder, now, uptime)
    if silent > limit:
        return 'not renewed for %ds (stale after %gs): that run is gone' % (silent, limit)
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


def acquire_lease(path, owner, run_id, stale_after):
    """Take the lease; return (record, taken_over). Raise LockHeld while another live run holds it.

    ``taken_over`` is None, or a dict naming the dead run whose lease was
    taken over: ``holder`` (its record, without token) and ``reason``.
    Taking it again with the same ``run_id`` renews the existing lease, so a
    retried task of the same run does not lock itself out.
    """
    now, uptime = time.time(), boottime()
    record = dict(owner=owner, run_id=run_id, pid=os.getpid(), started=now, renewed=now, renewed_boottime=uptime,
                  stale_after=stale_after, boot_id=boot_id(), token=secrets.token_hex(16), **this_machine())
    with _guard(path):
        _remove_leftovers(path)
        taken_over = None
        if os.path.lexists(path):
            holder = read_holder(path)
            if holder and holder.get('run_id') == run_id and same_machine(holder) is not False:
                holder.update(renewed=now, renewed_boottime=uptime)
                write_file(path, json.dumps(holder))
                return holder, None
            reason = stale_reason(holder, stale_after, now, uptime)
            if reason is None:
                raise LockHeld(path, holder)
            taken_over = dict(holder=public(holder), reason=reason)
            os.unlink(path)
        write_file(path, json.dumps(record), replace=False)
        return record, taken_over


def _remove_leftovers(path):
    """Our own temporary copies of the lease (``<lease>.<pid>.tmp``) whose writer died mid-write."""
    directory, base = os.path.split(os.path.abspath(path))
    for name in os.listdir(directory):
        rest = name[len(base) + 1:-len('.tmp')] if name.startswith(base + '.') and name.endswith('.tmp') else ''
        if rest.isdigit() and not pid_alive(int(rest)):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def public(holder):
    return {k: v for k, v in (holder or {}).items() if k != 'token'}


def renew_lease(path, token, now=None, uptime=None):
    """Mark our lease alive now (by the wall clock and the boot clock); raise LeaseLost when it is no longer ours."""
    with _guard(path):
        holder = read_holder(path)
        if holder is None or holder.get('token') != token:
            raise LeaseLost(path, public(holder) if holder else None)
        holder.update(renewed=time.time() if now is None else now,
                      renewed_boottime=boottime() if uptime is None else uptime)
        write_file(path, json.dumps(holder))


def still_ours(path, token):
    """Whether the lease at ``path`` carries ``token`` (read only, no guard: for when a renewal could not be written)."""
    holder = read_holder(path)
    return bool(holder) and holder.get('token') == token


def release_lease(path, token):
    """Remove the lease if it is ours; return True when removed."""
    with _guard(path):
        holder = read_holder(path)
        if holder is None or holder.get('token') != token:
            return False
        os.unlink(path)
        _remove_leftovers(path)
        return True


def lease_argument_spec():
    """The ``lease`` option of the modules that work while a run holds the host lock.

    ``{}`` or null is no lease: what ``module_defaults`` on the ``leased`` group gives a module
    called outside a run. ``path`` and ``token`` go together.
    """
    return dict(lease=dict(type='dict', options=dict(
        path=dict(type='path'),
        token=dict(type='str', no_log=True),
    ), required_together=[('path', 'token')]))


def lease_of(params):
    """The ``lease`` option of a module's ``params`` (a dict with ``path`` and ``token``), or None for no lease."""
    lease = params.get('lease')
    return lease if lease and lease.get('path') and lease.get('token') else None


class Heartbeat(object):
    """Renews the run's lease while a long module works: ``start()``, the work, then ``stop()``.

    ``lease`` is the module's ``lease`` option (a dict with ``path`` and
    ``token``) or None (no lease: nothing to do). The lease is renewed at
    start, then from a daemon thread every min(30 s, stale_after / 4), and at
    stop. A lease found lost is kept in ``lost`` (a LeaseLost) and ``stop()``
    returns its message. The beat itself never stops the work: the module
    calls ``check()`` before each destructive act, which raises the LeaseLost
    there. Also a context manager.
    """

    def __init__(self, lease, interval=None):
        self.lease = lease or None
        self.interval = interval
        self.lost = None
        self._stop = threading.Event()
        self._thread = None
        self._renewing = threading.Lock()  # the beat and check() write the same temporary file
        self._halted = None  # the lease's path once halt() gave it up

    def _renew(self):
        """Renew once; True when the lease is ours (renewed, or its renewal could not be written but it is ours)."""
        with self._renewing:
            if self.lost is not None:
                return False
            if self.lease is None:
                return True  # halted: the run is being cancelled and its lease released; nothing to renew
            try:
                renew_lease(self.lease['path'], self.lease['token'])
            except LeaseLost as e:
                self.lost = e
                return False
            except (OSError, LockBusy):
                # Not written (a full disk, a guard held too long): the last renewal, at most one
                # interval ago, still holds off every other run; the next beat tries again.
                if not still_ours(self.lease['path'], self.lease['token']):
                    holder = read_holder(self.lease['path'])
                    self.lost = LeaseLost(self.lease['path'], public(holder) if holder else None)
                    return False
            return True

    def check(self):
        """Raise LeaseLost unless the lease is this run's right now; renew it on the way.

        Called just before each destructive act (emptying, deleting,
        publishing, renaming on the far side). Once it returns, the lease was
        renewed just now, so no other run may take it for ``stale_after``
        seconds: the act that follows is still this run's. Without a lease
        (check mode, a module called alone) it does nothing; once halted (a
        cancel releases the lease) it raises: nothing more may be destroyed.
        """
        if self._halted is not None:
            raise LeaseLost(self._halted, None)
        if self.lease is None:
            return
        if not self._renew():
            raise self.lost

    def _beat(self):
        while not self._stop.wait(self.interval):
            self._renew()

    def start(self):
        if self.lease is None:
            return self
        if self.interval is None:
            holder = read_holder(self.lease['path']) or {}
            stale_after = holder.get('stale_after') or 600
            self.interval = max(1.0, min(HEARTBEAT_MAX_INTERVAL, stale_after / 4.0))
        self._renew()
        self._thread = threading.Thread(target=self._beat, name='lease-heartbeat')
        self._thread.daemon = True
        self._thread.start()
        return self

    def halt(self):
        """Stop beating without a last renewal (the lease is about to be released)."""
        self._stop.set()
        if self.lease is not None:
            self._halted = self.lease['path']
        self.lease = None

    def stop(self):
        """Stop beating (renewing once more); the lost lease's message, or None while it is ours."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._renew()
        return str(self.lost) if self.lost else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def heartbeat(module):
    """Start renewing the lease of ``module``'s ``lease`` option (none in check mode: no lease was taken)."""
    return Heartbeat(None if module.check_mode else lease_of(module.params)).start()


def stopped(lost, before):
    """The message of a module that stopped at a lost lease, ``before`` saying what it did not do."""
    return '%s. Stopped before %s: nothing more was changed' % (lost, before)


class Leased(object):
    """The run's lease around one module's work: the one way a module keeps it, stops keeping it, and fails for it.

    ``with _locks.leased(module, 'removing anything more') as lease:`` starts the beat (a ``Heartbeat``, or
    the ``_watch.Guard`` of a step in the background), gives ``lease.check`` to the work for each destructive
    act, and stops the beat on every way out. A ``LeaseLost`` out of the block fails the module with
    ``stopped(lost, before)`` and ``lease.result``. After the block, ``lease.exit_json(**result)`` ends the
    module: failing with the cancel's or the lost lease's message when there is one. ``lease.fail_json(msg)``
    fails it: a cancel explains whatever failed after it, so its message wins.
    """

    def __init__(self, module, before='going on', beat=None):
        self.module = module
        self.before = before
        self.beat = heartbeat(module) if beat is None else beat
        # What a failure returns besides its message; the module fills it in as it goes.
        self.result = {}
        self._why = None
        self._stopped = False

    def check(self):
        """Before each destructive act: raise LeaseLost unless the lease is this run's right now."""
        self.beat.check()

    @property
    def cancelled(self):
        """The cancel's message once the controller stopped polling (a step in the background), else None."""
        return getattr(self.beat, 'cancelled', None)

    def stop(self):
        """Stop the beat (once); why the module must fail though its work may have ended, else None."""
        if not self._stopped:
            self._stopped = True
            self._why = self.beat.stop()
        return self.cancelled or self._why

    def fail_json(self, msg, **result):
        self.stop()
        self.module.fail_json(msg=self.cancelled or msg, **dict(self.result, **result))

    def exit_json(self, done=None, **result):
        """Exit with ``result``, or fail with it when the lease was lost (``done``: what was done all the same)."""
        why = self.stop()
        if why:
            self.module.fail_json(msg='%s. %s' % (why, done) if done and not self.cancelled else why, **result)
        self.module.exit_json(**result)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is not None and issubclass(exc_type, LeaseLost):
            self.module.fail_json(msg=self.cancelled or stopped(exc, self.before), **self.result)
        return False


def leased(module, before='going on', beat=None):
    """``Leased`` of ``module``: ``before`` says what a lost lease stops it before; ``beat`` a started
    ``_watch.Guard`` for a step in the background (default: the lease's ``Heartbeat``)."""
    return Leased(module, before, beat)


# -- the owner marker: one machine per backup storage dir ---------------------------

OWNER_MARKER = '.alation_backup_owner'


class ForeignOwner(HostError):
    """A backup storage dir (or pg staging dir) that another machine uses too; ``foreign`` is what says so
    (``dir`` and its ``marker`` and ``owner``, or its ``lease`` without token)."""

    def __init__(self, msg, foreign=None):
        super(ForeignOwner, self).__init__(msg)
        self.foreign = foreign or {}


def owner_markers(storage_dir, pg_staging_dir=None):
    """[(dir, marker path)] that say who owns ``storage_dir`` and ``pg_staging_dir``.

    The storage dir's marker is inside it. A pg staging dir inside the storage
    dir is covered by that one; one elsewhere gets its marker beside it
    (``.<name>.alation_backup_owner`` in its parent, as the catalog lock is):
    pg_probackup init needs an empty catalog dir, and pg_basebackup's is emptied
    each run. Only dirs (parents) that exist are listed.
    """
    found = []
    if storage_dir:
        storage_dir = os.path.normpath(storage_dir)
        if os.path.isdir(storage_dir):
            found.append((storage_dir, os.path.join(storage_dir, OWNER_MARKER)))
    if pg_staging_dir:
        pg = os.path.normpath(pg_staging_dir)
        inside = storage_dir and (pg == storage_dir or pg.startswith(storage_dir.rstrip('/') + '/'))
        parent, name = os.path.split(pg)
        if not inside and name and os.path.isdir(parent):
            found.append((pg, os.path.join(parent, '.%s%s' % (name, OWNER_MARKER))))
    return found


def _advice(directory):
    return ('Give each host its own backup storage dir and pg staging dir (alation_backup_storage_dir and '
            'alation_backup_pg_staging_dir, for example a dir named for the host below the shared one); nothing in '
            '%s was read, counted or removed. If that machine is gone for good and this host took its place, remove '
            'its marker.' % directory)


def check_owner(storage_dir, pg_staging_dir=None, lock_path=None, me=None):
    """Refuse (ForeignOwner) dirs another machine uses: an owner marker or a lease naming another machine.

    Reads only the markers and the lease; returns the [(dir, marker)] to claim.
    What it cannot see: archives or a catalog another machine wrote before it
    wrote a marker (older versions of this collection, other tools).
    """
    me = me or this_machine()
    markers = owner_markers(storage_dir, pg_staging_dir)
    for directory, marker in markers:
        if not os.path.lexists(marker):
            continue
        owner = read_holder(marker)
        foreign = dict(dir=directory, marker=marker, owner=owner)
        if owner is None:
            raise ForeignOwner('the owner marker %s of %s cannot be read: it should name the machine that uses '
                               'this dir. %s' % (marker, directory, _advice(directory)), foreign)
        if same_machine(owner, me) is not True:
            raise ForeignOwner('%s is used by another machine: its owner marker %s names %s, this is %s. %s'
                               % (directory, marker, machine_words(owner), machine_words(me), _advice(directory)),
                               foreign)
    if lock_path and os.path.lexists(lock_path):
        holder = read_holder(lock_path)
        if holder and same_machine(holder, me) is False:
            live = stale_reason(holder, holder.get('stale_after') or 600) is None
            raise ForeignOwner('%s is used by another machine: its host lock %s is held by %s (%s), this is %s. %s'
                               % (os.path.dirname(lock_path), lock_path, describe(holder),
                                  'a live run, never taken over' if live else 'not renewed in time, but that '
                                  'machine writes here', machine_words(me), _advice(os.path.dirname(lock_path))),
                               dict(dir=os.path.dirname(lock_path), lease=public(holder)))
    return markers


def claim_owner(markers, me=None):
    """Write the owner markers that are missing (under the lease); the paths written. ForeignOwner if one
    appeared naming another machine meanwhile."""
    me = me or this_machine()
    written = []
    for directory, marker in markers:
        try:
            write_file(marker, json.dumps(dict(me, since=time.time())), mode=0o644, replace=False)
            written.append(marker)
        except FileExistsError:
            owner = read_holder(marker)
            if same_machine(owner, me) is not True:
                raise ForeignOwner('%s is used by another machine: its owner marker %s names %s, this is %s. %s'
                                   % (directory, marker, machine_words(owner), machine_words(me), _advice(directory)),
                                   dict(dir=directory, marker=marker, owner=owner))
    return written
