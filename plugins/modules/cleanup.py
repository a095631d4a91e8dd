#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: cleanup
short_description: End a backup run in one call - empty the staging dir, remove the pg staging dir, release the host lock
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - The cleanup of Alation's Backup V1 (steps 4 and 5), also after a failure, in one call.
  - First it empties the staging dir O(staging_dir) and keeps the folder, as M(alation.backup.staging_dir) with
    O(alation.backup.staging_dir#module:state=empty) does (made when missing, O(mode), O(owner), O(group); never
    following a symlink, never leaving its filesystem; a mount point inside is left alone and warned about).
  - Then, with O(remove_pg_staging), it removes the pg staging dir O(pg_staging_dir) with the safety of its
    O(engine) - a pg_probackup catalog as M(alation.backup.pg_probackup) with
    O(alation.backup.pg_probackup#module:state=absent) removes it (it refuses a directory that is no catalog and a
    catalog a backup is running in, and takes the catalog's lock), a pg_basebackup staging dir as
    M(alation.backup.staging_dir) with O(alation.backup.staging_dir#module:state=absent) removes it.
  - Last it ALWAYS releases the host lock O(lease), as M(alation.backup.backup_lock) with
    O(alation.backup.backup_lock#module:state=absent) does, even when a part above failed; the module then fails
    naming which part (RV(failed_parts)).
  - The path rules of M(alation.backup.staging_dir) apply to both dirs (not C(/), not a system directory nor directly
    inside one, at least two components, not a symlink; O(allowed_roots)), inside the Alation shell O(chroot) too.
  - Both dirs are host paths; O(chroot) only names the shell whose accounts O(owner) and O(group) are.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.shell
  - alation.backup.lease
options:
  staging_dir:
    description:
      - The staging dir, as a host path (for the Alation shell, prefix C(/opt/alation/alation)).
    type: path
    required: true
  mode:
    description: Permissions of the staging dir, an octal string.
    type: str
    default: '0700'
  owner:
    description:
      - User (name or numeric uid) that should own the staging dir. Omit to leave it as it is (a new dir belongs to
        the connecting user).
    type: str
  group:
    description:
      - Group (name or numeric gid) of the staging dir. Omit for O(owner)'s primary group, or, without O(owner), to
        leave it as it is.
    type: str
  allowed_roots:
    description:
      - Directories below which the dirs are accepted even when directly inside a system directory, as for
        M(alation.backup.staging_dir).
    type: list
    elements: path
    default: []
  remove_pg_staging:
    description:
      - Remove O(pg_staging_dir) too (when the run keeps no incremental chain in it).
    type: bool
    default: false
  pg_staging_dir:
    description:
      - The pg staging dir, as a host path. Required with O(remove_pg_staging).
    type: path
  engine:
    description:
      - What O(pg_staging_dir) holds, so it is removed with that engine's safety.
    type: str
    choices: [pg_probackup, pg_basebackup]
    default: pg_probackup
  lock_timeout:
    description:
      - With O(engine=pg_probackup), seconds to wait for the catalog's lock when another run of pg_probackup holds
        it. V(0) fails that part at once.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    details: Nothing is removed and the lock is not released; the counts say what would be removed.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The module runs on the host; it does not enter the Alation shell.
seealso:
  - module: alation.backup.staging_dir
  - module: alation.backup.backup_lock
'''

EXAMPLES = r'''
- name: Cleanup | Empty the staging dir, remove the pg staging dir, release the host lock
  alation.backup.cleanup:
    staging_dir: /opt/alation/alation/data2/tmp
    owner: alation
    chroot: /opt/alation/alation
    remove_pg_staging: true
    pg_staging_dir: /opt/alation/alation/data2/backup/pgbackup
    engine: pg_probackup
    lease: "{{ backup_lock.lease }}"
'''

RETURN = r'''
staging:
  description: What emptying the staging dir removed (in check mode, would remove), and whether it changed it.
  returned: always
  type: dict
  sample: {changed: true, removed_files: 1234, removed_dirs: 56, removed_bytes: 1073741824, skipped_mounts: []}
pg_staging:
  description:
    - What removing the pg staging dir did; empty without O(remove_pg_staging) or when that part failed.
    - C(changed), and with O(engine=pg_basebackup) the counts of RV(staging).
  returned: always
  type: dict
  sample: {changed: true}
released:
  description: Whether the host lock was released (false in check mode, without O(lease), or when it was no longer this run's).
  returned: always
  type: bool
failed_parts:
  description: The parts that failed, among C(staging), C(pg_staging) and C(lease); empty on success.
  returned: always
  type: list
  elements: str
duration_s:
  description: Seconds emptying the staging dir and removing the pg staging dir took.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _cleanup, _locks
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, shell_argument_spec
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            staging_dir=dict(type='path', required=True),
            mode=dict(type='str', default='0700'),
            owner=dict(type='str'),
            group=dict(type='str'),
            allowed_roots=dict(type='list', elements='path', default=[]),
            remove_pg_staging=dict(type='bool', default=False),
            pg_staging_dir=dict(type='path'),
            engine=dict(type='str', choices=list(_cleanup.ENGINES), default='pg_probackup'),
            lock_timeout=dict(type='int', default=0),
            **dict(_locks.lease_argument_spec(), **shell_argument_spec())
        ),
        required_if=[('remove_pg_staging', True, ['pg_staging_dir'])],
        supports_check_mode=True,
    )
    p = dict(module.params)
    beat = _locks.heartbeat(module)
    problem = None
    try:
        p['mode'] = int(p['mode'], 8)
        if not 0 <= p['mode'] <= 0o7777:
            raise ValueError
    except ValueError:
        problem = "mode=%s must be an octal mode such as '0700'" % module.params['mode']
    uid = gid = None
    if problem is None:
        try:
            uid, gid = Accounts(p['chroot']).owner_ids(p['owner'], p['group'])
        except ValueError as e:
            problem = str(e)
    if problem is not None:
        # Bad input touches no dir, but the lock still goes: a run that ends here must not hold the host.
        beat.stop()
        lease = _locks.lease_of(p)
        released = bool(lease) and not module.check_mode and _locks.release_lease(lease['path'], lease['token'])
        module.fail_json(msg='cleanup failed: %s%s' % (problem, '; the host lock was released' if released else ''),
                         staging={}, pg_staging={}, released=released, failed_parts=['staging'], duration_s=0.0)
    result, failed = _cleanup.run(p, Runner(module), uid, gid, module.check_mode, beat, module.warn)
    if failed:
        module.fail_json(msg=failed, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
