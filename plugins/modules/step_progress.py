#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: step_progress
short_description: Measure on the host how far a long step of the backup has come
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Called by M(alation.backup.wait_progress) at each poll while a step runs in the background; rarely used alone.
  - With O(watch), the file bytes under those paths (like C(du -s --apparent-size)), for a step that writes there,
    such as the database step into the pg staging dir.
  - With O(archive_dest) and O(archive_sources), the source bytes the archive writer of this host has read so far
    (the bytes of the files it has done, in the order it reads them, plus its offset in the file it has open, from
    C(/proc)), and the source bytes in all.
  - With O(estimate_paths), the file bytes under those paths too, as the step's estimate.
  - With O(job_id), the background job's status as C(async_status) reads it, in the same call (one remote call a poll);
    a finished job's status file is removed once read.
  - With O(controller_mark), the poll leaves its mark, so the step's module sees the controller is still there.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.attributes.read_only
options:
  watch:
    description: Host paths whose file bytes are measured.
    type: list
    elements: path
    default: []
  archive_dest:
    description: The dir where M(alation.backup.archive) writes its temporary file C(.<name>.<host>.<pid>.tmp).
    type: path
  archive_sources:
    description: The archive's source paths on the host, in the order of its O(alation.backup.archive#module:sources).
    type: list
    elements: path
    default: []
  estimate_paths:
    description: Host paths whose file bytes are the estimate (for example PGDATA for the database step).
    type: list
    elements: path
    default: []
  job_id:
    description: The background job (its C(ansible_job_id)) whose status file to read.
    type: str
  async_dir:
    description: The dir of the background jobs' status files (the controller's C(async_dir), expanded).
    type: path
    default: ~/.ansible_async
  controller_mark:
    description:
      - The poll mark of the step (its module's O(alation.backup.pg_basebackup#module:controller_mark)), rewritten by
        this call when it exists.
    type: path
'''

EXAMPLES = r'''
- name: How far is the archive writer?
  alation.backup.step_progress:
    archive_dest: /opt/alation/alation/data2/backup
    archive_sources:
      - /opt/alation/alation/data2/tmp
      - /opt/alation/alation/data2/backup/pgbackup
'''

RETURN = r'''
bytes:
  description:
    - File bytes under O(watch); or, with O(archive_dest), source bytes the archive writer has read.
    - With O(archive_dest), null while no writer is found or it has no source file open (between two files).
  returned: always
  type: int
estimate_bytes:
  description: File bytes under O(estimate_paths), or with O(archive_dest) the archive's source bytes in all; 0 when neither.
  returned: always
  type: int
job:
  description:
    - V(missing) when the job has no status file, V(running) while the file is empty or partly written, else
      V(written).
  returned: with O(job_id)
  type: str
job_text:
  description: The job's status file as written (the module's JSON result once it finished), for the controller to parse.
  returned: with O(job_id), when V(written)
  type: str
writer_pid:
  description: The pid of the archive writer (named by its temporary file), null when none runs.
  returned: with O(archive_dest)
  type: int
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _progress, _watch


def main():
    module = AnsibleModule(
        argument_spec=dict(
            watch=dict(type='list', elements='path', default=[]),
            archive_dest=dict(type='path'),
            archive_sources=dict(type='list', elements='path', default=[]),
            estimate_paths=dict(type='list', elements='path', default=[]),
            job_id=dict(type='str'),
            async_dir=dict(type='path', default='~/.ansible_async'),
            controller_mark=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['controller_mark'] and os.path.exists(p['controller_mark']) and not module.check_mode:
        _watch.touch_mark(p['controller_mark'])
    result = dict(changed=False, bytes=_progress.watched_bytes(p['watch']),
                  estimate_bytes=_progress.watched_bytes(p['estimate_paths']))
    if p['archive_dest']:
        pid = _progress.archive_writer(p['archive_dest'])
        done, total = _progress.archive_read_bytes(p['archive_sources'], _progress.read_positions(pid) if pid else {})
        result.update(bytes=done, writer_pid=pid, estimate_bytes=result['estimate_bytes'] or total)
    if p['job_id']:
        result['job'], text = _progress.read_job(p['async_dir'], p['job_id'])
        if text is not None:
            result['job_text'] = text
    module.exit_json(**result)


if __name__ == '__main__':
    main()
