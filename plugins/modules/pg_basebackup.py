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
  - O(dest) must be empty or absent; a backup is never written over another one.
  - O(dbname) is not used; a base backup copies the whole cluster over a replication connection.
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
      - Created by pg_basebackup when absent; its parent must be writable by O(run_as).
    type: path
    required: true
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
    details: Reports the command it would run; runs nothing.
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
dest:
  description: Where the backup was written (as seen by the program).
  returned: always
  type: str
mode_taken:
  description: Always C(FULL); pg_basebackup has no incremental mode before PostgreSQL 17.
  returned: always
  type: str
label:
  description: The backup label.
  returned: always
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
  description: Seconds pg_basebackup ran.
  returned: success, not in check mode
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

from ansible_collections.alation.backup.plugins.module_utils import _locks, _watch
from ansible_collections.alation.backup.plugins.module_utils._host import command_failure
from ansible_collections.alation.backup.plugins.module_utils._postgres import (
    connection_argv,
    connection_env,
    password_file_argument_spec,
    postgres_argument_spec,
    take_password_file,
)
from ansible_collections.alation.backup.plugins.module_utils._runner import (
    Runner, find_program, not_found, runner_argument_spec)


def main():
    argument_spec = dict(
        dest=dict(type='path', required=True),
        bindir=dict(type='path'),
        label=dict(type='str', default='alation_backup'),
        checkpoint=dict(type='str', choices=['fast', 'spread'], default='fast'),
    )
    argument_spec.update(postgres_argument_spec())
    argument_spec.update(password_file_argument_spec())
    argument_spec.update(runner_argument_spec())
    argument_spec.update(_locks.lease_argument_spec())
    argument_spec.update(_watch.watch_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    take_password_file(module)
    p = module.params
    runner = Runner(module, chroot=p['chroot'], run_as=p['run_as'])
    result = dict(changed=False, dest=p['dest'], mode_taken='FULL', label=p['label'], executed_commands=[])

    host_dest = runner.host_path(p['dest'])
    if os.path.islink(host_dest) or (os.path.lexists(host_dest) and not os.path.isdir(host_dest)):
        module.fail_json(msg='dest %s is not a directory: give the pg staging dir' % host_dest, **result)
    if os.path.isdir(host_dest) and os.listdir(host_dest):
        module.fail_json(msg='dest %s is not empty: pg_basebackup writes only into an empty or absent directory; '
                             'empty it first (the backup role does)' % host_dest, **result)

    program, searched = find_program(runner, 'pg_basebackup', p['bindir'])
    if not program:
        module.fail_json(msg=not_found(runner, 'pg_basebackup', searched,
                                       'Install the PostgreSQL client or set bindir.'), **result)

    argv = [program, '-D', p['dest'], '--format=tar', '--wal-method=stream', '--checkpoint=%s' % p['checkpoint'],
            '--label=%s' % p['label'], '--no-password'] + connection_argv(dict(p, dbname=None))
    if module.check_mode:
        result.update(changed=True, executed_commands=[runner.preview(argv)])
        module.exit_json(**result)

    started = time.monotonic()
    with _locks.leased(module, beat=_watch.guard(module, 'database')) as lease:
        run = runner.run(argv, env=connection_env(p))
    result.update(changed=True, executed_commands=runner.executed_commands,
                  duration_s=round(time.monotonic() - started, 2))
    if lease.cancelled or run['rc'] != 0:
        lease.fail_json(command_failure('pg_basebackup', run['rc'], run['stderr']),
                        rc=run['rc'], stderr=run['stderr'], **result)
    files = {}
    for name in sorted(os.listdir(host_dest)):
        files[name] = os.lstat(os.path.join(host_dest, name)).st_size
    result.update(files=files, bytes=sum(files.values()))
    lease.exit_json(**result)


if __name__ == '__main__':
    main()
