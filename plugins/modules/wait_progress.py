#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: wait_progress
short_description: Wait for a background step, printing its progress, and return its result
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - >-
      Waits for a task started with C(async) and C(poll: 0) (its registered result, O(job)) and returns the job's own
      result, so C(register) gets the module's result and the task fails as the module failed.
  - >-
      It looks at the job with one call on the host a look (M(alation.backup.step_progress)), and each look waits
      there for the job (a long poll) - it returns within 0.2 seconds of the job's end, or when the next progress line
      is due, or after O(look_max) seconds, or a third of O(controller_timeout), whichever comes first. So a step that
      ends before its first line costs one call (its end seen within 0.2 seconds), and a long one about one call every O(interval)
      seconds (a six-hour step with the defaults, 720 calls). Each look reads the job's status file as
      M(ansible.builtin.async_status) would (removing it once the job finished) and leaves the poll mark
      O(controller_mark) when it starts and when it ends. Three looks in a row that fail fail the task; the next
      comes 5 seconds after a failed one.
  - >-
      Every O(interval) seconds it prints one line at verbosity 0 with what the look measured on the host as it
      ended, for example C(alation-prod-1: archive 3.2 GiB of ~12.7 GiB (25%), 85.1 MiB/s, ~1m52s left). The
      controller's output shows it (AWX's job output too). The first look also measures before it waits, the
      baseline the line counts from.
  - A step shorter than O(interval) prints nothing.
  - When O(job) is not a running job but a module's own result (the task ran in the foreground, as in check mode,
    where ansible-core 2.16 refuses C(async)), it returns that result as it is.
  - This is an action plugin; it runs on the controller and reaches the host through the task's connection.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  become:
    support: full
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The background job ran in check mode itself; waiting for it changes nothing.
  connection:
    support: full
  delegation:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  job:
    description:
      - "The registered result of the task started with C(async) and C(poll: 0) (it holds C(ansible_job_id))."
    type: dict
    required: true
  label:
    description: The step's name in the progress lines (C(database), C(archive)).
    type: str
    required: true
  interval:
    description:
      - Seconds between two progress lines. A look at the job lasts until the next line at most, so a line is never
        late; looks are shorter only when O(look_max) or O(controller_timeout) say so.
    type: int
    default: 30
  look_max:
    description:
      - Seconds one look may wait on the host at most. The connection carries nothing meanwhile, so keep it below the
        silence it tolerates (the idle timeout of a firewall or NAT on the SSH path, a connection plugin's command
        timeout). SSH keepalives (C(ServerAliveInterval)) keep a silent session open, they do not end it.
      - Set it for all the collection's waits with C(module_defaults) (the role does not pass it).
    type: int
    default: 30
  timeout:
    description:
      - Seconds to wait at most, 0 for no limit. Give at least the task's C(async) value, after which the job is
        stopped by Ansible's async wrapper and reports its own failure.
    type: int
    default: 0
  watch:
    description: Host paths whose growth since the first look is the step's progress (the pg staging dir).
    type: list
    elements: path
    default: []
  controller_mark:
    description:
      - The step's poll mark (the module's C(controller_mark)). Each look rewrites it when it starts and when it ends,
        so the step on the host knows its controller is still there. When the controller dies during a look, the look
        ends at once without leaving the mark if the connection closes its output (seen with the local connection);
        else it leaves it once more at its end, and the step stops itself O(controller_timeout) seconds after that.
    type: path
  controller_timeout:
    description:
      - The step's C(controller_timeout). A look waits a third of it at most, so the step never sees its mark
        silent that long while the controller is there; 0 when the step has none.
    type: int
    default: 0
  storage_dir:
    description:
      - For the archive step, the dir it writes to; progress is then the source bytes the archive writer has read.
        See M(alation.backup.step_progress).
    type: path
    aliases: [archive_dest]
  archive_sources:
    description: The archive's source paths on the host, in order.
    type: list
    elements: path
    default: []
  estimate:
    description: The bytes the step is expected to reach, 0 when unknown (then measured under O(estimate_paths), if given).
    type: int
    default: 0
  estimate_paths:
    description: Host paths whose file bytes are the estimate, measured once, when O(estimate) is 0.
    type: list
    elements: path
    default: []
seealso:
  - module: alation.backup.step_progress
  - module: ansible.builtin.async_status
'''

EXAMPLES = r'''
- name: Archive | Pack both staging dirs (in the background)
  alation.backup.archive:
    sources:
      - {path: /opt/alation/alation/data2/tmp, arcname: tmp}
      - {path: /opt/alation/alation/data2/backup/pgbackup, arcname: pgbackup}
    dest: /opt/alation/alation/data2/backup
    version_tag: 5-17-0-116556
  async: 86400
  poll: 0
  register: archive_job

- name: Archive | Wait for it, a progress line every 30 s
  alation.backup.wait_progress:
    job: "{{ archive_job }}"
    label: archive
    storage_dir: /opt/alation/alation/data2/backup
    archive_sources:
      - /opt/alation/alation/data2/tmp
      - /opt/alation/alation/data2/backup/pgbackup
  register: archive
'''

RETURN = r'''
ansible_job_id:
  description: The job waited for. Every other key is the job's module's own result.
  returned: always
  type: str
progress:
  description:
    - The last progress measured, C(bytes) (done since the first look) and C(estimate_bytes), and C(polls), the
      looks at the job (calls on the host).
  returned: always
  type: dict
'''
