# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rebuild a PostgreSQL data directory from the pg staging dir of an unpacked archive.

The core of pgdata_restore (``Rebuild``): pg_probackup restore, or
pg_basebackup's tar files unpacked and checked with pg_verifybackup;
tablespaces moved to their own place, never back to their old paths; a failed
rebuild undone. Standard library only.
"""

import os
import tarfile
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_read import tar_failure
from ansible_collections.alation.backup.plugins.module_utils._host import (
    check_space, command_failure, make_private_dir, tree_bytes, write_file)
from ansible_collections.alation.backup.plugins.module_utils._pg_probackup import failure_message, warning_lines
from ansible_collections.alation.backup.plugins.module_utils._pg_server import pg_major_version, running_postmaster
from ansible_collections.alation.backup.plugins.module_utils._restore import (
    RestoreError, prepare_target, undo_target)
from ansible_collections.alation.backup.plugins.module_utils._runner import find_program, not_found
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

ENGINES = ('pg_probackup', 'pg_basebackup')
TABLESPACE_MAP = 'tablespace_map'


# -- tablespaces ---------------------------------------------------------------------

def parse_tablespace_map(text):
    """[(oid, path)] from a tablespace_map (``<oid> <path>`` a line; the path may hold spaces)."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        oid, sep, path = line.partition(' ')
        if not sep or not oid.isdigit() or not path.startswith('/'):
            raise RestoreError('tablespace_map line %r is not "<oid> <absolute path>"' % line)
        entries.append((oid, path))
    return entries


def relocated_tablespaces(entries, tablespace_dir):
    """{oid: (old path, new path)}: each tablespace moves to ``<tablespace_dir>/<oid>``."""
    return dict((oid, (old, os.path.join(tablespace_dir, oid))) for oid, old in entries)


def tablespace_map_text(relocated):
    return ''.join('%s %s\n' % (oid, new) for oid, (dummy, new) in sorted(relocated.items()))


def tar_member_text(tar_path, name):
    """The text of member ``name`` of an uncompressed tar (pg_basebackup's base.tar), or None."""
    with tarfile.open(tar_path, 'r:') as tar:
        for info in tar:
            if info.name.lstrip('./') == name and info.isreg():
                return tar.extractfile(info).read().decode('utf-8')
    return None


# -- the module's core -------------------------------------------------------------

