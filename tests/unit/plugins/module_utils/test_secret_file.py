# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _secret_file
from ansible_collections.alation.backup.plugins.module_utils._archive_names import host_label
from ansible_collections.alation.backup.plugins.module_utils._host import HostError


@pytest.fixture
def tmpfs_mounts(tmp_path):
    """A mounts table saying tmp_path is a tmpfs (the test's dir rarely is one)."""
    mounts = tmp_path / 'mounts'
    mounts.write_text('/dev/sda1 / ext4 rw 0 0\ntmpfs %s tmpfs rw 0 0\n' % tmp_path)
    return str(mounts)


def test_written_0600_named_for_host_purpose_and_run_then_taken_once(tmp_path, tmpfs_mounts):
    path, removed = _secret_file.write_secret(str(tmp_path), 'pg_password', 'tok-1', 's3cret', mounts=tmpfs_mounts)
    assert removed == []
    assert os.path.basename(path) == '.alation_backup.%s.%s.pg_password.%s.secret' % (
        host_label(), _secret_file.scope_of(None), _secret_file.run_key('tok-1'))
    assert 'tok-1' not in path, 'the lease token itself is never in a name'
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'
    assert _secret_file.take_secret(path) == 's3cret'
    assert not os.path.exists(path)
    with pytest.raises(OSError):
        _secret_file.take_secret(path)


def test_a_cancelled_runs_leftover_is_removed_by_the_next_run_and_other_hosts_files_stay(tmp_path, tmpfs_mounts):
    old, dummy = _secret_file.write_secret(str(tmp_path), 'pg_password', 'tok-old', 'x', mounts=tmpfs_mounts)
    other_host = tmp_path / _secret_file.secret_name('pg_password', 'abc123', host='other-host')
    other_host.write_text('y')
    path, removed = _secret_file.write_secret(str(tmp_path), 'pg_password', 'tok-new', 'z', mounts=tmpfs_mounts)
    assert removed == [os.path.basename(old)] and not os.path.exists(old)
    assert other_host.exists() and os.path.exists(path)


def test_a_run_of_another_storage_dir_on_this_host_keeps_its_secret_file(tmp_path, tmpfs_mounts):
    """Two shells (two leases) on one machine: each run's file is its own; only a dead run of the same lease's goes."""
    a, dummy = _secret_file.write_secret(str(tmp_path), 'ssh_key', 'tok-a', 'x', mounts=tmpfs_mounts,
                                         lease_path='/opt/a/data2/backup/.alation_backup.lock')
    b, removed = _secret_file.write_secret(str(tmp_path), 'ssh_key', 'tok-b', 'y', mounts=tmpfs_mounts,
                                           lease_path='/opt/b/data2/backup/.alation_backup.lock')
    assert removed == [] and os.path.exists(a) and os.path.exists(b)
    c, removed = _secret_file.write_secret(str(tmp_path), 'pg_password', 'tok-c', 'z', mounts=tmpfs_mounts,
                                           lease_path='/opt/a/data2/backup/.alation_backup.lock')
    assert removed == [os.path.basename(a)] and os.path.exists(b) and os.path.exists(c)


def test_a_dir_on_disk_is_refused(tmp_path):
    mounts = tmp_path / 'mounts'
    mounts.write_text('/dev/sda1 / ext4 rw 0 0\n')
    with pytest.raises(HostError, match='on ext4, not in memory'):
        _secret_file.write_secret(str(tmp_path), 'pg_password', 't', 'x', mounts=str(mounts))
    assert os.listdir(str(tmp_path)) == ['mounts']


def test_a_missing_dir_is_refused_naming_it(tmp_path):
    with pytest.raises(HostError, match='does not exist'):
        _secret_file.write_secret(str(tmp_path / 'nope'), 'pg_password', 't', 'x')


def test_the_longest_mount_point_decides(tmp_path):
    mounts = tmp_path / 'mounts'
    mounts.write_text('tmpfs / tmpfs rw 0 0\n/dev/sda1 %s ext4 rw 0 0\n' % tmp_path)
    assert _secret_file.fs_type(str(tmp_path / 'x'), str(mounts)) == 'ext4'
    assert _secret_file.fs_type('/elsewhere', str(mounts)) == 'tmpfs'


@pytest.mark.skipif(not os.path.isdir('/dev/shm'), reason='no /dev/shm')
def test_dev_shm_is_taken_as_it_is():
    if _secret_file.fs_type('/dev/shm') not in _secret_file.MEMORY_FS:
        pytest.skip('/dev/shm is no tmpfs here')
    path, dummy = _secret_file.write_secret('/dev/shm', 'unit_test', 'tok-unit', 'x')
    assert _secret_file.take_secret(path) == 'x'
