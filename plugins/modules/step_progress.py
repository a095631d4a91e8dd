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
  - Called by M(alation.backup.wait_progress) for each look at a step that runs in the background; rarely used alone.
  - With O(job_id) and O(wait), the look waits on the host for the job to finish (a long poll), looking at the job's
    status file every 0.2 seconds (a C(stat); the file is read again only when it changed) and returns as soon as the
    job has written its result, else after O(wait) seconds. So a finished step is seen within a fraction of a second
    with one remote call a look, however long the look.
  - With O(watch), the file bytes under those paths (like C(du -s --apparent-size)), for a step that writes there,
    such as the database step into the pg staging dir.
  - With O(storage_dir) and O(archive_sources), the source bytes the archive writer of this host has read so far
    (the bytes of the files it has done, in the order it reads them, plus its offset in the file it has open, from
    C(/proc)), and the source bytes in all.
  - With O(estimate_paths), the file bytes under those paths too, as the step's estimate.
  - With O(job_id), the background job's status as C(async_status) reads it, in the same call (one remote call a look);
    a finished job's status file is removed once read.
  - The bytes are measured when O(measure) says, once for each of V(start) and V(end); the estimate once a look.
  - With O(controller_mark), the look leaves its mark when it starts and again when it returns (unless the job
    finished), so the step's module sees the controller is still there; during a look the mark is O(wait) seconds
    old at most. A look whose output nobody reads any more (the controller died and its connection closed the pipe)
    ends at once and leaves no mark.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.attributes.read_only
options:
  watch:
    description: Host paths whose file bytes are measured.
    type: list
    elements: path
    default: []
  storage_dir:
    description: The dir where M(alation.backup.archive) writes its temporary file C(.<name>.<host>.<pid>.tmp).
    type: path
    aliases: [archive_dest]
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
  wait:
    description:
      - With O(job_id), the seconds to wait at most for the job to finish; 0 looks once.
      - The connection carries nothing meanwhile, so keep it below what the connection tolerates in silence (a
        firewall's or NAT's idle timeout, a connection plugin's command timeout); M(alation.backup.wait_progress)
        keeps it to 30 seconds by default. Keep it below a third of the step's C(controller_timeout) too, or the step
        takes the silence for a controller gone.
    type: float
    default: 0
  measure:
    description:
      - When to measure the bytes (under O(watch), or of the archive writer). V(start) is before the wait (returned as
        RV(start_bytes)), V(end) after it (returned as RV(bytes); not when the job finished meanwhile).
    type: list
    elements: str
    choices: [start, end]
    default: [end]
'''

EXAMPLES = r'''
- name: How far is the archive writer?
  alation.backup.step_progress:
    storage_dir: /opt/alation/alation/data2/backup
    archive_sources:
      - /opt/alation/alation/data2/tmp
      - /opt/alation/alation/data2/backup/pgbackup

- name: Wait up to 30 s for a background job, then measure the pg staging dir
  alation.backup.step_progress:
    job_id: "{{ probackup_job.ansible_job_id }}"
    async_dir: /root/.ansible_async
    wait: 30
    watch: [/opt/alation/alation/data2/backup/pgbackup]
'''

RETURN = r'''
bytes:
  description:
    - File bytes under O(watch); or, with O(storage_dir), source bytes the archive writer has read; measured after the
      wait (V(end) in O(measure)).
    - With O(storage_dir), null while no writer is found or it has no source file open (between two files).
    - Null when not measured (no V(end) in O(measure), or the job finished during the wait).
  returned: always
  type: int
start_bytes:
  description: As RV(bytes), measured before the wait.
  returned: with V(start) in O(measure)
  type: int
estimate_bytes:
  description: File bytes under O(estimate_paths), or with O(storage_dir) the archive's source bytes in all; 0 when neither.
  returned: always
  type: int
job:
  description:
    - V(missing) when the job has no status file, V(running) while the file is empty or partly written, else
      V(written) (as it was when the look returned).
  returned: with O(job_id)
  type: str
job_text:
  description: The job's status file as written (the module's JSON result once it finished), for the controller to parse.
  returned: with O(job_id), when V(written)
  type: str
writer_pid:
  description: The pid of the archive writer (named by its temporary file), null when none runs.
  returned: with O(storage_dir)
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _progress


def main():
    module = AnsibleModule(
        argument_spec=dict(
            watch=dict(type='list', elements='path', default=[]),
            storage_dir=dict(type='path', aliases=['archive_dest']),
            archive_sources=dict(type='list', elements='path', default=[]),
            estimate_paths=dict(type='list', elements='path', default=[]),
            job_id=dict(type='str'),
            async_dir=dict(type='path', default='~/.ansible_async'),
            controller_mark=dict(type='path'),
            wait=dict(type='float', default=0),
            measure=dict(type='list', elements='str', choices=['start', 'end'], default=['end']),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**_progress.look(module.params, module.check_mode))


if __name__ == '__main__':
    main()
