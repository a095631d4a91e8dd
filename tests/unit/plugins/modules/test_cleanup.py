# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cleanup: the staging dir emptied, the pg staging dir removed with its engine's safety, and the host lock
released whatever failed before (issue 19: cleanup.yml's four tasks in one call)."""

import os
import stat
import subprocess

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _locks
from ansible_collections.alation.backup.plugins.module_utils._locks import FileLock
from ansible_collections.alation.backup.plugins.modules import cleanup

from .utils import run_module


@pytest.fixture
def host(tmp_path):
    """A staging dir with files and a link out, a pg_probackup catalog, the host lock taken."""
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'precious').write_text('keep')
    staging = tmp_path / 'data2' / 'tmp'
    (staging / 'sub').mkdir(parents=True)
    (staging / 'sub' / 'file').write_text('staged')
    (staging / 'out').symlink_to(str(outside))
    os.chmod(str(staging), 0o755)
    storage = tmp_path / 'data2' / 'backup'
    catalog = storage / 'pgbackup'
    (catalog / 'backups' / 'alation' / 'TP5HJN').mkdir(parents=True)
    (catalog / 'wal' / 'alation').mkdir(parents=True)
    lock = str(storage / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(lock, 'alice', 'run-1', 600)
    return dict(staging=staging, catalog=catalog, outside=outside, lock=lock,
                lease=dict(path=lock, token=record['token']))


def args(host, **more):
    return dict(dict(staging_dir=str(host['staging']), lease=host['lease']), **more)


def test_empties_the_staging_dir_and_releases_the_lock(host):
    failed, result = run_module(cleanup.main, args(host))
    assert not failed, result
    assert os.listdir(str(host['staging'])) == [] and stat.S_IMODE(os.lstat(str(host['staging'])).st_mode) == 0o700
    assert (host['outside'] / 'precious').read_text() == 'keep'
    assert result['staging']['removed_files'] == 2 and result['staging']['removed_dirs'] == 1
    assert result['changed'] and result['released'] and not os.path.exists(host['lock'])
    assert result['pg_staging'] == {} and result['failed_parts'] == [] and isinstance(result['duration_s'], float)
    # The catalog carries the incremental chain: without remove_pg_staging it stays.
    assert (host['catalog'] / 'backups').is_dir()


def test_removes_a_pg_probackup_catalog(host):
    failed, result = run_module(cleanup.main, args(host, remove_pg_staging=True, pg_staging_dir=str(host['catalog'])))
    assert not failed, result
    assert not host['catalog'].exists() and result['pg_staging'] == {'changed': True} and result['released']
    # Nor its lock file beside it.
    assert os.listdir(str(host['catalog'].parent)) == []


def test_removes_a_pg_basebackup_staging_dir(host, tmp_path):
    pgbackup = tmp_path / 'data2' / 'pgbase'
    pgbackup.mkdir()
    (pgbackup / 'base.tar').write_bytes(b'x' * 10)
    failed, result = run_module(cleanup.main, args(host, remove_pg_staging=True, pg_staging_dir=str(pgbackup),
                                                   engine='pg_basebackup'))
    assert not failed, result
    assert not pgbackup.exists() and result['pg_staging']['removed_files'] == 1 and result['released']


def test_a_catalog_a_backup_runs_in_is_kept_and_the_lock_still_goes(host):
    proc = subprocess.Popen(['pg_probackup', '60'], executable='/bin/sleep')
    try:
        (host['catalog'] / 'backups' / 'alation' / 'TP5HJN' / 'backup.pid').write_text('%d\n' % proc.pid)
        failed, result = run_module(cleanup.main, args(host, remove_pg_staging=True,
                                                       pg_staging_dir=str(host['catalog'])))
    finally:
        proc.kill()
        proc.wait()
    assert failed and result['failed_parts'] == ['pg_staging']
    assert result['msg'].startswith('cleanup failed: removing the pg staging dir %s (pg_probackup): not removing '
                                    'catalog' % host['catalog'])
    assert 'a backup is running in it' in result['msg'] and result['msg'].endswith('; the host lock was released')
    assert (host['catalog'] / 'backups').is_dir() and not os.path.exists(host['lock'])
    # The staging dir part ran all the same.
    assert os.listdir(str(host['staging'])) == []


@pytest.mark.parametrize('shape, words', [
    ('foreign', 'is not a pg_probackup catalog'),
    ('held', 'another backup of this catalog is running'),
])
def test_the_catalogs_safety_holds_and_the_lock_goes(host, shape, words):
    if shape == 'foreign':
        (host['catalog'] / 'wal').rename(str(host['catalog'] / 'precious'))
        failed, result = run_module(cleanup.main, args(host, remove_pg_staging=True, pg_staging_dir=str(host['catalog'])))
    else:
        with FileLock(str(host['catalog'].parent / '.pgbackup.lock'), purpose='test'):
            failed, result = run_module(cleanup.main, args(host, remove_pg_staging=True,
                                                           pg_staging_dir=str(host['catalog'])))
    assert failed and words in result['msg'] and result['failed_parts'] == ['pg_staging']
    assert host['catalog'].is_dir() and result['released'] and not os.path.exists(host['lock'])


def test_a_staging_dir_that_fails_still_releases_the_lock(host, tmp_path):
    link = tmp_path / 'data2' / 'linked'
    link.symlink_to(str(host['staging']))
    failed, result = run_module(cleanup.main, dict(args(host), staging_dir=str(link)))
    assert failed and result['failed_parts'] == ['staging'] and 'it is a symlink' in result['msg']
    assert result['released'] and not os.path.exists(host['lock'])
    assert (host['staging'] / 'sub' / 'file').exists()


def test_a_bad_owner_touches_nothing_and_releases_the_lock(host):
    failed, result = run_module(cleanup.main, args(host, owner='no-such-user-here'))
    assert failed and "owner 'no-such-user-here' is not a user" in result['msg']
    assert result['msg'].endswith('; the host lock was released') and not os.path.exists(host['lock'])
    assert (host['staging'] / 'sub' / 'file').exists()


def test_a_lock_another_run_took_over_is_left_to_it(host):
    os.unlink(host['lock'])
    theirs, dummy = _locks.acquire_lease(host['lock'], 'bob', 'run-2', 600)
    failed, result = run_module(cleanup.main, args(host))
    # The lease is lost before anything is removed: nothing more is changed, and bob's lock stays.
    assert failed and result['failed_parts'] == ['staging'] and 'nothing more was changed' in result['msg']
    assert (host['staging'] / 'sub' / 'file').exists() and not result['released']
    assert _locks.read_holder(host['lock'])['token'] == theirs['token']


def test_check_mode_changes_nothing(host):
    failed, result = run_module(cleanup.main, args(host, remove_pg_staging=True, pg_staging_dir=str(host['catalog']),
                                                   _ansible_check_mode=True))
    assert not failed and result['changed'] and result['staging']['removed_files'] == 2
    assert result['pg_staging'] == {'changed': True} and not result['released']
    assert (host['staging'] / 'sub' / 'file').exists() and host['catalog'].is_dir() and os.path.exists(host['lock'])


def test_without_a_lease(host):
    failed, result = run_module(cleanup.main, dict(staging_dir=str(host['staging'])))
    assert not failed and not result['released'] and os.path.exists(host['lock'])


def test_pg_staging_dir_is_required_to_remove_it(host):
    failed, result = run_module(cleanup.main, args(host, remove_pg_staging=True))
    assert failed and 'pg_staging_dir' in result['msg']


def test_an_empty_lease_is_no_lease(host):
    # What module_defaults on the leased group gives a call outside a run.
    failed, result = run_module(cleanup.main, dict(staging_dir=str(host['staging']), lease={}, chroot=''))
    assert not failed and not result['released'] and os.path.exists(host['lock'])
