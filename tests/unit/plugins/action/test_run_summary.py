# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The summary action: every host's record, the job stats, the report file."""

import json
import os
import socket
import stat
from unittest import mock

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.task import Task
from ansible.template import Templar

try:
    from ansible.template import trust_as_template  # ansible-core 2.19: only a trusted string (a var file's) is templated
except ImportError:  # older cores template every string
    def trust_as_template(value):
        return value

from ansible_collections.alation.backup.plugins.action import run_summary
from webhook import Listener


def run(args, hostvars, hosts=('h1', 'h2', 'h3'), check_mode=False, **more_vars):
    task = Task()
    task.args = args
    task.action = 'alation.backup.run_summary'
    task_vars = dict(hostvars=hostvars, ansible_play_hosts_all=list(hosts), ansible_check_mode=check_mode, **more_vars)
    loader = DataLoader()
    plugin = run_summary.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=loader,
                                      templar=Templar(loader=loader, variables=task_vars), shared_loader_obj=None)
    return plugin.run(task_vars=task_vars)


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


# A directory of reports: one file a run, latest.json, a retention of its own.

def test_a_directory_gets_one_report_a_run_and_latest_json(tmp_path):
    first = run(dict(report_path=str(tmp_path)), HOSTVARS)
    name = os.path.basename(first['report_path'])
    assert run_summary.REPORT_NAME.match(name) and os.path.dirname(first['report_path']) == str(tmp_path)
    assert stat.S_IMODE(os.stat(first['report_path']).st_mode) == 0o600
    with open(first['report_path']) as f:
        assert json.load(f) == first['records']
    assert os.readlink(str(tmp_path / 'latest.json')) == name, 'a relative link: the directory may move'
    # A second run in the same second never replaces the first's file.
    second = run(dict(report_path=str(tmp_path) + '/'), HOSTVARS)
    assert second['report_path'] != first['report_path'] and os.path.exists(first['report_path'])
    assert os.readlink(str(tmp_path / 'latest.json')) == os.path.basename(second['report_path'])
    assert sorted(os.listdir(str(tmp_path))) == sorted([name, os.path.basename(second['report_path']), 'latest.json']), \
        'no temporary file or link left'


def test_the_reports_retention_removes_only_the_oldest_run_files(tmp_path):
    old = ['alation-backup-2026010%dT000000Z.json' % d for d in range(1, 6)]
    for name in old + ['notes.json', 'alation-backup-x.json']:
        (tmp_path / name).write_text('[]')
    os.symlink('alation-backup-20260101T000000Z.json', str(tmp_path / 'alation-backup-20250101T000000Z.json'))
    result = run(dict(report_path=str(tmp_path), report_keep=3), HOSTVARS)
    assert sorted(os.path.basename(p) for p in result['report_removed']) == old[:3]
    left = sorted(os.listdir(str(tmp_path)))
    assert left == sorted(old[3:] + [os.path.basename(result['report_path']), 'latest.json', 'notes.json',
                                     'alation-backup-x.json', 'alation-backup-20250101T000000Z.json'])


def test_the_report_order_puts_a_seconds_later_reports_after_it():
    names = ['alation-backup-20260101T000000Z-2.json', 'alation-backup-20260101T000000Z.json',
             'alation-backup-20260101T000000Z-10.json', 'alation-backup-20251231T235959Z.json']
    assert sorted(names, key=run_summary._report_order) == [names[3], names[1], names[0], names[2]]  # pylint: disable=protected-access


def test_keep_0_keeps_every_report_and_a_negative_keep_is_refused(tmp_path):
    for d in range(1, 4):
        (tmp_path / ('alation-backup-2026010%dT000000Z.json' % d)).write_text('[]')
    assert run(dict(report_path=str(tmp_path), report_keep=0), HOSTVARS)['report_removed'] == []
    assert len(os.listdir(str(tmp_path))) == 5
    result = run(dict(report_path=str(tmp_path), report_keep=-1), HOSTVARS)
    assert 'report_keep must be 0' in result['report_error'] and len(result['lines']) == 3


def test_a_latest_json_that_is_no_link_is_left_alone(tmp_path):
    (tmp_path / 'latest.json').write_text('mine')
    result = run(dict(report_path=str(tmp_path)), HOSTVARS)
    assert (tmp_path / 'latest.json').read_text() == 'mine' and os.path.exists(result['report_path'])
    assert any('is not a symlink' in w for w in result['warnings'])


def test_a_directory_of_reports_that_is_missing_warns(tmp_path):
    result = run(dict(report_path=str(tmp_path / 'nope') + '/'), HOSTVARS)
    assert 'does not exist' in result['report_error'] and not os.path.exists(str(tmp_path / 'nope'))


# The notification: a real HTTP listener on a free loopback port, in a thread (tests/support/webhook.py).

def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


OK_ONLY = {'h1': HOSTVARS['h1']}


def assert_no_url(result, url):
    text = json.dumps(result, default=str)
    assert url not in text and 'SeCrEtToKeN' not in text


