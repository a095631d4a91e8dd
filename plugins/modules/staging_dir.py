#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: staging_dir
short_description: Make a backup staging dir exist and be empty (the staging clear of Alation's backup)
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Makes the staging dir (or the pg staging dir) of an Alation backup exist and be in the wanted state.
    Alation's Backup V1 empties the staging dir before a backup and again after the archive is written.
  - Deletion never follows a symlink (a link inside is removed, its target is left alone) and works through
    directory file descriptors, so a directory swapped for a symlink during the run cannot redirect it.
  - Deletion stays on the staging dir's filesystem, like C(rm -r --one-file-system). A mount point inside
    (another filesystem or a bind mount) is left alone, reported in RV(skipped_mounts) and warned about; the
    directories above it stay.
  - The path is checked before anything is done; the module fails, touching nothing, when O(path) is relative,
    has a C(..) component, is C(/), has fewer than two components (C(/data2)), is a system directory
    (C(/etc), C(/usr), C(/var), C(/home), C(/tmp), C(/opt/alation), C(/opt/alation/alation), ...) or directly inside one
    (C(/etc/foo), C(/tmp/x)), also with the symlinks above it resolved. The same rules apply inside the Alation shell
    (C(/opt/alation/alation/data2) and C(/opt/alation/alation/etc/foo) are refused; C(/opt/alation/alation/data2/tmp) is fine),
    and inside the shell at O(chroot) when that is another.
  - It also fails when O(path) is a symlink or exists and is not a directory.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.shell
  - alation.backup.lease
options:
  path:
    description:
      - The staging dir, as a host path (for the Alation shell, prefix C(/opt/alation/alation)).
    type: path
    required: true
  state:
    description:
      - V(empty) makes the directory exist with nothing in it.
      - V(present) makes the directory exist and leaves its contents alone.
      - V(absent) removes the directory with everything in it.
    type: str
    choices: [empty, present, absent]
    default: empty
  mode:
    description:
      - Permissions of the staging dir, as for M(ansible.builtin.file) (a quoted octal string such as V('0700'), or symbolic such as V(u=rwx,g=rx)).
      - Missing parent directories are made with the default mode of C(mkdir -p) (0777 less the umask).
    type: raw
    default: '0700'
  owner:
    description:
      - User (name or numeric uid) that should own the staging dir. Omit to leave it as it is (a new dir belongs to the connecting user).
    type: str
  group:
    description:
      - Group (name or numeric gid) that should own the staging dir. Omit for O(owner)'s primary group, or, without
        O(owner), to leave it as it is.
    type: str
  allowed_roots:
    description:
      - Directories below which O(path) is accepted even when it is directly inside a system directory (for example
        a temporary directory under C(/tmp)).
      - Each must be absolute and not C(/). An allowed root itself is never cleared; O(path) must be strictly below it.
      - C(/), system directories themselves, relative paths and C(..) are refused whatever this says.
    type: list
    elements: path
    default: []
  extra_paths:
    description:
      - With O(state=empty), after emptying, copy each of these site files or dirs into the staging dir, at
        C(<path>/extra_paths<dirname of shell_path>/<name>) (its own path in the Alation shell kept below
        C(extra_paths/), so two files of one name do not collide), modes and times kept.
      - Each is a dict with C(host_path) (where this module reads it) and C(shell_path) (its path in the Alation
        shell), as RV(alation.backup.alation_info#module:extra_paths) returns them (other keys are ignored).
      - A path that is a symlink is followed; symlinks inside a dir are copied as symlinks, never followed.
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    support: full
    details: Nothing is touched; the counts are what would be removed, and C(changed) says whether anything would change.
  diff_mode:
    support: full
    details: The diff lists the staging dir's top-level entries before and after (at most 100 each), and its mode, owner and group.
  platform:
    platforms: posix
notes:
  - The module runs on the host; it does not enter the Alation shell.
seealso:
  - module: ansible.builtin.file
'''

EXAMPLES = r'''
- name: Clear the staging dir before the backup (staging clear), owned by the Alation shell's user
  alation.backup.staging_dir:
    path: /opt/alation/alation/data2/tmp
    owner: alationadmin
    chroot: /opt/alation/alation
    mode: '0700'

- name: Remove the pg staging dir after a full backup
  alation.backup.staging_dir:
    path: /opt/alation/alation/data2/backup/pgbackup
    state: absent

- name: Keep the pg staging dir for the next incremental backup, just make sure it exists
  alation.backup.staging_dir:
    path: /opt/alation/alation/data2/backup/pgbackup
    state: present

- name: A staging dir directly inside a system dir is refused unless a dir above it is allowed
  alation.backup.staging_dir:
    path: /srv/alation_staging
    allowed_roots:
      - /srv
'''

RETURN = r'''
path:
  description: The staging dir, normalized.
  returned: always
  type: str
  sample: /opt/alation/alation/data2/tmp
state:
  description:
    - What O(path) is after the run, V(directory) or V(absent) (in check mode, what it is now).
    - Ansible adds this, with C(mode), C(owner), C(group), C(uid), C(gid) and C(size), to every result that has a RV(path).
  returned: always
  type: str
  sample: directory
removed_files:
  description: Files, symlinks and other non-directories removed (in check mode, that would be removed).
  returned: always
  type: int
  sample: 1234
removed_dirs:
  description: Directories removed, the staging dir itself included with O(state=absent) (in check mode, that would be removed).
  returned: always
  type: int
  sample: 56
removed_bytes:
  description: Total size of the regular files removed (in check mode, that would be removed).
  returned: always
  type: int
  sample: 1073741824
skipped_mounts:
  description:
    - Mount points inside the staging dir that were left alone with their contents.
    - With O(state=absent), also the staging dir itself when it is a mount point (its contents are removed, the dir stays).
  returned: always
  type: list
  elements: str
  sample: [/opt/alation/alation/data2/tmp/nfs]
duration_s:
  description: Seconds the module took on the host.
  returned: success
  type: float
failed_path:
  description: The path where removal stopped, when it failed part way (the counts then say what was already removed).
  returned: failure during removal
  type: str
extra_paths_staged:
  description: Each of O(extra_paths) as copied (in check mode, as it would be), with where it went (C(dest)) and its C(files) and C(bytes).
  returned: success with O(extra_paths)
  type: list
  elements: dict
  sample:
    - host_path: /opt/alation/alation/etc/site.conf
      shell_path: /etc/site.conf
      dest: /opt/alation/alation/data2/tmp/extra_paths/etc/site.conf
      files: 1
      bytes: 812
'''

import os
import shutil
import stat
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _staging
from ansible_collections.alation.backup.plugins.module_utils._runner import shell_argument_spec
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts


def describe(path):
    """The staging dir's state, mode, owner and group, in the shapes set_*_if_different put into a diff."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return dict(path=path, state='absent')
    return dict(path=path, state='directory', mode='0%03o' % stat.S_IMODE(st.st_mode), owner=st.st_uid, group=st.st_gid)


def wanted_mode(mode):
    """How a mode not applied yet (check mode, dir not made) shows in the diff."""
    if isinstance(mode, int):
        return '0%03o' % mode
    return str(mode)


def create(module, path):
    try:
        # Parents as `mkdir -p` makes them; the dir itself private until its mode is set.
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkdir(path, 0o700)
    except OSError as e:
        module.fail_json(path=path, msg="could not create staging dir '%s': %s. Check that its parent is a writable "
                                        "directory." % (path, e.strerror or e))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            state=dict(type='str', choices=['empty', 'present', 'absent'], default='empty'),
            mode=dict(type='raw', default='0700'),
            owner=dict(type='str'),
            group=dict(type='str'),
            allowed_roots=dict(type='list', elements='path', default=[]),
            extra_paths=dict(type='list', elements='dict', default=[]),
            **dict(shell_argument_spec(), **_locks.lease_argument_spec())
        ),
        supports_check_mode=True,
    )
    started = time.monotonic()
    p = module.params
    state = p['state']
    if p['extra_paths'] and state != 'empty':
        module.fail_json(msg='extra_paths are copied into an emptied staging dir: give state=empty (state is %s)' % state,
                         path=p['path'])
    reason = _staging.refusal(p['path'], p['allowed_roots'], p['chroot'])
    if reason:
        module.fail_json(msg=reason, path=p['path'])
    path = os.path.normpath(p['path'])
    try:
        uid, gid = Accounts(p['chroot']).owner_ids(p['owner'], p['group'])
        uid, gid = (None if uid == -1 else uid), (None if gid == -1 else gid)
    except ValueError as e:
        module.fail_json(msg=str(e), path=path)

    lease = _locks.leased(module, 'emptying the staging dir %s (any further)' % path)
    before = describe(path)
    exists = before['state'] == 'directory'
    result = dict(path=path, state=state, removed_files=0, removed_dirs=0, removed_bytes=0, skipped_mounts=[])
    changed = False
    tree = None

    if exists and state in ('empty', 'absent'):
        mounts = _staging.mount_points_below(_staging.resolved_path(path))
        with lease:
            try:
                tree = _staging.clear_tree(path, remove_self=state == 'absent', dry_run=module.check_mode,
                                           mount_points=mounts, check=lease.check)
            except _locks.LeaseLost as e:
                lease.result.update(path=path, state=state, changed=bool(e.result.files or e.result.dirs),
                                    **e.result.as_dict())
                raise
            except _staging.RemovalError as e:
                counts = e.result.as_dict()
                module.fail_json(msg='%s. Fix the cause (permissions, immutable attribute, a busy mount) and run again.' % e,
                                 path=path, state=state, failed_path=e.path,
                                 changed=bool(e.result.files or e.result.dirs), **counts)
        result.update(tree.as_dict())
        changed = bool(tree.files or tree.dirs)
        for mount in tree.skipped_mounts:
            module.warn("left the mount point '%s' alone (another filesystem or a bind mount); the directories above "
                        "it were kept" % mount)

    attr_diff = dict(before={}, after={})
    if state != 'absent':
        if not exists:
            changed = True
            if not module.check_mode:
                create(module, path)
        if exists or not module.check_mode:
            changed = module.set_mode_if_different(path, p['mode'], changed, attr_diff)
            changed = module.set_owner_if_different(path, uid, changed, attr_diff)
            changed = module.set_group_if_different(path, gid, changed, attr_diff)

    if p['extra_paths']:
        try:
            result['extra_paths_staged'] = _staging.stage_extra_paths(path, p['extra_paths'], dry_run=module.check_mode)
        except (ValueError, OSError, shutil.Error) as e:
            lease.fail_json('copying the extra paths into the staging dir %s: %s' % (path, e), changed=True, **result)
        changed = True
    if module._diff:
        result['diff'] = diff_of(module, path, state, before, tree, attr_diff, uid, gid)
    lease.exit_json(changed=changed, duration_s=round(time.monotonic() - started, 3), **result)


def diff_of(module, path, state, before, tree, attr_diff, uid, gid):
    """Before/after of the staging dir: state, mode, owner, group and its top-level entries."""
    before = dict(before)
    if tree is not None:
        before['entries'] = _staging.cut(sorted(tree.top_removed + tree.top_kept))
    if not module.check_mode:
        after = describe(path)
    elif before['state'] == 'absent' and state != 'absent':
        after = dict(path=path, state='directory', mode=wanted_mode(module.params['mode']))
        after.update((k, v) for k, v in (('owner', uid), ('group', gid)) if v is not None)
    elif state == 'absent' and tree is not None and tree.removed_self:
        after = dict(path=path, state='absent')
    else:
        after = {k: v for k, v in before.items() if k != 'entries'}
        after.update(attr_diff['after'])
    if tree is not None and after['state'] == 'directory':
        after['entries'] = _staging.cut(sorted(tree.top_kept))
    return dict(before=before, after=after)


if __name__ == '__main__':
    main()
