#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: archive_extract
short_description: Unpack an Alation backup archive, or some of its sources, and check what came out against its manifest
version_added: 0.2.0
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
  - An encrypted archive (C(.tar.gz.gpg)) needs O(decrypt_key) to read its manifest and to unpack; it is decrypted
    while it is unpacked (C(gpg --decrypt | tar)), and no plaintext copy is written.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.shell
  - alation.backup.decrypt
  - alation.backup.lease
  - alation.backup.controller
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
    description:
      - Owner of O(dest) when the module makes it (not with O(strip)), an account of the Alation shell with O(chroot).
        Default the user running the module.
      - With O(chroot) (the shell the archive came from) the files get the archive's numeric ids (the shell's), not
        those the host gives the names.
    type: str
  decrypt_key_file:
    description:
      - A 0600 file on a tmpfs holding O(decrypt_key), written by M(alation.backup.secret_file) right before this task;
        read and removed as the module starts. For a module run with C(async), whose arguments would otherwise sit in
        its payload on disk for the whole step.
    type: path
  decrypt_passphrase_file:
    description: The same for O(decrypt_passphrase).
    type: path
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
space_free:
  description:
    - Bytes free on the filesystem of O(dest) (its nearest existing parent) with O(space_check), also when the module
      failed for want of space (then less than RV(space_needed)).
  returned: with O(space_check), once the manifest was read
  type: int
moved_aside:
  description: Where a non-empty O(dest) was moved (or would be), or null.
  returned: success
  type: str
duration_s:
  description: Seconds the unpacking took.
  returned: success, not in check mode
  type: float
encrypted:
  description: Whether the archive is encrypted (C(.tar.gz.gpg)), so decrypted while it was unpacked.
  returned: always
  type: bool
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _watch
from ansible_collections.alation.backup.plugins.module_utils._secret_file import (
    secret_file_argument_spec, take_secret_options)
from ansible_collections.alation.backup.plugins.module_utils._archive_read import Extract, decrypt_argument_spec
from ansible_collections.alation.backup.plugins.module_utils._host import HostError
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, shell_argument_spec


def shared_options():
    """The options archive_extract shares with other modules: the shell, the lease, the watch, decrypting."""
    spec = shell_argument_spec()
    spec.update(_locks.lease_argument_spec())
    spec.update(_watch.watch_argument_spec())
    spec.update(decrypt_argument_spec())
    spec.update(secret_file_argument_spec('decrypt_key', 'decrypt_passphrase'))
    return spec


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
            **shared_options()
        ),
        supports_check_mode=True,
    )
    take_secret_options(module, 'decrypt_key', 'decrypt_passphrase')
    extract = Extract(module.params, Runner(module), check_mode=module.check_mode, warn=module.warn,
                      set_mode=lambda path: module.set_mode_if_different(path, module.params['mode'], False))
    lease = _locks.leased(module, 'unpacking further', _watch.guard(module, 'extract'))
    with lease:
        try:
            result = extract.run()
        except HostError as e:
            lease.fail_json(str(e), **extract.result)
        except KeyboardInterrupt:
            lease.fail_json('interrupted', **extract.result)
    lease.exit_json(**result)


if __name__ == '__main__':
    main()
