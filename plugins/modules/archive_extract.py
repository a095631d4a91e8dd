#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: archive_extract
short_description: Unpack an Alation backup archive, or some of its sources, and check what came out against its manifest
version_added: 0.1.0
author: alation.backup maintainers (@alation-backup)
description:
  - Unpacks an archive written by M(alation.backup.archive) with GNU C(tar) (C(pigz) decompresses when present,
    else C(gzip)). Owners (by name), modes and times are kept as recorded when the module runs as root.
  - Checks the free space first, from the sizes the manifest records.
  - After unpacking, counts what came out (entries, files, directories, symlinks, hard links, bytes; never
    following links) and compares each source with the manifest's record. Any difference fails the task.
  - O(dest) must be empty or absent. With O(force) a non-empty O(dest) is renamed to
    C(<dest>.before-restore-<UTC time>) first, never deleted.
  - With O(strip), the one source named in O(members) becomes O(dest) itself (the staging files of C(tmp/)
    land directly in O(dest), which takes the mode and owner recorded for C(tmp)). It is unpacked into a hidden
    directory beside O(dest) and renamed into place when complete and checked, so O(dest) never holds half a
    restore.
extends_documentation_fragment:
  - alation.backup.attributes
options:
  path:
    description: The archive, as a host path.
    type: path
    required: true
  dest:
    description: Where to unpack, as a host path.
    type: path
    required: true
  members:
    description:
      - The sources to unpack, by their top-level name in the archive (C(tmp) for the staging dir, C(pgbackup)
        for the pg staging dir). Empty unpacks everything, the manifest included.
    type: list
    elements: str
    default: []
  strip:
    description: Make the one source in O(members) O(dest) itself, rather than a directory inside it.
    type: bool
    default: false
  force:
    description: Move a non-empty O(dest) aside (rename) rather than fail.
    type: bool
    default: false
  space_check:
    description: Fail before unpacking when the filesystem of O(dest) has less free space than needed.
    type: bool
    default: true
  extra_space:
    description: Bytes needed on the filesystem of O(dest) beyond the unpacked data (the restore drill adds the data directory it rebuilds there).
    type: int
    default: 0
  mode:
    description: Mode of O(dest) when the module makes it (not with O(strip)).
    type: raw
    default: '0700'
  owner:
    description: Owner of O(dest) when the module makes it (not with O(strip)). Default the user running the module.
    type: str
attributes:
  check_mode:
    support: full
    details: Checks the space and says what would be unpacked where, and what would be moved aside; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Unpack the whole archive into the scratch dir
  alation.backup.archive_extract:
    path: /opt/alation/alation/data2/backup/202405011230_5-17-0-116556_alation_backup.tar.gz
    dest: /opt/alation/alation/data2/restore_drill/extracted
    owner: alation

- name: Put the staging files back where they are wanted
  alation.backup.archive_extract:
    path: /opt/alation/alation/data2/backup/202405011230_5-17-0-116556_alation_backup.tar.gz
    dest: /opt/alation/alation/data2/restored_files
    members: [tmp]
    strip: true
'''

RETURN = r'''
dest:
  description: Where the archive was (or would be) unpacked.
  returned: always
  type: str
sources:
  description: Each source unpacked, with the counts recorded in the manifest (and, after unpacking, found on disk).
  returned: success
  type: list
  elements: dict
bytes:
  description: File bytes unpacked (in check mode, that would be).
  returned: success
  type: int
space_needed:
  description: Bytes the unpacking needs on the filesystem of O(dest) (with O(extra_space)).
  returned: success
  type: int
moved_aside:
  description: Where a non-empty O(dest) was moved (or would be), or null.
  returned: success
  type: str
duration_s:
  description: Seconds the unpacking took.
  returned: success, not in check mode
  type: float
decompressor:
  description: The program that decompressed (pigz or gzip).
  returned: success
  type: str
executed_commands:
  description: The command lines run.
  returned: always
  type: list
  elements: str
