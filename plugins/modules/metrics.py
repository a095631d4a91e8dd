#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: metrics
short_description: Write a backup run's record as node_exporter textfile metrics
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Writes C(<dir>/<name>) in the Prometheus text format for node_exporter's textfile collector, replacing it
    atomically so a scrape never reads half a file.
  - Metrics (all prefixed C(alation_backup_)) are C(last_attempt_timestamp_seconds), C(last_success_timestamp_seconds)
    (kept from the previous file when this run did not succeed), C(last_result{result}), C(last_mode{mode,engine}),
    C(archive_size_bytes), C(step_duration_seconds{step}), C(retention_freed_bytes), C(copy_result{result}), and from
    the backup storage dir C(archives_kept), C(future_archives), C(newest_archive_timestamp_seconds),
    C(newest_archive_age_seconds) and C(last_cancel_timestamp_seconds{step}) (when a step last stopped because its
    controller stopped polling, 0 if never).
  - The scheduled drill (the backup role's C(alation_backup_drill_every_days)), from its state beside the host lock -
    C(last_drill_timestamp_seconds) (the last good drill, 0 if none) and C(last_drill_result{result}) (ok, failed or
    skipped, 1 for the last drill's). Alert on C(alation_backup_last_drill_result{result="failed"} == 1).
  - An archive named more than an hour ahead of the host's clock (a clock that ran ahead) is never the newest; it
    is counted in C(future_archives) instead. Alert on C(alation_backup_future_archives > 0) too.
  - Alert on C(time() - alation_backup_last_success_timestamp_seconds), for example above 5 days (Alation's own
    readiness check).
extends_documentation_fragment:
  - alation.backup.attributes
options:
  dir:
    description: The textfile collector's directory (node_exporter's C(--collector.textfile.directory)). It must exist.
    type: path
    required: true
  name:
    description: The file name; node_exporter reads only names ending in C(.prom).
    type: str
    default: alation_backup.prom
  record:
    description: The run's record, the backup role's C(alation_backup_result).
    type: dict
    required: true
  storage_dir:
    description: The backup storage dir (a host path), for the archive count and the newest archive's age.
    type: path
attributes:
  check_mode:
    support: full
    details: In check mode nothing is written; RV(text) is what would be.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Export the run as metrics
  alation.backup.metrics:
    dir: /var/lib/node_exporter/textfile
    record: "{{ alation_backup_result }}"
    storage_dir: /opt/alation/alation/data2/backup
'''

RETURN = r'''
path:
  description: The file written.
  returned: always
  type: str
text:
  description: The metrics written.
  returned: always
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _metrics


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type='path', required=True),
            name=dict(type='str', default='alation_backup.prom'),
            record=dict(type='dict', required=True),
            storage_dir=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p['name'].endswith('.prom') or '/' in p['name']:
        module.fail_json(msg="name=%s must be a file name ending in .prom (node_exporter reads only those)" % p['name'])
    if not os.path.isdir(p['dir']):
        module.fail_json(msg='the metrics dir %s does not exist: give node_exporter --collector.textfile.directory, '
                             'or create it' % p['dir'])
    path = os.path.join(p['dir'], p['name'])
    try:
        text = _metrics.render(p['record'], p['storage_dir'], last_success=_metrics.previous_success(path))
        if not module.check_mode:
            _metrics.write(path, text)
    except OSError as e:
        module.fail_json(msg='could not write the metrics file %s: %s' % (path, e))
    module.exit_json(changed=not module.check_mode, path=path, text=text)


if __name__ == '__main__':
    main()
