# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alation.backup.pg_basebackup against a real PostgreSQL 15 cluster."""

import os
import pwd

import pytest

from modrun import run_module


@pytest.fixture
def dest(pg_cluster, scratch):
    """An empty pg staging dir owned by the database OS user, as the role makes it."""
    path = os.path.join(scratch, 'pgbackup')
    os.makedirs(path, mode=0o700)
    pw = pwd.getpwnam(pg_cluster.os_user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def args_for(cluster, dest, **extra):
    return dict(dict(dest=dest, host=cluster.host, port=cluster.port, user=cluster.db_user,
                     bindir='/usr/lib/postgresql/15/bin', run_as=cluster.os_user), **extra)


def test_writes_tar_base_and_streamed_wal(pg_cluster, dest):
    result = run_module('pg_basebackup', args_for(pg_cluster, dest))
    assert not result['failed'], result
    assert result['changed'] and result['mode_taken'] == 'FULL'
    assert {'base.tar', 'pg_wal.tar', 'backup_manifest'} <= set(result['files'])
    assert result['bytes'] == sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest))
    assert all('PGPASSWORD' not in c and 'secret' not in c for c in result['executed_commands'])


def test_password_travels_in_the_environment_only(pg_cluster, dest):
    result = run_module('pg_basebackup', args_for(pg_cluster, dest, password='s3cret-pw'))
    assert not result['failed'], result
    assert not any('s3cret-pw' in c for c in result['executed_commands'])


def test_empties_a_dest_that_holds_an_earlier_backup(pg_cluster, dest):
    with open(os.path.join(dest, 'base.tar'), 'w') as f:
        f.write('an earlier backup')
    result = run_module('pg_basebackup', args_for(pg_cluster, dest))
    assert not result['failed'], result
    assert result['emptied']['removed_files'] == 1
    assert os.path.getsize(os.path.join(dest, 'base.tar')) > 1000


def test_server_down_is_a_clear_failure(pg_cluster, scratch):
    pg_cluster.stop()
    result = run_module('pg_basebackup', args_for(pg_cluster, os.path.join(scratch, 'pgbackup')))
    assert result['failed'] and result['msg'].startswith('pg_basebackup failed with exit code 1: ')
    assert 'connection' in result['msg'].lower()


def test_check_mode_runs_nothing(pg_cluster, scratch):
    dest = os.path.join(scratch, 'pgbackup')
    result = run_module('pg_basebackup', args_for(pg_cluster, dest), check=True)
    assert not result['failed'] and result['changed']
    assert not os.path.exists(dest)


def test_missing_program_says_where_it_looked(pg_cluster, scratch):
    result = run_module('pg_basebackup', args_for(pg_cluster, os.path.join(scratch, 'x'), bindir='/nonexistent/bin'))
    assert result['failed'] and '/nonexistent/bin' in result['msg']
