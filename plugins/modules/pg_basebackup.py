#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: pg_basebackup
short_description: Stage a PostgreSQL base backup with pg_basebackup (tar format, streamed WAL)
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - The database step of the backup role for hosts without pg_probackup. PostgreSQL's own C(pg_basebackup)
    writes C(base.tar), C(pg_wal.tar) (the WAL streamed during the backup) and one C(<oid>.tar) per tablespace
    into O(dest), uncompressed (the archive step compresses).
  - Restore by extracting C(base.tar) into an empty data directory and C(pg_wal.tar) into its C(pg_wal/).
  - The module empties O(dest) first (or makes it when missing), mode 0700, owned by O(run_as), as
    M(alation.backup.staging_dir) O(alation.backup.staging_dir#module:state=empty) does, under its path rules
    (O(allowed_roots)), never following a symlink, never leaving its filesystem. A backup is never written over
    another one.
  - O(dbname) is not used by the backup; a base backup copies the whole cluster over a replication connection.
    O(inventory) reads the list of databases from it.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.postgres
  - alation.backup.postgres.password_file
  - alation.backup.shell
  - alation.backup.runner
  - alation.backup.lease
  - alation.backup.controller
options:
  dest:
    description:
      - Directory to write the backup to (the pg staging dir), as seen by the program (inside O(chroot) when set).
      - Emptied first, or made when missing (its missing parents as C(mkdir -p) makes them), mode 0700, owned by
        O(run_as) (in O(chroot), the Alation shell's account of that name) and its primary group.
      - Refused (nothing touched) when it is a symlink, not a directory, or breaks the path rules of
        M(alation.backup.staging_dir) (C(/), a system directory or directly inside one, fewer than two components).
    type: path
    required: true
  allowed_roots:
    description:
      - Directories below which O(dest) is accepted even when it is directly inside a system directory, as for
        M(alation.backup.staging_dir).
    type: list
    elements: path
    default: []
  inventory:
    description:
      - Count the tables of every database right after the backup, as M(alation.backup.pg_inventory) does (with
        C(psql) from O(bindir) or the usual places, over the same connection; O(dbname), default V(postgres), lists
        the others), into RV(databases).
      - A count that fails never fails the backup; RV(databases_error) says why.
    type: bool
    default: false
  bindir:
    description:
      - Directory holding C(pg_basebackup). Omit to search PATH, then C(/usr/lib/postgresql/<newest>/bin) and C(/usr/pgsql-<newest>/bin).
    type: path
  label:
    description: Backup label recorded in the backup.
    type: str
    default: alation_backup
  checkpoint:
    description: V(fast) starts at once with an immediate checkpoint; V(spread) waits for a normal one and loads the server less.
    type: str
    choices: [fast, spread]
    default: fast
attributes:
  check_mode:
    support: full
    details: Reports the command it would run and what emptying O(dest) would remove; runs nothing but the read-only
      count of O(inventory), and removes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix'''

EXAMPLES = r'''
- name: Stage the database backup in the pg staging dir
  alation.backup.pg_basebackup:
    dest: /data2/backup/pgbackup
    host: 127.0.0.1
    port: 5432
    user: alation
    password: "{{ vault_alation_pg_password }}"
    chroot: /opt/alation/alation
    run_as: alation
'''

RETURN = r'''
pg_staging_dir:
  description:
    - Where the backup was written (O(dest), as seen by the program).
    - Formerly returned as C(dest); renamed because Ansible overwrites C(mode), C(owner) and C(state) of a result
      that has a C(dest) naming an existing path, and RV(mode) is the backup mode.
  returned: always
  type: str
mode_taken:
  description: Always C(FULL); pg_basebackup has no incremental mode before PostgreSQL 17. Kept for older callers; see RV(mode).
  returned: always
  type: str
label:
  description: The backup label.
  returned: always
  type: str
engine:
  description: C(pg_basebackup), as M(alation.backup.pg_probackup) returns C(pg_probackup) in the same shape.
  returned: always
  type: str
mode:
  description: Always C(FULL).
  returned: always
  type: str
reason:
  description: Why that mode, C(pg_basebackup always takes a full backup).
  returned: always
  type: str
backup_id:
  description: The backup label (pg_basebackup has no backup id).
  returned: always
  type: str
recovered:
  description: Always empty (the shape of M(alation.backup.pg_probackup)); pg_basebackup has no chain to recover.
  returned: always
  type: dict
pruned:
  description: Always empty (the shape of M(alation.backup.pg_probackup)); pg_basebackup keeps no older backups.
  returned: always
  type: list
  elements: str
emptied:
  description: What was removed from O(dest) before the backup (in check mode, would be).
  returned: success
  type: dict
  sample: {removed_files: 3, removed_dirs: 0, removed_bytes: 41080000, skipped_mounts: []}
databases:
  description:
    - With O(inventory), each database with its number of tables (C(tables)), counted right after the backup;
      empty when they could not be counted.
  returned: success with O(inventory)
  type: dict
  sample: {alation: {tables: 412}, postgres: {tables: 0}}
databases_error:
  description: With O(inventory), why (some) databases could not be counted; empty when all were.
  returned: success with O(inventory)
  type: str
files:
  description: The files written, with their sizes in bytes.
  returned: success, not in check mode
  type: dict
  sample: {"base.tar": 24301056, "pg_wal.tar": 16778752, "backup_manifest": 182394}
bytes:
  description: Total size of the files written.
  returned: success, not in check mode
  type: int
duration_s:
  description: Seconds the module ran (emptying O(dest) and pg_basebackup).
  returned: always
  type: float
executed_commands:
  description: Command lines run (the password is never on them).
  returned: always
  type: list
  elements: str
stderr:
  description: pg_basebackup's standard error.
  returned: failure
  type: str
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _staging, _watch
from ansible_collections.alation.backup.plugins.module_utils._host import command_failure
from ansible_collections.alation.backup.plugins.module_utils._pg_inventory import count_tables
from ansible_collections.alation.backup.plugins.module_utils._postgres import (
    connection_argv,
    connection_env,
    password_file_argument_spec,
    postgres_argument_spec,
    take_password_file,
)
from ansible_collections.alation.backup.plugins.module_utils._runner import (
    Runner, find_program, not_found, runner_argument_spec)
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

REASON = 'pg_basebackup always takes a full backup'


def main():
    argument_spec = dict(
        dest=dict(type='path', required=True),
        bindir=dict(type='path'),
        label=dict(type='str', default='alation_backup'),
        checkpoint=dict(type='str', choices=['fast', 'spread'], default='fast'),
        allowed_roots=dict(type='list', elements='path', default=[]),
        inventory=dict(type='bool', default=False),
    )
    argument_spec.update(postgres_argument_spec())
    argument_spec.update(password_file_argument_spec())
    argument_spec.update(runner_argument_spec())
    argument_spec.update(_locks.lease_argument_spec())
    argument_spec.update(_watch.watch_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    take_password_file(module)
    started = time.monotonic()
    p = module.params
    runner = Runner(module, chroot=p['chroot'], run_as=p['run_as'])
    # One shape with pg_probackup's, so the role registers either as it is.
    result = dict(changed=False, pg_staging_dir=p['dest'], mode_taken='FULL', label=p['label'], executed_commands=[],
                  engine='pg_basebackup', mode='FULL', reason=REASON, backup_id=p['label'], recovered={}, pruned=[])

    def fail(msg, **more):
        result.update(more, duration_s=round(time.monotonic() - started, 2))
        module.fail_json(msg=msg, **result)

    host_dest = runner.host_path(p['dest'])
    try:
        uid, gid = Accounts(p['chroot']).user(p['run_as'], 'run_as') if p['run_as'] else (None, None)
    except ValueError as e:
        fail(str(e))
    why = _staging.refusal(host_dest, p['allowed_roots'], p['chroot'])
    if why:
        fail('dest %s: %s' % (p['dest'], why))

    program, searched = find_program(runner, 'pg_basebackup', p['bindir'])
    if not program:
        fail(not_found(runner, 'pg_basebackup', searched, 'Install the PostgreSQL client or set bindir.'))

    argv = [program, '-D', p['dest'], '--format=tar', '--wal-method=stream', '--checkpoint=%s' % p['checkpoint'],
            '--label=%s' % p['label'], '--no-password'] + connection_argv(dict(p, dbname=None))
    with _locks.leased(module, 'emptying the pg staging dir %s (any further)' % host_dest,
                       beat=_watch.guard(module, 'database')) as lease:
        lease.result = result
        try:
            dummy, tree = _staging.fresh_dir(host_dest, 0o700, uid, gid, p['allowed_roots'], p['chroot'],
                                             dry_run=module.check_mode, check=lease.check)
        except _staging.RemovalError as e:
            lease.fail_json('emptying dest %s before the backup: %s. Fix the cause (permissions, a busy mount) and run '
                            'again.' % (host_dest, e), changed=bool(e.result.files or e.result.dirs),
                            emptied=e.result.as_dict(), duration_s=round(time.monotonic() - started, 2))
        except (_staging.Refused, OSError) as e:
            lease.fail_json('dest %s: %s' % (p['dest'], e), duration_s=round(time.monotonic() - started, 2))
        result['emptied'] = tree.as_dict()
        if not module.check_mode:
            run = runner.run(argv, env=connection_env(p))
    if module.check_mode:
        result.update(changed=True, executed_commands=[runner.preview(argv)])
        inventory(module, runner, p, result)
        lease.exit_json(duration_s=round(time.monotonic() - started, 2), **result)

    result.update(changed=True, executed_commands=runner.executed_commands,
                  duration_s=round(time.monotonic() - started, 2))
    if lease.cancelled or run['rc'] != 0:
        lease.fail_json(command_failure('pg_basebackup', run['rc'], run['stderr']),
                        rc=run['rc'], stderr=run['stderr'], **result)
    files = {}
    for name in sorted(os.listdir(host_dest)):
        files[name] = os.lstat(os.path.join(host_dest, name)).st_size
    result.update(files=files, bytes=sum(files.values()))
    inventory(module, runner, p, result)
    result['duration_s'] = round(time.monotonic() - started, 2)
    lease.exit_json(**result)


def inventory(module, runner, p, result):
    """With inventory=true, the table counts right after the backup (never a failure)."""
    if not p['inventory']:
        return
    result['databases'], result['databases_error'] = count_tables(
        runner, connection_argv(dict(p, dbname=None)), connection_env(p), p['dbname'] or 'postgres', p['bindir'])
    if result['databases_error']:
        module.warn('the tables were not all counted for the restore drill: %s' % result['databases_error'])


if __name__ == '__main__':
    main()
