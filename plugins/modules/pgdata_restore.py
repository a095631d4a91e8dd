#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: pgdata_restore
short_description: Rebuild a PostgreSQL data directory from the pg staging dir of an unpacked Alation backup
version_added: 0.1.0
author: alation.backup maintainers (@alation-backup)
description:
  - Rebuilds PGDATA the way the backup was taken, as the database OS user (O(run_as)).
  - For O(engine=pg_probackup), C(pg_probackup restore) of O(backup_id) from the catalog in O(source).
    pg_probackup validates the backup's files (and the WAL it streamed) before it writes anything, so a missing
    or damaged file fails here. A STREAM backup is consistent once restored.
  - For O(engine=pg_basebackup), C(base.tar) is unpacked into O(pgdata) and C(pg_wal.tar) into its C(pg_wal);
    then C(pg_verifybackup) (PostgreSQL 13 and later) checks every file against the C(backup_manifest) that
    pg_basebackup wrote, and the WAL.
  - Tablespaces never go back to their old paths, which may belong to a live cluster. Each goes to
    C(<tablespace_dir>/<oid>), and the restored C(tablespace_map) and C(pg_tblspc) links say so.
  - O(pgdata) must be empty or absent. With O(force) a non-empty one is renamed to
    C(<pgdata>.before-restore-<UTC time>), never deleted; the module refuses while a server runs on it.
    When the restore fails, what it wrote is removed and a directory it moved aside is put back.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.runner
