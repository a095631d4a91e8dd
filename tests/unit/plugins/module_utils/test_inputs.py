# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the host says about a run's inputs: extra paths, PGDATA, dirs that cannot be written, room for the extra paths."""

import os
import socket

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _alation, _inputs


def layout(tmp_path, **given):
    root = str(tmp_path)
    for d in ('data2/tmp', 'data2/backup', 'data1/pgsql/data', 'etc'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, 'data1/pgsql/data/PG_VERSION'), 'w') as f:
        f.write('15\n')
    return root, _alation.shell_paths(root, None, use_chroot=False, **given)


def extra(root, *shell_paths):
    return [_alation.path_entry(root, p, False, 'extra') for p in shell_paths]


def test_the_defaults_are_fine(tmp_path):
    root, paths = layout(tmp_path)
    with open(os.path.join(root, 'etc/site.conf'), 'w') as f:
        f.write('x')
    assert _inputs.host_problems(paths, extra(root, '/etc/site.conf', '/etc')) == []


def test_a_missing_extra_path_is_named(tmp_path):
    root, paths = layout(tmp_path)
    problems = _inputs.extra_path_problems(extra(root, '/etc/nope.conf'), paths)
    assert len(problems) == 1
    assert 'the extra path /etc/nope.conf does not exist' in problems[0]
    assert 'alation_backup_extra_paths' in problems[0]


def test_a_fifo_a_socket_and_a_dangling_link_cannot_be_copied(tmp_path):
    root, paths = layout(tmp_path)
    os.mkfifo(os.path.join(root, 'etc/fifo'))
    os.makedirs(os.path.join(root, 'etc/app'))
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(root, 'etc/app/sock'))
    os.symlink('/nowhere', os.path.join(root, 'etc/app/dangling'))
    os.symlink(os.path.join(root, 'etc/fifo'), os.path.join(root, 'etc/link_to_fifo'))
    try:
        problems = _inputs.extra_path_problems(extra(root, '/etc/fifo', '/etc/app', '/etc/link_to_fifo'), paths)
    finally:
        s.close()
    assert 'the extra path /etc/fifo is a FIFO (named pipe)' in problems[0]
    assert '/etc/app/dangling (a symlink to a missing /nowhere), /etc/app/sock (a socket)' in problems[1]
    assert 'the extra path /etc/link_to_fifo is a FIFO' in problems[2]


@pytest.mark.parametrize('path, rule', [
    ('/data2', 'is or contains the staging dir /data2/tmp'),
    ('/', 'is or contains the staging dir /data2/tmp'),
    ('/data2/tmp/x', 'lies inside the staging dir /data2/tmp'),
    ('/data2/backup/old.tar.gz', 'lies inside the backup storage dir /data2/backup'),
    ('/data1/pgsql', 'is or contains the PGDATA /data1/pgsql/data'),
    ('/data1/pgsql/data/postgresql.conf', 'lies inside the PGDATA /data1/pgsql/data'),
])
def test_an_extra_path_over_a_dir_of_the_run_is_refused(tmp_path, path, rule):
    root, paths = layout(tmp_path)
    problems = _inputs.extra_path_problems(extra(root, path), paths)
    assert problems and rule in problems[0]


def test_pgdata_must_be_a_data_directory(tmp_path):
    root, paths = layout(tmp_path, pgdata='/data1/pgsql')
    problems = _inputs.pgdata_problems(paths['pgdata'])
    assert 'PGDATA /data1/pgsql is not a PostgreSQL data directory: it has no PG_VERSION' in problems[0]
    assert '/data1/pgsql/data looks like one' in problems[0]
    root, paths = layout(tmp_path, pgdata='/data1/nope')
    assert 'PGDATA /data1/nope does not exist' in _inputs.pgdata_problems(paths['pgdata'])[0]
    root, paths = layout(tmp_path, pgdata='/data1/pgsql/data/PG_VERSION')
    assert 'is not a directory' in _inputs.pgdata_problems(paths['pgdata'])[0]


def test_a_storage_dir_that_is_a_file_is_named(tmp_path):
    root, paths = layout(tmp_path, backup_storage_dir='/data2/file')
    with open(os.path.join(root, 'data2/file'), 'w') as f:
        f.write('x')
    problems = _inputs.writable_problems(paths)
    assert problems == ['the backup storage dir /data2/file is not a directory (host path %s/data2/file): remove the '
                        'file or choose another dir' % root]


def test_a_read_only_or_immutable_dir_is_named(tmp_path, monkeypatch):
    root, paths = layout(tmp_path)

    class Ro(object):
        f_flag = os.ST_RDONLY

    real = os.statvfs
    monkeypatch.setattr(os, 'statvfs', lambda p: Ro() if p.endswith('/data2/backup') else real(p))
    problems = _inputs.writable_problems(paths, names=('backup_storage_dir',))
    assert problems == ['the backup storage dir /data2/backup is on a read-only file system (host path %s/data2/backup)'
                        ': remount it read-write, or choose a dir on a writable disk' % root]
    monkeypatch.setattr(os, 'statvfs', real)
    monkeypatch.setattr(_inputs, 'inode_flags', lambda p: _inputs.FS_IMMUTABLE_FL if p.endswith('data2') else 0)
    problems = _inputs.writable_problems(_alation.shell_paths(root, None, use_chroot=False, staging_dir='/data2/new'))
    assert problems == ['the staging dir /data2/new cannot be created (it does not exist yet; %s/data2, where it '
                        'would be made, is immutable (chattr +i)): run chattr -i %s/data2, or choose another dir'
                        % (root, root)]


def test_inode_flags_of_a_plain_dir(tmp_path):
    assert _inputs.inode_flags(str(tmp_path)) & _inputs.FS_IMMUTABLE_FL == 0
    assert _inputs.inode_flags(str(tmp_path / 'missing')) == 0


def test_extra_paths_that_do_not_fit_the_staging_dir(tmp_path, monkeypatch):
    root, paths = layout(tmp_path)
    with open(os.path.join(root, 'etc/big'), 'wb') as f:
        f.write(b'x' * 4096)
    with open(os.path.join(root, 'data2/tmp/leftover'), 'wb') as f:
        f.write(b'x' * 1000)
    monkeypatch.setattr(_inputs, 'free_bytes', lambda p: 3100)
    assert _inputs.staging_room_problems(paths['staging_dir'], extra(root, '/etc/big')) == []
    monkeypatch.setattr(_inputs, 'free_bytes', lambda p: 2000)
    problems = _inputs.staging_room_problems(paths['staging_dir'], extra(root, '/etc/big'))
    assert problems[0].startswith('the extra paths (4096 bytes, 4.0 KiB) do not fit the staging dir /data2/tmp: '
                                  '3000 bytes (2.9 KiB) free on its file system once it is emptied')
