# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_lock as the backup role's one preflight call (issue 19): it makes the backup storage dir, skips a host
backed up recently (min_interval) without taking the lock, and returns the lease the later steps take."""

import os
import stat
import time

import pytest

from ansible_collections.alation.backup.plugins.modules import backup_lock

from ..module_utils.test_archive_names import publish
from .utils import run_module

NAME = '202401010000_5-17-0-1_alation_backup.tar.gz'


def args(storage, **more):
    return dict(dict(path=os.path.join(str(storage), '.alation_backup.lock'), run_id='run-1', owner='alice',
                     storage_dir=str(storage)), **more)


def aged(path, hours):
    then = time.time() - hours * 3600
    os.utime(path, (then, then))
    return path


def test_takes_the_lock_and_returns_the_lease(tmp_path):
    storage = tmp_path / 'backup'
    storage.mkdir()
    failed, result = run_module(backup_lock.main, args(storage))
    assert not failed and result['changed']
    assert result['lease'] == dict(path=str(storage / '.alation_backup.lock'), token=result['token'])
    assert result['skip_reason'] == '' and result['fresh'] == {} and not result['storage_dir_made']


def test_skips_a_host_backed_up_recently_without_taking_the_lock(tmp_path):
    storage = tmp_path / 'backup'
    storage.mkdir()
    aged(publish(storage, NAME), 2)
    failed, result = run_module(backup_lock.main, args(storage, min_interval=24))
    assert not failed and not result['changed']
    assert result['skip_reason'] == '%s is younger than alation_backup_min_interval (24 h)' % NAME
    assert result['lease'] == {} and 'token' not in result
    assert result['fresh']['path'] == str(storage / NAME) and 7100 < result['fresh']['age_s'] < 7300
    assert result['fresh']['ignored'] == [] and result['fresh']['future_archives'] == []
    assert not os.path.exists(str(storage / '.alation_backup.lock'))


@pytest.mark.parametrize('hours, interval', [(30, 24), (2, 1.5), (2, 0)])
def test_an_older_archive_or_no_interval_takes_the_lock(tmp_path, hours, interval):
    storage = tmp_path / 'backup'
    storage.mkdir()
    aged(publish(storage, NAME), hours)
    failed, result = run_module(backup_lock.main, args(storage, min_interval=interval))
    assert not failed and result['changed'] and result['skip_reason'] == '' and result['lease']['token']
    assert bool(result['fresh']) is bool(interval)


def test_fractions_of_hours_are_kept_in_the_reason(tmp_path):
    storage = tmp_path / 'backup'
    storage.mkdir()
    aged(publish(storage, NAME), 1)
    failed, result = run_module(backup_lock.main, args(storage, min_interval=1.5))
    assert result['skip_reason'].endswith('alation_backup_min_interval (1.5 h)')


def test_an_archive_its_sha256_does_not_vouch_for_never_skips(tmp_path):
    storage = tmp_path / 'backup'
    storage.mkdir()
    aged(publish(storage, NAME, sidecar=False), 1)
    failed, result = run_module(backup_lock.main, args(storage, min_interval=24))
    assert not failed and result['skip_reason'] == '' and result['lease']
    assert result['fresh']['path'] is None and result['fresh']['ignored'][0]['path'] == str(storage / NAME)


def test_the_owner_check_comes_before_the_skip(tmp_path):
    storage = tmp_path / 'backup'
    storage.mkdir()
    aged(publish(storage, NAME), 1)
    (storage / '.alation_backup_owner').write_text('{"machine_id": "0" , "hostname": "elsewhere"}')
    failed, result = run_module(backup_lock.main, args(storage, min_interval=24))
    assert failed and 'used by another machine' in result['msg']


def test_makes_a_missing_storage_dir_with_its_mode(tmp_path):
    storage = tmp_path / 'data2' / 'backup'
    old = os.umask(0o077)
    try:
        failed, result = run_module(backup_lock.main, args(storage, min_interval=24))
    finally:
        os.umask(old)
    assert not failed and result['storage_dir_made'] and result['lease']
    assert stat.S_IMODE(os.lstat(str(storage)).st_mode) == 0o755


def test_never_changes_an_existing_storage_dir(tmp_path):
    storage = tmp_path / 'backup'
    storage.mkdir()
    os.chmod(str(storage), 0o750)
    failed, result = run_module(backup_lock.main, args(storage, storage_dir_mode='0700', storage_dir_owner='0'))
    assert not failed and not result['storage_dir_made']
    assert stat.S_IMODE(os.lstat(str(storage)).st_mode) == 0o750


def test_storage_dir_owner_is_looked_up_in_the_shell(tmp_path):
    shell = tmp_path / 'shell'
    (shell / 'etc').mkdir(parents=True)
    (shell / 'etc' / 'passwd').write_text('alation:x:4242:4343::/home/alation:/bin/bash\n')
    (shell / 'etc' / 'group').write_text('alation:x:4343:\n')
    storage = tmp_path / 'data2' / 'backup'
    failed, result = run_module(backup_lock.main, args(storage, storage_dir_owner='nobody-here', chroot=str(shell)))
    assert failed and "owner 'nobody-here' is not a user" in result['msg'] and str(shell) in result['msg']
    assert not storage.exists()
    if os.geteuid() != 0:
        pytest.skip('chown needs root')
    failed, result = run_module(backup_lock.main, args(storage, storage_dir_owner='alation', chroot=str(shell)))
    assert not failed, result
    st = os.lstat(str(storage))
    assert (st.st_uid, st.st_gid) == (4242, 4343)


def test_check_mode_makes_nothing_and_takes_nothing(tmp_path):
    storage = tmp_path / 'data2' / 'backup'
    failed, result = run_module(backup_lock.main, args(storage, _ansible_check_mode=True))
    assert not failed and result['changed'] and result['storage_dir_made'] and result['lease'] == {}
    assert not (tmp_path / 'data2').exists()


@pytest.mark.parametrize('more, words', [
    (dict(storage_dir_mode='rwx'), "storage_dir_mode=rwx must be an octal mode"),
    (dict(min_interval=-1), 'min_interval=-1.0 must be 0 (off) or more hours'),
])
def test_bad_options(tmp_path, more, words):
    failed, result = run_module(backup_lock.main, args(tmp_path / 'data2' / 'backup', **more))
    assert failed and words in result['msg']