class Rebuild(object):
    """Rebuild ``pgdata`` from ``source`` the way the backup was taken (``engine``).

    ``params``: pgdata_restore's options; ``runner`` runs the programs (inside
    the Alation shell and as the database OS user when it says so). ``warn``
    takes what went wrong only in undoing a failed rebuild. In check mode it
    plans: what it would restore where, move aside and run.
    """

    def __init__(self, params, runner, check_mode=False, warn=None):
        self.p = params
        self.runner = runner
        self.check_mode = check_mode
        self.warnings = []
        self.warn = warn or self.warnings.append
        self.host_source = runner.host_path(params['source'])
        self.host_pgdata = runner.host_path(params['pgdata'])
        self.tablespace_dir = params['tablespace_dir'] or params['pgdata'].rstrip('/') + '.tablespaces'
        self.host_tablespace_dir = runner.host_path(self.tablespace_dir)
        self.result = dict(changed=False, pgdata=params['pgdata'], moved_aside=None, tablespaces={}, verified=None,
                           executed_commands=runner.executed_commands)
        self.prepared = []   # host dirs this run prepared (and so may undo)
        self.made = []       # of those, the ones it made: removed again on failure
        self.aside = {}      # host dir -> where it was moved, put back on failure

    # -- what the backup holds ---------------------------------------------------
    def backup_dir(self):
        return os.path.join(self.host_source, 'backups', self.p['instance'], self.p['backup_id'] or '')

    def check_source(self):
        if self.p['engine'] == 'pg_probackup':
            if not self.p['backup_id']:
                raise RestoreError('backup_id is required for engine=pg_probackup: the manifest records it (backup_id)')
            if not os.path.isfile(os.path.join(self.backup_dir(), 'backup.control')):
                raise RestoreError('%s holds no pg_probackup backup %s of instance %s (no %s/backup.control): is '
                                   'source the unpacked pgbackup dir?'
                                   % (self.host_source, self.p['backup_id'], self.p['instance'], self.backup_dir()))
        else:
            for name in ('base.tar', 'pg_wal.tar'):
                if not os.path.isfile(os.path.join(self.host_source, name)):
                    raise RestoreError('%s has no %s: is source the unpacked pgbackup dir of a pg_basebackup backup?'
                                       % (self.host_source, name))

    def tablespace_entries(self):
        if self.p['engine'] == 'pg_probackup':
            path = os.path.join(self.backup_dir(), 'database', TABLESPACE_MAP)
            if not os.path.isfile(path):
                return []
            with open(path) as f:
                return parse_tablespace_map(f.read())
        text = tar_member_text(os.path.join(self.host_source, 'base.tar'), TABLESPACE_MAP)
        return parse_tablespace_map(text) if text else []

    # -- places ----------------------------------------------------------------
    def prepare(self, host_path, what, uid, gid):
        """Make host_path an empty 0700 dir of run_as, moving a non-empty one aside with force."""
        aside = prepare_target(host_path, self.p['force'], what, dry_run=self.check_mode)
        if aside:
            self.aside[host_path] = aside
        if self.check_mode:
            return aside
        self.prepared.append(host_path)
        if not os.path.exists(host_path):
            self.made.append(host_path)
        make_private_dir(host_path, uid, gid, error=RestoreError)
        return aside

    def roll_back(self):
        """After a failure: remove what this run wrote, put back what it moved aside."""
        for path in self.prepared:
            undo_target(path, path in self.made, self.aside.get(path), self.warn)

    # -- the engines -------------------------------------------------------------
    def probackup_binary(self):
        binary = self.p['binary'] or 'pg_probackup'
        found, searched = find_program(self.runner, binary)
        if not found:
            raise RestoreError(not_found(self.runner, binary, searched,
                                         'Install pg_probackup or set binary to its path.'))
        return found

    def restore_probackup(self, relocated):
        p = self.p
        argv = [self.probackup_binary(), 'restore', '-B', p['source'], '--instance', p['instance'],
                '-D', p['pgdata'], '-i', p['backup_id'], '-j', str(max(1, p['threads'] or os.cpu_count() or 1))]
        for dummy, (old, new) in sorted(relocated.items()):
            argv.append('--tablespace-mapping=%s=%s' % (old, new))
        if self.check_mode:
            return [argv]
        run = self.runner.run(argv)
        if run['rc'] != 0:
            # pg_probackup names a missing or damaged file in a WARNING before its ERROR.
            damaged = [w for w in warning_lines(run['stderr']) if 'not found' in w or 'corrupt' in w]
            raise RestoreError(failure_message('restore of backup %s' % p['backup_id'], run)
                               + (' (%s)' % '; '.join(damaged) if damaged else ''))
        self.result['verified'] = 'pg_probackup restore (validates the backup before restoring)'
        return [argv]

    def restore_basebackup(self, relocated, uid, gid):
        p = self.p
        src = p['source']
        steps = [['tar', '-x', '-f', os.path.join(src, 'base.tar'), '-C', p['pgdata']],
                 ['tar', '-x', '-f', os.path.join(src, 'pg_wal.tar'), '-C', os.path.join(p['pgdata'], 'pg_wal')]]
        for oid, (dummy, new) in sorted(relocated.items()):
            steps.append(['tar', '-x', '-f', os.path.join(src, '%s.tar' % oid), '-C', new])
        if self.check_mode:
            return steps
        for argv in steps:
            run = self.runner.run(argv)
            if run['rc'] != 0:
                raise RestoreError(tar_failure('tar unpacking %s' % argv[3], run))
        if relocated:
            # The server makes pg_tblspc/<oid> from tablespace_map when it starts; the links are made now too,
            # so pg_verifybackup finds the files.
            write_file(os.path.join(self.host_pgdata, TABLESPACE_MAP), tablespace_map_text(relocated), 0o600, uid, gid)
            for oid, (dummy, new) in relocated.items():
                link = os.path.join(self.host_pgdata, 'pg_tblspc', oid)
                if os.path.lexists(link):
                    os.unlink(link)
                os.symlink(new, link)
                os.lchown(link, uid, gid)
        self.verify_basebackup(bool(relocated))
        return steps

    def verify_basebackup(self, map_rewritten):
        p = self.p
        manifest = os.path.join(p['source'], 'backup_manifest')
        if not p['verify'] or not os.path.isfile(self.runner.host_path(manifest)):
            return
        program, dummy = find_program(self.runner, 'pg_verifybackup', p['bindir'],
                                      version=pg_major_version(self.host_pgdata))
        if not program:
            self.warn('pg_verifybackup not found (PostgreSQL 13 and later have it): the rebuilt data '
                      'directory was not checked against backup_manifest')
            return
        argv = [program, '-m', manifest] + (['-i', TABLESPACE_MAP] if map_rewritten else []) + [p['pgdata']]
        run = self.runner.run(argv)
        if run['rc'] != 0:
            raise RestoreError('the rebuilt data directory does not match the backup: %s'
                               % command_failure('pg_verifybackup', run['rc'], run['stderr'], limit=5))
        self.result['verified'] = 'pg_verifybackup (every file against backup_manifest, and the WAL)'

    # -- the run -----------------------------------------------------------------
    def run(self):
        """The result; raises RestoreError (what was done so far is in ``self.result``)."""
        try:
            return self._run()
        except OSError as e:
            raise RestoreError('rebuilding %s failed: %s' % (self.host_pgdata, e))

    def _run(self):
        p = self.p
        live = running_postmaster(self.host_pgdata)
        if live:
            raise RestoreError('a PostgreSQL server (pid %d) runs on %s: stop it before restoring over it'
                               % (live, self.host_pgdata))
        source_there = os.path.isdir(self.host_source)
        if source_there or not self.check_mode:
            self.check_source()
        relocated = relocated_tablespaces(self.tablespace_entries() if source_there else [], self.tablespace_dir)
        self.result['tablespaces'] = dict((oid, dict(old=old, new=new)) for oid, (old, new) in relocated.items())
        self.result['bytes'] = tree_bytes(self.host_source) if source_there else 0
        if p['space_check'] and source_there:
            check_space(self.host_pgdata, self.result['bytes'], 'the rebuilt data directory',
                        'free space there or choose another place', error=RestoreError)
        run_as = p['run_as']
        uid, gid = Accounts(self.runner.chroot).user(run_as, 'run_as') if run_as else (os.geteuid(), os.getegid())
        self.result['changed'] = True
        started = time.monotonic()
        try:
            self.result['moved_aside'] = self.prepare(self.host_pgdata, 'pgdata', uid, gid)
            if relocated:
                self.prepare(self.host_tablespace_dir, 'tablespace_dir', uid, gid)
                for dummy, (old, new) in relocated.items():
                    if not self.check_mode:
                        make_private_dir(self.runner.host_path(new), uid, gid, error=RestoreError)
            if p['engine'] == 'pg_probackup':
                planned = self.restore_probackup(relocated)
            else:
                planned = self.restore_basebackup(relocated, uid, gid)
        except BaseException:
            if not self.check_mode:
                self.roll_back()
            raise
        if self.check_mode:
            self.result['executed_commands'] = [self.runner.preview(argv) for argv in planned]
        else:
            self.result['duration_s'] = round(time.monotonic() - started, 2)
            self.result['moved_aside_tablespaces'] = self.aside.get(self.host_tablespace_dir)
        return self.result
