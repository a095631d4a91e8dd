# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's summary on the controller: every host's record, AWX job stats, the report file. See the module's docs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import json
import os
import tempfile

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.alation.backup.plugins.filter.report import report_path_problem, run_records, summary_line

ARGUMENT_SPEC = dict(
    hosts=dict(type='list', elements='str'),
    record_var=dict(type='str', default='alation_backup_result'),
    started_var=dict(type='str', default='__alation_backup_started'),
    stats_key=dict(type='str', default='alation_backup'),
    report_path=dict(type='path'),
)


def write_report(path, records):
    """The records as JSON at ``path``, 0600, whole or not at all (a temporary file renamed over it)."""
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(records, f, indent=4, sort_keys=True)
            f.write('\n')
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        hosts = args['hosts'] if args['hosts'] is not None else task_vars.get('ansible_play_hosts_all', [])
        hostvars = task_vars.get('hostvars', {})
        own, started = [], []
        for host in hosts:
            hv = hostvars.get(host, {})
            own.append(hv.get(args['record_var']) or {})
            started.append(hv.get(args['started_var']) or '')
        records = run_records(own, hosts, started, bool(task_vars.get('ansible_check_mode')))
        result.update(changed=False, records=records, lines=[summary_line(r) for r in records],
                      # What set_stats would publish: AWX shows it as the job's stats (artifacts).
                      ansible_stats=dict(data={args['stats_key']: dict((r['host'], r) for r in records)},
                                         per_host=False, aggregate=True))
        path = args['report_path']
        if path:
            # Preflight refused every host already when the path could not be written; failing here too would
            # hide the summary lines. The records are still in the job stats and the lines.
            problem = report_path_problem(path)
            if not problem:
                try:
                    write_report(path, records)
                    result['report_path'] = path
                except (IOError, OSError) as e:
                    problem = 'could not write the report %s: %s' % (path, to_text(e))
            if problem:
                result['report_error'] = problem
                result['warnings'] = [problem]
        return result
