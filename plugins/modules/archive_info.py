#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: archive_info
short_description: Find an Alation backup archive, read its manifest and check its sha256 (read-only)
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Finds the newest archive in the backup storage dir (O(storage_dir)), or takes the one named by O(path), and reads
    its manifest, the first member of every archive the M(alation.backup.archive) module writes. Only the
    start of the archive is read for that.
  - With O(checksum=true) it also reads the whole archive, computes its SHA-256 and compares it with the
    C(<archive>.sha256) file beside it. A mismatch or a missing C(.sha256) fails the task, saying so.
  - Newest means the latest C(<YYYYMMDDHHMM>) in the name; among equal names' times, the latest modified.
    Hidden temporary files of an archive being written are never taken.
  - An encrypted archive needs O(decrypt_key) to read its manifest only; O(checksum) and O(newest_good) read no content.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.attributes.read_only
  - alation.backup.decrypt
options:
  path:
    description: The archive, as a host path.
    type: path
  storage_dir:
    description: The backup storage dir (a host path); its newest archive is taken.
    type: path
    aliases: [dir]
  suffix:
    description: The last part of the archive names to look for in O(storage_dir).
    type: str
    default: alation_backup
  checksum:
    description: Compute the archive's SHA-256 and compare it with its C(.sha256) file.
    type: bool
    default: false
  manifest:
    description:
      - Read the manifest. A file whose first member is not the manifest fails the task (it is not an archive of
        this collection). Read after the checksum, so a damaged archive is reported as damaged.
      - An encrypted archive (C(.tar.gz.gpg)) is decrypted as far as its manifest, with O(decrypt_key); without it
        the task fails, saying so.
    type: bool
    default: true
  newest_good:
    description:
      - With O(storage_dir), take the newest archive that its C(.sha256) vouches for - a line for it, and the size recorded at
        publish equal to the file's (with O(checksum), its hash too) - instead of the newest name. A lone C(.sha256), a
        temporary file, a damaged archive or one named more than an hour ahead of this host's clock (a clock that
        ran ahead) never counts; each is listed in RV(ignored), those named in the future in RV(future_archives) too.
      - Finding none is then no failure, RV(path) is null. Nothing is read beyond the C(.sha256) files unless
        O(checksum); O(manifest) is not read.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: The newest archive and its manifest
  alation.backup.archive_info:
    storage_dir: /opt/alation/alation/data2/backup
  register: newest

- name: The newest archive its .sha256 vouches for (the backup role's freshness guard)
  alation.backup.archive_info:
    storage_dir: /opt/alation/alation/data2/backup
    newest_good: true
  register: fresh

- name: Check its sha256
  alation.backup.archive_info:
    path: "{{ newest.path }}"
    checksum: true
'''

RETURN = r'''
ignored:
  description: With O(newest_good), what was passed over and why (C(path), C(why)).
  returned: O(newest_good)
  type: list
  elements: dict
future_archives:
  description: With O(newest_good), the archives named more than an hour ahead of this host's clock, never the newest.
  returned: O(newest_good)
  type: list
  elements: str
age_s:
  description: With O(newest_good), seconds since the archive was written (null when none was found).
  returned: O(newest_good)
  type: float
path:
  description: The archive (with O(newest_good), null when none counts).
  returned: success
  type: str
  sample: /opt/alation/alation/data2/backup/202405011230_5-17-0-116556_alation_backup.tar.gz
size:
  description: Its size in bytes.
  returned: success
  type: int
manifest:
  description: The archive's manifest (format version, sources with their counts and bytes, engine, backup id, databases, ...).
  returned: success with O(manifest=true)
  type: dict
archives:
  description: How many archives O(storage_dir) holds.
  returned: with O(storage_dir)
  type: int
encrypted:
  description: Whether the archive is encrypted (C(.tar.gz.gpg)); its manifest is then read only with O(decrypt_key).
  returned: success, without O(newest_good)
  type: bool
sha256_path:
  description: The C(.sha256) file beside the archive.
  returned: success
  type: str
sha256:
  description: The SHA-256 computed from the archive.
  returned: with O(checksum=true)
  type: str
sha256_recorded:
  description: The SHA-256 its C(.sha256) file records.
  returned: with O(checksum=true)
  type: str
duration_s:
  description: Seconds the checksum took.
  returned: with O(checksum=true)
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._archive_names import DEFAULT_SUFFIX
from ansible_collections.alation.backup.plugins.module_utils._archive_read import ArchiveInfo, decrypt_argument_spec
from ansible_collections.alation.backup.plugins.module_utils._host import HostError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path'),
            storage_dir=dict(type='path', aliases=['dir']),
            suffix=dict(type='str', default=DEFAULT_SUFFIX),
            checksum=dict(type='bool', default=False),
            manifest=dict(type='bool', default=True),
            newest_good=dict(type='bool', default=False),
            **decrypt_argument_spec()
        ),
        required_one_of=[('path', 'storage_dir')],
        mutually_exclusive=[('path', 'storage_dir')],
        supports_check_mode=True,
    )
    info = ArchiveInfo(module.params)
    try:
        result = info.run()
    except HostError as e:
        module.fail_json(msg=str(e), **info.result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
