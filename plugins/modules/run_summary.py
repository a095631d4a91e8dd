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
    record (the host var O(record_var)); a host with none gets one saying why, as the alation.backup.run_records filter does
    (C(unreachable) when its run had started, else C(not run)).
  - Publishes the records as AWX job stats under O(stats_key) (as M(ansible.builtin.set_stats) with C(aggregate)),
    returns them with one summary line a host, and writes them as JSON to O(report_path) on the controller (0600,
    replaced whole).
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
      - Omit for none.
    type: path
'''

EXAMPLES = r'''
- name: Summary | Gather every host's record
  alation.backup.run_summary:
    report_path: /var/log/alation-backup/last-run.json
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
  description: The report file written.
  returned: when O(report_path) is given
  type: str
'''
