# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""offsite_copy: a failed copy is reported and warned about, and fails the task only when required."""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.modules import offsite_copy

from .utils import run_module


def args(tmp_path, **extra):
    return dict(dict(src=str(tmp_path / 'a.tar.gz'), dest='backuphost-without-a-path', host_dir='alation-1'), **extra)


def test_a_failed_copy_is_reported_without_failing_the_task(tmp_path, monkeypatch):
    warned = []
    monkeypatch.setattr(AnsibleModule, 'warn', lambda self, warning: warned.append(warning))
    failed, result = run_module(offsite_copy.main, args(tmp_path))
    assert not failed and result['changed'] is False
    assert result['copy']['result'] == 'failed' and 'give [user@]host:/path' in result['copy']['error']
    assert any('the local archive is kept' in w for w in warned)


def test_a_failed_copy_fails_the_task_when_required(tmp_path):
    failed, result = run_module(offsite_copy.main, args(tmp_path, required=True))
    assert failed and result['msg'].startswith('off-host copy of %s: copy_to ' % (tmp_path / 'a.tar.gz'))
    assert result['copy']['result'] == 'failed'


def test_a_missing_key_file_is_named(tmp_path):
    failed, result = run_module(offsite_copy.main, args(tmp_path, dest='b@h:/srv', identity_file=str(tmp_path / 'id'),
                                                        required=True))
    assert failed and 'identity_file %s is not a file on this host' % (tmp_path / 'id') in result['msg']


def test_state_check_needs_no_src_and_fails_whatever_required(tmp_path):
    failed, result = run_module(offsite_copy.main, dict(state='check', dest='backuphost-without-a-path',
                                                        host_dir='alation-1'))
    assert failed and result['msg'].startswith('the backup host cannot take the copy: copy_to ')


def test_state_present_needs_src():
    failed, result = run_module(offsite_copy.main, dict(dest='b@h:/srv', host_dir='alation-1'))
    assert failed and 'state is present but all of the following are missing: src' in result['msg']
