#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: run_summary
short_description: Gather every host's record of a run, publish them as AWX job stats, write them as JSON
version_added: 0.3.0
author: alation.backup maintainers (@alation-backup)
description:
  - Runs once on the controller after every host's run (C(run_once)). For each host of O(hosts) it takes the host's
    record (the host var O(record_var)); a host with none gets one saying why (M(alation.backup.run_records) filter, which says
    C(unreachable) when its run had started, else C(not run)).
  - Publishes the records as AWX job stats under O(stats_key) (as M(ansible.builtin.set_stats) with C(aggregate)),
    returns them with one summary line a host, and writes them as JSON to O(report_path) on the controller (0600,
    replaced whole).
  - When the variable named by O(notify_url_var) holds a URL, POSTs the run's summary there once, as JSON (every
    host's record, the lines, and a C(text) field that Slack and Microsoft Teams incoming webhooks show as is), on a
    failed run only or always (O(notify_on)). A run failed when a host's record is C(failed), C(unreachable) or
    C(not run), or its off-host copy failed. A webhook that cannot be reached, answers other than 2xx (a redirect
    included) or not within O(notify_timeout) is a warning, never a failure; each record's C(notification) says
    what became of it. Check mode sends nothing.
  - The URL is a secret. It is read from the task's variables, never passed as an option, so it is in no
    invocation, result, warning, report or log.
  - This is an action plugin; it runs on the controller only.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The report on the controller is written in check mode too; the records say check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  hosts:
    description: The hosts of the run; default C(ansible_play_hosts_all).
    type: list
    elements: str
  record_var:
    description: The host var holding each host's record.
    type: str
    default: alation_backup_result
  started_var:
    description: The host var set when a host's run started (a host that started and has no record was lost).
    type: str
    default: __alation_backup_started
  stats_key:
    description: The key of the job stats.
    type: str
    default: alation_backup
  report_path:
    description:
      - A file on the controller to write the records to, as a JSON list. Its directory must exist and be writable.
      - A path that is a directory, or ends with C(/), is a directory of reports (it must exist and be writable);
        each run writes C(alation-backup-<UTC YYYYMMDDTHHMMSSZ>.json) there (C(-<n>) added when that second has one
        already; never replacing a file), 0600 and whole, and replaces the symlink C(latest.json) with one to it
        (left alone, with a warning, when C(latest.json) is not a symlink).
      - Omit for none.
    type: path
  report_keep:
    description:
      - With a directory of reports, the run reports kept there, this run's included (the oldest by name are
        removed). 0 keeps all. Only files named C(alation-backup-<stamp>.json) are removed, never a symlink.
    type: int
    default: 30
  notify_url_var:
    description:
      - The name of the variable holding the webhook's URL (templated, so it may come from a vault or a
        credential). Empty or undefined sends nothing.
    type: str
    default: alation_backup_notify_url
  notify_on:
    description: Send on a failed run only, or after every run.
    type: str
    choices: [failure, always]
    default: failure
  notify_timeout:
    description: Seconds the webhook has to answer. Must be more than 0.
    type: float
    default: 10
'''

EXAMPLES = r'''
- name: Summary | Gather every host's record
  alation.backup.run_summary:
    report_path: /var/log/alation-backup/last-run.json
    # The URL itself is in the variable alation_backup_notify_url (a vault, an AWX credential).
    notify_on: always
  run_once: true
  register: summary

- name: Summary | One line a host
  ansible.builtin.debug:
    msg: "{{ summary.lines }}"
  run_once: true
'''

RETURN = r'''
records:
  description: One record per host, in the order of O(hosts).
  returned: always
  type: list
  elements: dict
lines:
  description: One summary line per host (M(alation.backup.summary_line) filter).
  returned: always
  type: list
  elements: str
report_path:
  description: The report file written (in a directory of reports, this run's file).
  returned: when O(report_path) is given
  type: str
report_removed:
  description: The run reports the retention removed from a directory of reports (O(report_keep)).
  returned: when O(report_path) is a directory
  type: list
  elements: str
notification:
  description:
    - What became of the notification, also in each record as C(notification).
    - C(result) is C(off) (no URL), C(not needed) (a good run, O(notify_on=failure)), C(skipped) (check mode),
      C(sent) or C(failed); C(status) the HTTP status (0 when there was no answer); C(error) why it failed.
  returned: always
  type: dict
  sample: {"result": "failed", "on": "failure", "status": 500, "error": "the webhook answered HTTP 500 Internal Server Error"}
'''