options:
  source:
    description: The unpacked pg staging dir (C(pgbackup) in the archive), as seen by the programs.
    type: path
    required: true
  engine:
    description: How the backup was taken; the archive's manifest records it (C(engine)).
    type: str
    choices: [pg_probackup, pg_basebackup]
    required: true
  backup_id:
    description: The pg_probackup backup to restore (the manifest's C(backup_id)). Required for O(engine=pg_probackup).
    type: str
  instance:
    description: The pg_probackup instance in the catalog.
    type: str
    default: alation
  pgdata:
    description: The data directory to rebuild, as seen by the programs. Made 0700 for O(run_as).
    type: path
    required: true
  tablespace_dir:
    description: Where the tablespaces go, one directory per tablespace oid. Default C(<pgdata>.tablespaces).
    type: path
  force:
    description: Move a non-empty O(pgdata) (and O(tablespace_dir)) aside rather than fail.
    type: bool
    default: false
  verify:
    description: For O(engine=pg_basebackup), check the rebuilt directory with C(pg_verifybackup) when it is present.
    type: bool
    default: true
  space_check:
    description: Fail before writing when the filesystem of O(pgdata) has less free space than the backup's size.
    type: bool
    default: true
  binary:
    description: The pg_probackup program (a path, or a name to search for). Default searches C(pg_probackup) and its versioned names.
    type: str
  bindir:
    description: Directory holding C(pg_verifybackup). Omit to search PATH and the usual PostgreSQL directories.
    type: path
  threads:
    description: Parallel threads for pg_probackup restore (C(-j)). Default the host's CPU count.
    type: int
attributes:
  check_mode:
    support: full
    details: Says what it would restore where, and what it would move aside; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Rebuild PGDATA from an unpacked pg_probackup catalog
  alation.backup.pgdata_restore:
    source: /data2/restore_drill/extracted/pgbackup
    engine: pg_probackup
    backup_id: TP5KQK
    pgdata: /data2/restore_drill/pgdata
    chroot: /opt/alation/alation
    run_as: alation
'''

RETURN = r'''
pgdata:
  description: The rebuilt data directory (as seen by the programs).
  returned: always
  type: str
moved_aside:
  description: Where a non-empty O(pgdata) was moved (or would be), or null.
  returned: success
  type: str
tablespaces:
  description: Each tablespace oid with its old and new path.
  returned: success
  type: dict
  sample: {"16410": {"old": "/data3/ts", "new": "/data2/restore_drill/pgdata.tablespaces/16410"}}
verified:
  description: What checked the files (C(pg_probackup restore), C(pg_verifybackup)), or null when nothing could.
  returned: success
  type: str
bytes:
  description: Size of the pg staging dir restored from.
  returned: success
  type: int
duration_s:
  description: Seconds the rebuild took.
  returned: success, not in check mode
  type: float
executed_commands:
  description: The command lines run.
  returned: always
  type: list
  elements: str
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._pg_probackup import error_lines, warning_lines
from ansible_collections.alation.backup.plugins.module_utils._restore import (
    TABLESPACE_MAP,
    RestoreError,
    check_space,
    make_private_dir,
    parse_tablespace_map,
    pg_major_version,
    prepare_target,
    relocated_tablespaces,
    running_postmaster,
    tablespace_map_text,
    tar_member_text,
    tree_bytes,
    user_ids,
    write_private_file,
)
from ansible_collections.alation.backup.plugins.module_utils._runner import (
    Runner, find_program, not_found, runner_argument_spec)
from ansible_collections.alation.backup.plugins.module_utils._staging import RemovalError, clear_tree


def short(stderr, lines=3):
    return ' '.join((stderr or '').strip().splitlines()[-lines:])


class Rebuild(object):
    def __init__(self, module, runner):
        self.module = module
        self.runner = runner
        p = module.params
        self.p = p
        self.host_source = runner.host_path(p['source'])
        self.host_pgdata = runner.host_path(p['pgdata'])
        self.tablespace_dir = p['tablespace_dir'] or p['pgdata'].rstrip('/') + '.tablespaces'
        self.host_tablespace_dir = runner.host_path(self.tablespace_dir)
        self.result = dict(changed=False, pgdata=p['pgdata'], moved_aside=None, tablespaces={}, verified=None,
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
        aside = prepare_target(host_path, self.p['force'], what, dry_run=self.module.check_mode)
        if aside:
            self.aside[host_path] = aside
        if self.module.check_mode:
            return aside
        self.prepared.append(host_path)
        if not os.path.exists(host_path):
            self.made.append(host_path)
        make_private_dir(host_path, uid, gid)
        return aside

    def roll_back(self):
        """After a failure: remove what this run wrote, put back what it moved aside."""
        for path in self.prepared:
            if path in self.aside or path in self.made:
                try:
                    if os.path.lexists(path):
                        clear_tree(path, remove_self=True)
                    if path in self.aside:
                        os.rename(self.aside[path], path)
                except (RemovalError, OSError) as e:
                    self.module.warn('could not undo the failed restore at %s: %s' % (path, e))
            else:
                # It was there and empty before: empty it again.
                try:
                    clear_tree(path)
                except RemovalError as e:
                    self.module.warn('could not empty %s after the failed restore: %s' % (path, e))

    # -- the engines -------------------------------------------------------------
    def probackup_binary(self):
        found, searched = find_program(self.runner, self.p['binary'] or 'pg_probackup')
        if not found:
            raise RestoreError(not_found(self.runner, self.p['binary'] or 'pg_probackup', searched,
                                         'Install pg_probackup or set binary to its path.'))
        return found

    def restore_probackup(self, relocated):
        p = self.p
        argv = [self.probackup_binary(), 'restore', '-B', p['source'], '--instance', p['instance'],
                '-D', p['pgdata'], '-i', p['backup_id'], '-j', str(max(1, p['threads'] or os.cpu_count() or 1))]
        for dummy, (old, new) in sorted(relocated.items()):
            argv.append('--tablespace-mapping=%s=%s' % (old, new))
        if self.module.check_mode:
            return argv
        run = self.runner.run(argv)
        if run['rc'] != 0:
            found = warning_lines(run['stderr'])
            raise RestoreError('pg_probackup restore of backup %s failed (exit %d): %s' % (
                p['backup_id'], run['rc'], '; '.join([w for w in found if 'not found' in w or 'corrupt' in w]
                                                     + error_lines(run['stderr'])) or short(run['stderr'])))
        self.result['verified'] = 'pg_probackup restore (validates the backup before restoring)'
        return argv

    def restore_basebackup(self, relocated, uid, gid):
        p = self.p
        src = p['source']
        steps = [['tar', '-x', '-f', os.path.join(src, 'base.tar'), '-C', p['pgdata']],
                 ['tar', '-x', '-f', os.path.join(src, 'pg_wal.tar'), '-C', os.path.join(p['pgdata'], 'pg_wal')]]
        for oid, (dummy, new) in sorted(relocated.items()):
            steps.append(['tar', '-x', '-f', os.path.join(src, '%s.tar' % oid), '-C', new])
        if self.module.check_mode:
            return steps
        for argv in steps:
            run = self.runner.run(argv)
            if run['rc'] != 0:
                raise RestoreError('unpacking %s failed (exit %d): %s' % (argv[3], run['rc'], short(run['stderr'])))
        if relocated:
            # The server makes pg_tblspc/<oid> from tablespace_map when it starts; the links are made now too,
            # so pg_verifybackup finds the files.
            write_private_file(os.path.join(self.host_pgdata, TABLESPACE_MAP), tablespace_map_text(relocated), uid, gid)
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
            self.module.warn('pg_verifybackup not found (PostgreSQL 13 and later have it): the rebuilt data '
                             'directory was not checked against backup_manifest')
            return
        argv = [program, '-m', manifest] + (['-i', TABLESPACE_MAP] if map_rewritten else []) + [p['pgdata']]
        run = self.runner.run(argv)
        if run['rc'] != 0:
            problems = [line.split('error: ', 1)[-1] for line in run['stderr'].splitlines() if 'error' in line]
            raise RestoreError('pg_verifybackup found the rebuilt data directory does not match the backup: %s%s' % (
                '; '.join(problems[:5]) or short(run['stderr']),
                ' (and %d more)' % (len(problems) - 5) if len(problems) > 5 else ''))
        self.result['verified'] = 'pg_verifybackup (every file against backup_manifest, and the WAL)'

    # -- the run -----------------------------------------------------------------
    def run(self):
        p = self.p
        live = running_postmaster(self.host_pgdata)
        if live:
            raise RestoreError('a PostgreSQL server (pid %d) runs on %s: stop it before restoring over it'
                               % (live, self.host_pgdata))
        source_there = os.path.isdir(self.host_source)
        if source_there or not self.module.check_mode:
            self.check_source()
        relocated = relocated_tablespaces(self.tablespace_entries() if source_there else [], self.tablespace_dir)
        self.result['tablespaces'] = dict((oid, dict(old=old, new=new)) for oid, (old, new) in relocated.items())
        self.result['bytes'] = tree_bytes(self.host_source) if source_there else 0
        if p['space_check'] and source_there:
            check_space(self.host_pgdata, self.result['bytes'], 'the rebuilt data directory')
        uid, gid = user_ids(p['run_as'], self.runner.chroot)
        self.result['changed'] = True
        started = time.monotonic()
        try:
            self.result['moved_aside'] = self.prepare(self.host_pgdata, 'pgdata', uid, gid)
            if relocated:
                self.prepare(self.host_tablespace_dir, 'tablespace_dir', uid, gid)
                for dummy, (old, new) in relocated.items():
                    if not self.module.check_mode:
                        make_private_dir(self.runner.host_path(new), uid, gid)
            if p['engine'] == 'pg_probackup':
                planned = [self.restore_probackup(relocated)]
            else:
                planned = self.restore_basebackup(relocated, uid, gid)
        except BaseException:
            if not self.module.check_mode:
                self.roll_back()
            raise
        if self.module.check_mode:
            self.result['executed_commands'] = [' '.join(a) + '  (check mode: not run)' for a in planned]
        else:
            self.result['duration_s'] = round(time.monotonic() - started, 2)
            self.result['moved_aside_tablespaces'] = self.aside.get(self.host_tablespace_dir)
        return self.result


def main():
    argument_spec = dict(
        source=dict(type='path', required=True),
        engine=dict(type='str', required=True, choices=['pg_probackup', 'pg_basebackup']),
        backup_id=dict(type='str'),
        instance=dict(type='str', default='alation'),
        pgdata=dict(type='path', required=True),
        tablespace_dir=dict(type='path'),
        force=dict(type='bool', default=False),
        verify=dict(type='bool', default=True),
        space_check=dict(type='bool', default=True),
        binary=dict(type='str'),
        bindir=dict(type='path'),
        threads=dict(type='int'),
    )
    argument_spec.update(runner_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    rebuild = Rebuild(module, Runner(module, chroot=module.params['chroot'], run_as=module.params['run_as']))
    try:
        module.exit_json(**rebuild.run())
    except RestoreError as e:
        module.fail_json(msg=str(e), **rebuild.result)
    except OSError as e:
        module.fail_json(msg='rebuilding %s failed: %s' % (rebuild.host_pgdata, e), **rebuild.result)


if __name__ == '__main__':
    main()
