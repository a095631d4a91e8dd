#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: space_check
short_description: Refuse a backup that the backup storage dir has no room for, before anything is written
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Measures PGDATA and the extra paths (file bytes, links not followed, staying on their filesystem like C(du -x))
    and the free space of the backup storage dir's filesystem, and fails when the backup may not fit.
  - The need is PGDATA for the pg staging dir (a FULL backup is about its size) plus, for the archive at worst
    (nothing compresses), PGDATA again and the extra paths.
  - It only reads; the archive module checks again, exactly, just before it writes.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.attributes.read_only
  - alation.backup.lease
options:
  storage_dir:
    description: The backup storage dir (a host path); its nearest existing parent counts when it does not exist yet.
    type: path
    required: true
    aliases: [path]
  pgdata:
    description: The PostgreSQL data directory (a host path).
    type: path
    required: true
  extra_paths:
    description: Host paths of the site files that are staged and archived too.
    type: list
    elements: path
    default: []
  reclaimable:
    description:
      - Bytes that retention would free before this run's archive is written (RV(alation.backup.retention#module:freed_bytes)
        of M(alation.backup.retention) in check mode with O(alation.backup.retention#module:make_room_for=1)).
      - When the free space falls short only without them, the check passes and says so in RV(needs_retention).
    type: int
    default: 0
'''

EXAMPLES = r'''
- name: Refuse when the backup storage dir is short of space
  alation.backup.space_check:
    storage_dir: /opt/alation/alation/data2/backup
    pgdata: /opt/alation/alation/data1/pgsql/data
'''

RETURN = r'''
free:
  description: Free bytes for unprivileged users in O(storage_dir)'s filesystem.
  returned: always
  type: int
needed:
  description: Bytes the backup may need there at worst.
  returned: always
  type: int
pgdata_bytes:
  description: File bytes under O(pgdata).
  returned: always
  type: int
extra_bytes:
  description: File bytes of O(extra_paths).
  returned: always
  type: int
needs_retention:
  description: The backup fits only once retention has freed O(reclaimable) bytes; run it before the backup.
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks
from ansible_collections.alation.backup.plugins.module_utils._alation import backup_space
from ansible_collections.alation.backup.plugins.module_utils._host import human


def main():
    module = AnsibleModule(
        argument_spec=dict(
            storage_dir=dict(type='path', required=True, aliases=['path']),
            pgdata=dict(type='path', required=True),
            extra_paths=dict(type='list', elements='path', default=[]),
            reclaimable=dict(type='int', default=0),
            **_locks.lease_argument_spec()
        ),
        supports_check_mode=True,
    )
    p = module.params
    # Measuring a big PGDATA takes a while: keep the host's lock alive meanwhile.
    with _locks.leased(module) as lease:
        space = backup_space(p['storage_dir'], p['pgdata'], p['extra_paths'])
    reclaimable = max(0, p['reclaimable'])
    space['needs_retention'] = space['free'] < space['needed'] <= space['free'] + reclaimable
    if space['free'] + reclaimable < space['needed']:
        module.fail_json(
            msg='the backup storage dir %s has %s free%s; the backup may need %s (PGDATA %s is %s, for the pg staging '
                'dir and again for the archive at worst, plus %s of extra paths). Free space there, keep fewer '
                'archives (alation_backup_keep_count), or set alation_backup_space_check=false if you know the data '
                'compresses well.'
                % (p['storage_dir'], human(space['free']),
                   ' and retention would free %s more' % human(reclaimable) if reclaimable else '',
                   human(space['needed']), p['pgdata'], human(space['pgdata_bytes']), human(space['extra_bytes'])),
            **space)
    if space['needs_retention']:
        module.warn('the backup storage dir %s has %s free, the backup may need %s: retention frees %s of old '
                    'archives first' % (p['storage_dir'], human(space['free']), human(space['needed']), human(reclaimable)))
    lease.exit_json(changed=False, **space)


if __name__ == '__main__':
    main()