'''

import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._restore import (
    RestoreError,
    check_space,
    count_mismatches,
    members_to_extract,
    prepare_target,
    read_head,
    scan_extracted,
    space_needed,
    user_ids,
)
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner
from ansible_collections.alation.backup.plugins.module_utils._staging import RemovalError, clear_tree


def decompressor():
    return 'pigz' if shutil.which('pigz') else 'gzip'


def remove_quietly(module, path):
    """Remove a directory this run made (links inside removed, never followed)."""
    if os.path.lexists(path):
        try:
            clear_tree(path, remove_self=True)
        except RemovalError as e:
            module.warn('could not remove %s: %s' % (path, e))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            dest=dict(type='path', required=True),
            members=dict(type='list', elements='str', default=[]),
            strip=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
            space_check=dict(type='bool', default=True),
            extra_space=dict(type='int', default=0),
            mode=dict(type='raw', default='0700'),
            owner=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    runner = Runner(module)
    dest = os.path.normpath(p['dest'])
    result = dict(changed=False, dest=dest, executed_commands=runner.executed_commands)
    if p['strip'] and len(p['members']) != 1:
        module.fail_json(msg='strip needs exactly one source in members (got %s): name the one source that becomes dest'
                             % (p['members'] or 'none'), **result)
    work = None
    try:
        manifest, dummy = read_head(p['path'], count=0)
        sources = members_to_extract(manifest, p['members'])
        needed = space_needed(sources, p['extra_space'])
        result.update(sources=[dict(s) for s in sources], bytes=sum(int(s.get('bytes', 0)) for s in sources),
                      space_needed=needed, decompressor=decompressor())
        if p['space_check']:
            check_space(dest, needed, 'unpacking %s' % os.path.basename(p['path']))
        result['moved_aside'] = prepare_target(dest, p['force'], 'dest', dry_run=module.check_mode)
        result['changed'] = True
        argv = ['tar', '--extract', '--file', p['path'], '--use-compress-program=%s' % result['decompressor']]
        if module.check_mode:
            result['executed_commands'] = [' '.join(argv + ['--directory', dest, '--'] + p['members'])
                                           + '  (check mode: not run)']
            module.exit_json(**result)

        if p['strip']:
            # Unpacked beside dest and renamed into place when complete.
            parent, name = os.path.split(dest)
            os.makedirs(parent, exist_ok=True)
            work = os.path.join(parent, '.%s.extract-%d' % (name, os.getpid()))
            remove_quietly(module, work)
            os.mkdir(work, 0o700)
            target = work
        else:
            uid, gid = user_ids(p['owner'])
            os.makedirs(dest, exist_ok=True)
            os.chown(dest, uid, gid)
            module.set_mode_if_different(dest, p['mode'], False)
            target = dest
        started = time.monotonic()
        run = runner.run(argv + ['--directory', target, '--'] + p['members'])
        result['duration_s'] = round(time.monotonic() - started, 2)
        if run['rc'] != 0:
            raise RestoreError('tar failed to unpack %s (exit %d): %s' % (
                p['path'], run['rc'], ' '.join(run['stderr'].strip().splitlines()[-3:])))
        problems = []
        for src in result['sources']:
            found = scan_extracted(os.path.join(target, src['arcname']), src['arcname'])
            src['found'] = dict((k, found[k]) for k in ('entries', 'files', 'dirs', 'symlinks', 'hardlinks', 'bytes'))
            problems += count_mismatches(src, found)
        if problems:
            raise RestoreError('what was unpacked from %s does not match its manifest: %s'
                               % (p['path'], '; '.join(problems)))
        if p['strip']:
            if os.path.isdir(dest) and not os.path.islink(dest):
                os.rmdir(dest)  # empty: prepare_target refused or moved a non-empty one
            os.rename(os.path.join(work, p['members'][0]), dest)
        if result['duration_s']:
            result['throughput_mb_s'] = round(result['bytes'] / 1e6 / result['duration_s'], 1)
    except RestoreError as e:
        module.fail_json(msg=str(e), **result)
    except OSError as e:
        module.fail_json(msg='unpacking into %s failed: %s' % (dest, e), **result)
    finally:
        if work:
            remove_quietly(module, work)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
