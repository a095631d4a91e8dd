#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: secret_file
short_description: Hand a secret to a background step through a 0600 file on tmpfs
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - An async module's arguments sit in its payload under C(~/.ansible/tmp) for the whole step, and after a cancel.
    This short task writes the secret into a 0600 file in O(dir), a tmpfs, instead; the background module reads and
    removes it as it starts (for example O(alation.backup.pg_basebackup#module:password_file)).
  - The file is named C(.alation_backup.<host>.<scope>.<purpose>.<run key>.secret), the scope a digest of the
    O(lease) path (one backup storage dir), the run key a digest of its token. This host's secret files of other runs
    of the same lease (a run cancelled between this task and the step) are removed first; only one run holds a lease
    at a time, and the files of other storage dirs' runs are never touched.
  - Run it with C(no_log) and right before the background task.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.lease
options:
  content:
    description: The secret.
    type: str
    required: true
  purpose:
    description: What the secret is, one word in the file name (for example C(pg_password)).
    type: str
    required: true
  dir:
    description: A dir on a tmpfs; anything else is refused (a secret there would outlive the run on disk).
    type: path
    default: /dev/shm
attributes:
  check_mode:
    support: full
    details: Writes nothing; returns the path it would write.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Hand the database password to the database step
  alation.backup.secret_file:
    purpose: pg_password
    content: "{{ vault_alation_pg_password }}"
    lease: "{{ lease }}"
  no_log: true
  register: password_file
'''

RETURN = r'''
path:
  description: The secret file, for the background module's option.
  returned: always
  type: str
removed:
  description: Names of this host's secret files of other runs that were removed.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _secret_file
from ansible_collections.alation.backup.plugins.module_utils._host import HostError


def main():
    argument_spec = dict(
        content=dict(type='str', required=True, no_log=True),
        purpose=dict(type='str', required=True),
        dir=dict(type='path', default='/dev/shm'),
    )
    argument_spec.update(_locks.lease_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if not p['purpose'].replace('_', '').replace('-', '').isalnum():
        module.fail_json(msg='purpose %r must be one word (letters, digits, _ or -): it goes into a file name' % p['purpose'])
    token, lease_path = (p['lease'] or {}).get('token'), (p['lease'] or {}).get('path')
    if module.check_mode:
        path = os.path.join(p['dir'], _secret_file.secret_name(p['purpose'], _secret_file.run_key(token),
                                                               scope=_secret_file.scope_of(lease_path)))
        module.exit_json(changed=True, path=path, removed=[])
    try:
        path, removed = _secret_file.write_secret(p['dir'], p['purpose'], token, p['content'], lease_path=lease_path)
    except (HostError, OSError) as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=True, path=path, removed=removed)


if __name__ == '__main__':
    main()
