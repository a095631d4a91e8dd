#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: retention
short_description: Remove old Alation backup archives from the backup storage dir, keeping a verified one
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Removes the archives that no rule keeps, each with its C(.sha256) - an archive stays when it is among the
    O(keep_count) newest, younger than O(keep_days) by the time in its name, the newest of one of the last
    O(keep_daily) days, O(keep_weekly) ISO weeks or O(keep_monthly) months, or pinned (O(keep_pinned), or a
    C(<archive>.keep) file beside it).
  - RV(kept) names the rules that keep each archive, RV(removed) why each file goes; in check mode they are exactly
    what a run would keep and remove.
  - Only files named as M(alation.backup.archive) names archives, and their C(.sha256), are candidates. Temporary
    files (an archive being written), foreign files and directories are never touched.
  - The newest archive must match its C(.sha256) (the size recorded at publish and the hash, read in full) before
    anything older goes, and is itself never removed, so at least one verified archive is always left.
  - A C(.sha256) whose archive is gone is removed.
  - A file name's time is only what some clock said. The archives in O(protect) (the one this run wrote) are never
    removed, wherever their names rank them (a clock that jumped back names them before older archives); they
    count toward O(keep_count) there, and the next oldest archive goes in their place.
  - Archives named more than an hour ahead of this host's clock (a clock that ran ahead) are left alone - never
    removed, never the newest, not counted toward O(keep_count) - and named in a warning and in RV(future_archives).
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.lease
  - alation.backup.retention_rules
options:
  storage_dir:
    description: The backup storage dir (a host path).
    type: path
    required: true
    aliases: [dir]
  keep_count:
    description:
      - How many of the newest archives to keep.
      - V(0), the default, keeps every archive (retention off, nothing is removed), as in
        M(alation.backup.offsite_copy); the backup role passes C(alation_backup_keep_count), 7 unless set. With V(0),
        O(keep_daily), O(keep_weekly) and O(keep_monthly) must be V(0) too (they are refused otherwise).
      - Pinned archives are not counted.
    type: int
    default: 0
  keep_days:
    description:
      - Keep every archive younger than this many days too (by the UTC time in its name). V(0) turns this rule off.
    type: int
    default: 0
  make_room_for:
    description:
      - Count this many archives about to be written among the newest already, so that the space they need can
        be freed before they are written. The newest existing archive is still never removed.
    type: int
    default: 0
  suffix:
    description: The last part of the archive names.
    type: str
    default: alation_backup
  protect:
    description:
      - Archives (paths, or names in O(storage_dir)) never removed, whatever their names say; they count toward
        O(keep_count). The backup role passes the archive its run wrote.
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    details: In check mode RV(removed) lists exactly what would be removed; nothing is.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Keep the 7 newest archives, and any younger than 14 days
  alation.backup.retention:
    storage_dir: /opt/alation/alation/data2/backup
    keep_count: 7
    keep_days: 14
    protect:
      - /opt/alation/alation/data2/backup/202611301200_5-17-0-116556_alation_backup.tar.gz
  register: retention

- name: A common policy - 7 daily, 4 weekly, 12 monthly, and the archive before the upgrade forever
  alation.backup.retention:
    storage_dir: /opt/alation/alation/data2/backup
    keep_count: 7
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12
    keep_pinned:
      - 202609010200_5-16-2-110011_alation_backup.tar.gz
  check_mode: true
  register: would
'''

RETURN = r'''
removed:
  description: Each file removed (in check mode, that would be), oldest first, with its size and why it went.
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
kept:
  description: The archives kept, oldest first, each with the rules that keep it.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The archive.
      type: str
    rules:
      description:
        - Why it stays - C(newest good) (the newest, verified), C(this run) (in O(protect)), C(pinned (.keep)),
          C(pinned (keep_pinned)), C(count), C(days), C(daily 2026-12-01), C(weekly 2026-W49), C(monthly 2026-12);
          C(retention is off) with O(keep_count=0), C(the newest does not verify) when RV(refused).
      type: list
      elements: str
refused:
  description: Why no archive could go (the newest does not verify), or null.
  returned: always
  type: str
future_archives:
  description: The archives named more than an hour ahead of this host's clock, left alone and not counted.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _retention
from ansible_collections.alation.backup.plugins.module_utils._archive_names import DEFAULT_SUFFIX, list_archives
from ansible_collections.alation.backup.plugins.module_utils._host import HostError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            storage_dir=dict(type='path', required=True, aliases=['dir']),
            keep_count=dict(type='int', default=0),
            keep_days=dict(type='int', default=0),
            make_room_for=dict(type='int', default=0),
            suffix=dict(type='str', default=DEFAULT_SUFFIX),
            protect=dict(type='list', elements='path', default=[]),
            **dict(_locks.lease_argument_spec(), **_retention.rules_argument_spec())
        ),
        supports_check_mode=True,
    )
    p = module.params
    off_with_tiers = _retention.off_with_tiers(_retention.rules_from(p))
    if off_with_tiers:
        module.fail_json(msg=off_with_tiers)
    if p['keep_count'] == 0:
        kept = [dict(path=path, rules=['retention is off']) for path in
                (list_archives(p['storage_dir'], p['suffix']) if os.path.isdir(p['storage_dir']) else [])]
        module.exit_json(changed=False, removed=[], freed_bytes=0, kept=kept, refused='keep_count is 0: retention is off',
                         future_archives=[])
    # Hashing the newest archive in full takes minutes on a big one: keep the host's lock alive meanwhile.
    with _locks.leased(module, 'removing anything more from %s' % p['storage_dir']) as lease:
        try:
            planned = _retention.plan(p['storage_dir'], _retention.rules_from(p), p['suffix'], p['make_room_for'],
                                      protect=p['protect'])
            removed = planned['remove'] + planned['orphans'] if module.check_mode else _retention.apply(planned, lease.check)
        except (HostError, OSError) as e:
            lease.fail_json('retention in %s: %s' % (p['storage_dir'], e))
    if planned['refused']:
        module.warn(planned['refused'])
    if planned['future']:
        module.warn('retention in %s: %s' % (p['storage_dir'], _retention.future_warning(planned)))
    lease.exit_json(changed=bool(removed), removed=removed, freed_bytes=sum(r['bytes'] for r in removed),
                    kept=planned['kept'], refused=planned['refused'],
                    future_archives=[f['path'] for f in planned['future']])


if __name__ == '__main__':
    main()
