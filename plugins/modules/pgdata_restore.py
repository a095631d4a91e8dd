#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: pgdata_restore
short_description: Rebuild a PostgreSQL data directory from the pg staging dir of an unpacked Alation backup
version_added: 0.2.0
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
  - alation.backup.shell
  - alation.backup.runner
  - alation.backup.lease
  - alation.backup.controller
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _watch
from ansible_collections.alation.backup.plugins.module_utils._host import HostError
from ansible_collections.alation.backup.plugins.module_utils._rebuild import ENGINES, Rebuild
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, runner_argument_spec


def main():
    argument_spec = dict(
        source=dict(type='path', required=True),
        engine=dict(type='str', required=True, choices=list(ENGINES)),
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
    argument_spec.update(_locks.lease_argument_spec())
    argument_spec.update(_watch.watch_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    runner = Runner(module, chroot=module.params['chroot'], run_as=module.params['run_as'])
    rebuild = Rebuild(module.params, runner, check_mode=module.check_mode, warn=module.warn)
    lease = _locks.leased(module, 'rebuilding further', _watch.guard(module, 'rebuild'))
    with lease:
        try:
            result = rebuild.run()
        except HostError as e:
            lease.fail_json(str(e), **rebuild.result)
        except KeyboardInterrupt:
            lease.fail_json('interrupted', **rebuild.result)
    lease.exit_json(**result)


if __name__ == '__main__':
    main()
