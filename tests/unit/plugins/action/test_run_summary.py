# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The summary action: every host's record, the job stats, the report file."""

import json
import os
import stat
from unittest import mock

from ansible.playbook.task import Task

from ansible_collections.alation.backup.plugins.action import run_summary


def run(args, hostvars, hosts=('h1', 'h2', 'h3'), check_mode=False):
    task = Task()
    task.args = args
    task.action = 'alation.backup.run_summary'
    plugin = run_summary.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None,
                                      shared_loader_obj=None)
    return plugin.run(task_vars=dict(hostvars=hostvars, ansible_play_hosts_all=list(hosts),
                                     ansible_check_mode=check_mode))


HOSTVARS = {
    'h1': dict(alation_backup_result=dict(host='h1', result='ok', mode='FULL', size=0, archive='/a.tar.gz',
                                          durations_s=dict(total=1.0)), __alation_backup_started=1.0),
    # Started, then lost (unreachable mid-run); and one the role never ran on.
    'h2': dict(__alation_backup_started=2.0),
    'h3': {},
}


def test_every_host_gets_a_record_a_line_and_the_stats(tmp_path):
    path = str(tmp_path / 'report.json')
    result = run(dict(report_path=path), HOSTVARS)
    assert not result.get('failed') and result['changed'] is False
    assert [r['result'] for r in result['records']] == ['ok', 'unreachable', 'not run']
    assert result['lines'][0] == 'h1: OK FULL in 1.0s -> /a.tar.gz'
    stats = result['ansible_stats']
    assert stats['aggregate'] is True and stats['per_host'] is False
    assert sorted(stats['data']['alation_backup']) == ['h1', 'h2', 'h3']
    with open(path) as f:
        assert json.load(f) == result['records']
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [n for n in os.listdir(str(tmp_path)) if n != 'report.json'] == [], 'no temporary file left'


def test_a_report_path_it_cannot_write_warns_and_still_gives_the_lines(tmp_path):
    path = str(tmp_path / 'missing' / 'report.json')
    result = run(dict(report_path=path), HOSTVARS)
    assert not result.get('failed') and len(result['lines']) == 3
    assert 'does not exist' in result['report_error'] and result['warnings'] == [result['report_error']]


def test_no_report_path_writes_nothing(tmp_path):
    result = run({}, HOSTVARS, hosts=['h1'])
    assert 'report_path' not in result and [r['host'] for r in result['records']] == ['h1']
