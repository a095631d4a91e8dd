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
  - It only reads, unless retention must make room (O(keep_count)); the archive module checks again, exactly, just
    before it writes.
  - With O(keep_count), what retention would free for this run's archive (as M(alation.backup.retention) plans it
    with O(alation.backup.retention#module:make_room_for=1), the archive not written yet) counts as room; when the
    backup fits only with it (RV(needs_retention)), the module runs that retention itself, under O(lease), and
    returns what it removed.
  - Retention here keeps what M(alation.backup.retention) keeps, by the same rules (O(keep_count), O(keep_days), the
    tiers and the pins); this run's archive takes today's day, ISO week and month already.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.lease
  - alation.backup.retention_rules
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
      - With O(keep_count), what retention would free counts instead.
    type: int
    default: 0
  keep_count:
    description:
      - Archives to keep, as O(alation.backup.retention#module:keep_count) of M(alation.backup.retention), with room
        made for this run's archive. V(0) (the default) leaves retention out of the check.
    type: int
    default: 0
  keep_days:
    description:
      - As O(alation.backup.retention#module:keep_days) of M(alation.backup.retention) (V(0) off); with O(keep_count).
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    details: Nothing is removed; RV(removed) lists what retention would remove when the space needs it.
  diff_mode:
    support: none
  platform:
    platforms: posix
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
  description:
    - The backup fits only once retention has freed O(reclaimable) bytes (or, with O(keep_count), what retention
      would free); without O(keep_count), run it before the backup. With O(keep_count) the module ran it.
  returned: always
  type: bool
reclaimable:
  description: The bytes counted as room besides the free space (O(reclaimable), or with O(keep_count) what retention would free).
  returned: always
  type: int
removed:
  description:
    - What retention removed to make room (in check mode, would remove), oldest first, as
      RV(alation.backup.retention#module:removed) of M(alation.backup.retention); empty when it did not run.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
    bytes:
      description: Its size.
      type: int
    why:
      description: The rule that let it go.
      type: str
freed_bytes:
  description: The bytes RV(removed) frees.
  returned: always
  type: int
future_archives:
  description: With O(keep_count), the archives named more than an hour ahead of this host's clock, left alone and not counted.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _retention
from ansible_collections.alation.backup.plugins.module_utils._alation import backup_space
from ansible_collections.alation.backup.plugins.module_utils._host import HostError, human


def main():
    module = AnsibleModule(
        argument_spec=dict(
            storage_dir=dict(type='path', required=True, aliases=['path']),
            pgdata=dict(type='path', required=True),
            extra_paths=dict(type='list', elements='path', default=[]),
            reclaimable=dict(type='int', default=0),
            keep_count=dict(type='int', default=0),
            keep_days=dict(type='int', default=0),
            **dict(_locks.lease_argument_spec(), **_retention.rules_argument_spec())
        ),
        supports_check_mode=True,
    )
    p = module.params
    storage = p['storage_dir']
    if p['keep_count'] < 0:
        module.fail_json(msg='keep_count=%s must be 0 (retention off) or more archives' % p['keep_count'])
    try:
        if _retention.off_with_tiers(_retention.rules_from(p)):
            raise HostError(_retention.off_with_tiers(_retention.rules_from(p)))
        if p['keep_count']:
            _retention.check_rules(_retention.rules_from(p))
    except HostError as e:
        module.fail_json(msg='retention in %s: %s' % (storage, e))
    planned = None
    reclaimable = max(0, p['reclaimable'])
    # Measuring a big PGDATA and hashing the newest archive (retention's plan) take a while: keep the host's lock
    # alive meanwhile.
    with _locks.leased(module, 'removing anything more') as lease:
        if p['keep_count'] and os.path.isdir(storage):
            try:
                # This run's archive is not written yet: room for it among the newest.
                planned = _retention.plan(storage, _retention.rules_from(p), make_room_for=1)
            except (HostError, OSError) as e:
                lease.fail_json('retention in %s: %s' % (storage, e))
            reclaimable = sum(r['bytes'] for r in planned['remove'] + planned['orphans'])
        space = backup_space(storage, p['pgdata'], p['extra_paths'])
        space.update(reclaimable=reclaimable, removed=[], freed_bytes=0,
                     future_archives=[f['path'] for f in planned['future']] if planned else [])
        lease.result = space
        space['needs_retention'] = space['free'] < space['needed'] <= space['free'] + reclaimable
        if space['free'] + reclaimable < space['needed']:
            lease.fail_json(
                'the backup storage dir %s has %s free%s; the backup may need %s (PGDATA %s is %s, for the pg staging '
                'dir and again for the archive at worst, plus %s of extra paths). Free space there, keep fewer '
                'archives (alation_backup_keep_count, and the tiers and pins: alation_backup_keep_daily, _weekly, '
                '_monthly, _pinned, <archive>.keep files), or set alation_backup_space_check=false if you know the data '
                'compresses well.'
                % (storage, human(space['free']),
                   ' and retention would free %s more' % human(reclaimable) if reclaimable else '',
                   human(space['needed']), p['pgdata'], human(space['pgdata_bytes']), human(space['extra_bytes'])))
        if space['needs_retention']:
            module.warn('the backup storage dir %s has %s free, the backup may need %s: retention frees %s of old '
                        'archives first' % (storage, human(space['free']), human(space['needed']), human(reclaimable)))
        if space['needs_retention'] and planned is not None:
            if planned['refused']:
                module.warn(planned['refused'])
            if planned['future']:
                module.warn('retention in %s: %s' % (storage, _retention.future_warning(planned)))
            try:
                space['removed'] = planned['remove'] + planned['orphans'] if module.check_mode else \
                    _retention.apply(planned, lease.check)
            except (HostError, OSError) as e:
                lease.fail_json('retention in %s: %s' % (storage, e))
            space['freed_bytes'] = sum(r['bytes'] for r in space['removed'])
    lease.exit_json(changed=bool(space['removed']), **space)


if __name__ == '__main__':
    main()
