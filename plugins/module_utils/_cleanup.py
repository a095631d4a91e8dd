# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end of a backup run, also after a failure, in one call: empty the staging dir (the folder stays), remove
the pg staging dir when the run keeps no incremental chain, and release the host lock whatever happened before.

Each part works as its own module would: the staging dir as staging_dir state=empty, a pg_probackup catalog as
pg_probackup state=absent (refusing a dir that is no catalog and one a backup runs in, under the catalog's lock),
a pg_basebackup staging dir as staging_dir state=absent, the lock as backup_lock state=absent. Standard library
only.
"""

import time

from ansible_collections.alation.backup.plugins.module_utils import _locks, _staging
from ansible_collections.alation.backup.plugins.module_utils._locks import FileLock, LockBusy
from ansible_collections.alation.backup.plugins.module_utils._pg_probackup import (
    Catalog, PgProbackupError, lock_path, remove_catalog)

ENGINES = ('pg_probackup', 'pg_basebackup')


def empty_staging(p, uid, gid, dry_run, check, warn):
    """(a) The staging dir exists, empty, with its mode and owner; its part of the result."""
    changed, tree = _staging.fresh_dir(p['staging_dir'], p['mode'], uid, gid, p['allowed_roots'], p['chroot'],
                                       dry_run=dry_run, check=check, mounts_fail=False)
    for mount in tree.skipped_mounts:
        warn("left the mount point '%s' alone (another filesystem or a bind mount); the directories above it were "
             "kept" % mount)
    return dict(tree.as_dict(), changed=changed)


def remove_pg_staging(p, runner, dry_run, check, warn):
    """(b) The pg staging dir removed with the engine's safety; its part of the result."""
    path = p['pg_staging_dir']
    if p['engine'] == 'pg_basebackup':
        tree = _staging.remove_dir(path, p['allowed_roots'], p['chroot'], dry_run=dry_run, check=check)
        if tree is None:
            return dict(changed=False, removed_files=0, removed_dirs=0, removed_bytes=0, skipped_mounts=[])
        for mount in tree.skipped_mounts:
            warn("left the mount point '%s' alone (another filesystem or a bind mount); the directories above it "
                 "were kept" % mount)
        return dict(tree.as_dict(), changed=bool(tree.files or tree.dirs))
    # The catalog as this process finds it (a host path); its shell's system dirs stay guarded.
    cat = Catalog(runner, None, path, 'alation')
    cat.shell_root = p['chroot']
    cat.allowed_roots = p['allowed_roots']
    cat.lease_check = check
    if dry_run:
        return dict(changed=remove_catalog(cat, True))
    lock = FileLock(lock_path(path), timeout=p['lock_timeout'],
                    purpose='alation.backup.cleanup catalog=%s' % path)
    try:
        lock.acquire()
    except LockBusy as e:
        raise PgProbackupError('another backup of this catalog is running (pid %s): lock %s held%s; waited %ss '
                               '(lock_timeout=%s). Run again when it is done, or raise lock_timeout.'
                               % (e.holder_pid or 'unknown', e.path,
                                  ' for: %s' % e.holder_purpose if e.holder_purpose else '', e.waited,
                                  p['lock_timeout']))
    try:
        return dict(changed=remove_catalog(cat, False))
    finally:
        lock.release()


def run(p, runner, uid, gid, check_mode, beat, warn):
    """The three parts; (result, failure message or None). ``p``: the module's params (``mode`` an int),
    ``beat``: the lease's heartbeat (started; stopped here before the lease is released)."""
    started = time.monotonic()
    result = dict(changed=False, staging={}, pg_staging={}, released=False, failed_parts=[])
    errors = []
    parts = [('staging', 'emptying the staging dir %s' % p['staging_dir'],
              lambda: empty_staging(p, uid, gid, check_mode, beat.check, warn))]
    if p['remove_pg_staging']:
        parts.append(('pg_staging', 'removing the pg staging dir %s (%s)' % (p['pg_staging_dir'], p['engine']),
                      lambda: remove_pg_staging(p, runner, check_mode, beat.check, warn)))
    for key, doing, part in parts:
        try:
            result[key] = part()
        except _locks.LeaseLost as e:
            errors.append((key, _locks.stopped(e, '%s (any further)' % doing)))
            result[key] = _partial(e)
        except _staging.RemovalError as e:
            errors.append((key, '%s: %s. Fix the cause (permissions, immutable attribute, a busy mount) and run '
                                'again' % (doing, e)))
            result[key] = dict(e.result.as_dict(), changed=bool(e.result.files or e.result.dirs), failed_path=e.path)
        except PgProbackupError as e:
            errors.append((key, '%s: %s' % (doing, e.msg)))
        except (_staging.Refused, ValueError, OSError) as e:
            errors.append((key, '%s: %s' % (doing, e)))
    result['duration_s'] = round(time.monotonic() - started, 3)
    lost = beat.stop()
    if lost and not errors:
        errors.append(('lease', lost))
    result['changed'] = any(result[k].get('changed') for k in ('staging', 'pg_staging'))
    # (c) Whatever happened above: a lock left behind would refuse every run for stale_after.
    lease = _locks.lease_of(p) or {}
    if lease and not check_mode:
        try:
            result['released'] = _locks.release_lease(lease['path'], lease['token'])
        except (OSError, LockBusy) as e:
            errors.append(('lease', 'releasing the host lock %s: %s' % (lease['path'], e)))
    result['failed_parts'] = [key for key, dummy in errors]
    if not errors:
        return result, None
    tail = ('; the host lock was released' if result['released'] else
            '; the host lock was not released' if lease and not check_mode and 'lease' not in result['failed_parts']
            else '')
    return result, 'cleanup failed: %s%s' % ('; '.join(msg for dummy, msg in errors), tail)


def _partial(error):
    tree = getattr(error, 'result', None)
    if tree is None:
        return dict(changed=False)
    return dict(tree.as_dict(), changed=bool(tree.files or tree.dirs))
