# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""offsite_copy: a failed copy is reported and warned about, and fails the task only when required."""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _objstore, _offsite
from ansible_collections.alation.backup.plugins.module_utils._archive_names import host_label
from ansible_collections.alation.backup.plugins.modules import offsite_copy

from .utils import run_module

KEY = '-----BEGIN OPENSSH PRIVATE KEY-----'


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


def test_the_key_given_as_text_lives_on_tmpfs_only_while_the_module_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(_offsite, 'KEY_DIR_PARENTS', (str(tmp_path),))
    monkeypatch.setattr(_offsite, 'fs_type', lambda path: 'tmpfs')
    seen = []

    def spy(runner, target, host_dir, identity_file=None, known_hosts=None, *rest):
        seen.append((identity_file, open(identity_file).read(), known_hosts, open(known_hosts).read()))
        raise _offsite.CopyError('stop here')
    monkeypatch.setattr(_offsite, 'Copier', spy)
    # A dir a killed copy of this host left (its pid is dead) goes first.
    proc = subprocess.Popen(['true'])
    proc.wait()
    left = tmp_path / ('%s.%s.%d.x' % (_offsite.KEY_DIR_PREFIX, host_label(), proc.pid))
    left.mkdir()
    (left / 'id').write_text(KEY)
    failed, result = run_module(offsite_copy.main, args(tmp_path, dest='b@h:/srv', identity_content=KEY + '\nx\n',
                                                        known_hosts_content='[h]:22 ssh-ed25519 AAAA'))
    assert result['removed_key_dirs'] == [str(left)]
    [(identity_file, key, known_hosts, hosts)] = seen
    assert os.path.dirname(identity_file).startswith(str(tmp_path)) and key == KEY + '\nx\n'
    assert hosts == '[h]:22 ssh-ed25519 AAAA\n' and os.path.dirname(known_hosts) == os.path.dirname(identity_file)
    assert result['copy']['error'] == 'stop here'
    assert os.listdir(str(tmp_path)) == [], 'the key dir is gone with the module'
    assert KEY not in repr(result)


def test_the_key_from_a_secret_file_is_read_removed_and_used_as_its_text(tmp_path, monkeypatch):
    keys = tmp_path / 'keys'
    keys.mkdir()
    monkeypatch.setattr(_offsite, 'KEY_DIR_PARENTS', (str(keys),))
    monkeypatch.setattr(_offsite, 'fs_type', lambda path: 'tmpfs')
    seen = []

    def spy(runner, target, host_dir, identity_file=None, *rest):
        seen.append(open(identity_file).read())
        raise _offsite.CopyError('stop here')
    monkeypatch.setattr(_offsite, 'Copier', spy)
    secret = tmp_path / 'secret'
    secret.write_text(KEY + '\nx\n')
    failed, result = run_module(offsite_copy.main, args(tmp_path, dest='b@h:/srv', identity_content_file=str(secret)))
    assert seen == [KEY + '\nx\n'] and result['copy']['error'] == 'stop here'
    assert not secret.exists(), 'read and removed as the module starts'
    assert os.listdir(str(keys)) == [] and KEY not in repr(result)


def test_a_key_as_file_and_as_text_are_refused_together(tmp_path):
    failed, result = run_module(offsite_copy.main, args(tmp_path, identity_file='/id', identity_content=KEY))
    assert failed and 'mutually exclusive' in result['msg']


def test_state_check_needs_no_src_and_fails_whatever_required(tmp_path):
    failed, result = run_module(offsite_copy.main, dict(state='check', dest='backuphost-without-a-path',
                                                        host_dir='alation-1'))
    assert failed and result['msg'].startswith('the backup host cannot take the copy: copy_to ')


def test_state_present_needs_src():
    failed, result = run_module(offsite_copy.main, dict(dest='b@h:/srv', host_dir='alation-1'))
    assert failed and 'state is present but all of the following are missing: src' in result['msg']


def test_bad_retention_rules_fail_before_anything_is_sent(tmp_path):
    failed, result = run_module(offsite_copy.main, args(tmp_path, keep_weekly=4))
    assert failed and 'retention on the backup host: keep_weekly=4: keep_count=0 turns retention off' in result['msg']
    failed, result = run_module(offsite_copy.main, args(tmp_path, keep_count=3, keep_pinned=['latest']))
    assert failed and "keep_pinned: 'latest' is not an archive name" in result['msg']
    assert 'executed_commands' not in result or result['executed_commands'] == []


SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'


def test_an_s3_dest_goes_to_the_object_store_copier_with_the_secret_from_its_file(tmp_path, monkeypatch):
    seen = []

    def spy(runner, target, host_dir, endpoint=None, region=None, key_id=None, secret=None, *rest):
        seen.append((target, host_dir, endpoint, region, key_id, secret))
        raise _offsite.CopyError('stop here')
    monkeypatch.setattr(_objstore, 'ObjCopier', spy)
    secret = tmp_path / 'secret'
    secret.write_text(SECRET)
    failed, result = run_module(offsite_copy.main, args(
        tmp_path, dest='s3://acme-backups/prod', s3_endpoint='https://minio.example.com:9000', s3_region='eu-west-1',
        s3_access_key_id='AKIAEXAMPLE', s3_secret_access_key_file=str(secret)))
    assert seen == [(_objstore.ObjTarget('s3', 'acme-backups', 'prod'), 'alation-1', 'https://minio.example.com:9000',
                     'eu-west-1', 'AKIAEXAMPLE', SECRET)]
    assert result['copy']['error'] == 'stop here' and not secret.exists() and SECRET not in repr(result)


def test_an_ssh_method_for_an_s3_dest_and_rclone_for_a_host_are_refused(tmp_path):
    failed, result = run_module(offsite_copy.main, args(tmp_path, dest='s3://acme-backups', method='rsync'))
    assert result['copy']['result'] == 'failed'
    assert result['copy']['error'] == 'method rsync cannot copy to s3://acme-backups: use auto or rclone'
    failed, result = run_module(offsite_copy.main, args(tmp_path, dest='b@h:/srv', method='rclone'))
    assert 'method rclone copies to an object store (s3://bucket/prefix), not to b@h:/srv' == result['copy']['error']


def test_a_key_id_without_its_secret_is_refused(tmp_path):
    failed, result = run_module(offsite_copy.main, args(tmp_path, dest='s3://acme-backups', s3_access_key_id='AKIA',
                                                        required=True))
    assert failed and 'give both alation_backup_copy_s3_access_key_id and' in result['msg']