def test_a_failed_run_posts_every_record_and_the_lines_as_text(tmp_path):
    path = str(tmp_path / 'report.json')
    with Listener() as hook:
        result = run(dict(report_path=path), HOSTVARS, alation_backup_notify_url=hook.url)
    assert not result.get('failed') and 'warnings' not in result
    assert len(hook.posts) == 1, 'once per run'
    post = hook.posts[0]
    assert post['path'] == '/services/T000/B000/SeCrEtToKeN' and post['content_type'] == 'application/json'
    body = post['body']
    assert body['text'].split('\n') == ['Alation backup run: FAILED on 2 of 3 hosts (h2, h3)'] + result['lines']
    assert body['result'] == 'failed' and body['failed_hosts'] == ['h2', 'h3'] and body['lines'] == result['lines']
    assert [r['host'] for r in body['records']] == ['h1', 'h2', 'h3']
    assert result['notification'] == dict(result='sent', on='failure', status=200, error='')
    assert [r['notification']['result'] for r in result['records']] == ['sent'] * 3
    with open(path) as f:
        assert json.load(f)[0]['notification']['result'] == 'sent'
    assert_no_url(result, hook.url)
    assert hook.url not in open(path).read()


def test_the_url_is_templated_from_the_task_vars(tmp_path):
    with Listener() as hook:
        result = run({}, HOSTVARS, alation_backup_notify_url=trust_as_template('{{ vault_hook }}'), vault_hook=hook.url)
    assert result['notification']['result'] == 'sent' and len(hook.posts) == 1
    assert_no_url(result, hook.url)


def test_on_failure_a_good_run_posts_nothing():
    with Listener() as hook:
        result = run({}, OK_ONLY, hosts=['h1'], alation_backup_notify_url=hook.url)
    assert hook.posts == [] and result['notification']['result'] == 'not needed' and 'warnings' not in result


def test_always_posts_a_good_run_too():
    with Listener() as hook:
        result = run(dict(notify_on='always'), OK_ONLY, hosts=['h1'], alation_backup_notify_url=hook.url)
    assert result['notification']['result'] == 'sent'
    body = hook.posts[0]['body']
    assert body['result'] == 'ok' and body['failed_hosts'] == []
    assert body['text'] == 'Alation backup run: OK on all 1 hosts\nh1: OK FULL in 1.0s -> /a.tar.gz'


def test_a_failed_copy_counts_as_a_failure():
    rec = dict(HOSTVARS['h1']['alation_backup_result'], copy=dict(result='failed', error='ssh: refused'))
    with Listener() as hook:
        result = run({}, {'h1': dict(alation_backup_result=rec)}, hosts=['h1'], alation_backup_notify_url=hook.url)
    assert result['notification']['result'] == 'sent' and hook.posts[0]['body']['failed_hosts'] == ['h1']


def test_no_url_posts_nothing():
    result = run(dict(notify_on='always'), HOSTVARS)
    assert result['notification'] == dict(result='off', on='always', status=0, error='')


def test_check_mode_posts_nothing():
    with Listener() as hook:
        result = run({}, HOSTVARS, check_mode=True, alation_backup_notify_url=hook.url)
    assert hook.posts == [] and result['notification']['result'] == 'skipped'


@pytest.mark.parametrize('status', [500, 404, 302])
def test_a_webhook_answering_non_2xx_is_a_warning_and_the_run_stays_ok(status, tmp_path):
    path = str(tmp_path / 'report.json')
    with Listener(status=status) as hook:
        result = run(dict(report_path=path), HOSTVARS, alation_backup_notify_url=hook.url)
    assert not result.get('failed') and len(hook.posts) == 1
    n = result['notification']
    assert n['result'] == 'failed' and n['status'] == status and ('HTTP %d' % status) in n['error']
    assert result['warnings'] == ["the run's notification was not delivered (the backup stands): " + n['error']]
    with open(path) as f:
        assert json.load(f)[0]['notification'] == n
    assert_no_url(result, hook.url)


def test_an_unreachable_webhook_is_a_warning_and_the_run_stays_ok():
    url = 'http://127.0.0.1:%d/services/T000/B000/SeCrEtToKeN' % free_port()
    result = run({}, HOSTVARS, alation_backup_notify_url=url)
    assert not result.get('failed')
    n = result['notification']
    assert n['result'] == 'failed' and n['status'] == 0 and 'could not be reached' in n['error']
    assert 'refused' in n['error'].lower() and len(result['warnings']) == 1
    assert_no_url(result, url)


def test_a_webhook_slower_than_the_timeout_is_a_warning():
    with Listener(delay=3) as hook:
        result = run(dict(notify_timeout=0.5), HOSTVARS, alation_backup_notify_url=hook.url)
    n = result['notification']
    assert n['result'] == 'failed' and 'could not be reached' in n['error'] and 'timed out' in n['error']
    assert not result.get('failed')
    assert_no_url(result, hook.url)


def test_not_an_http_url_is_a_warning_without_the_url():
    url = 'ftp://hooks.example/SeCrEtToKeN'
    result = run({}, HOSTVARS, alation_backup_notify_url=url)
    assert result['notification']['result'] == 'failed' and 'http://' in result['notification']['error']
    assert_no_url(result, url)


def test_redact_takes_the_url_and_its_path_out():
    url = 'https://hooks.slack.com/services/T0/B0/XyZ?x=1'
    assert run_summary.redact('a %s b /services/T0/B0/XyZ c' % url, url) == 'a <alation_backup_notify_url> b <alation_backup_notify_url> c'


def test_a_timeout_of_0_sends_nothing_and_warns():
    with Listener() as hook:
        result = run(dict(notify_timeout=0), HOSTVARS, alation_backup_notify_url=hook.url)
    assert hook.posts == [] and result['notification']['result'] == 'failed'
    assert 'more than 0' in result['notification']['error'] and len(result['warnings']) == 1
