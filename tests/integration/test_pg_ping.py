# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alation.backup.pg_ping against a real PostgreSQL 15: the replication connection the backup needs."""

import os

from modrun import run_module


def args_for(cluster, **extra):
    return dict(dict(host=cluster.host, port=cluster.port, user=cluster.db_user, run_as=cluster.os_user), **extra)


def test_reaches_the_server_and_opens_a_replication_connection(pg_cluster):
    result = run_module('pg_ping', args_for(pg_cluster))
    assert not result['failed'], result
    assert result['server_version_num'] >= 150000 and result['replication'] is True
    assert result['changed'] is False


def test_a_missing_replication_entry_names_the_line_to_add(pg_cluster):
    hba = os.path.join(pg_cluster.pgdata, 'pg_hba.conf')
    with open(hba, 'w') as f:
        f.write('local all all trust\nhost all all 127.0.0.1/32 trust\n')
    pg_cluster.as_owner([pg_cluster.bin('pg_ctl'), '-D', pg_cluster.pgdata, 'reload'])
    result = run_module('pg_ping', args_for(pg_cluster))
    assert result['failed']
    assert 'cannot open a replication connection' in result['msg']
    assert '"host replication %s 127.0.0.1/32 scram-sha-256"' % pg_cluster.db_user in result['msg']
    assert 'no pg_hba.conf entry for replication connection' in result['msg']
    # Without the replication check the same server is fine.
    assert not run_module('pg_ping', args_for(pg_cluster, replication=False))['failed']


def test_a_server_that_is_down_is_a_clear_failure(pg_cluster):
    result = run_module('pg_ping', args_for(pg_cluster, port=1))
    assert result['failed'] and result['msg'].startswith('cannot connect to PostgreSQL: psql on database postgres')


def test_the_real_pg_probackup_is_checked_against_the_server(pg_cluster, pg_probackup_bin):
    result = run_module('pg_ping', args_for(pg_cluster, pg_probackup=True, pg_probackup_binary=pg_probackup_bin))
    assert not result['failed'], result
    found = result['pg_probackup']
    assert found['binary'] == pg_probackup_bin and found['pg_major'] == str(result['server_version_num'] // 10000)
    assert '%s --version' % pg_probackup_bin in ' '.join(result['executed_commands'])


def test_a_missing_pg_probackup_is_named(pg_cluster, scratch):
    missing = os.path.join(scratch, 'no', 'pg_probackup')
    result = run_module('pg_ping', args_for(pg_cluster, pg_probackup=True, pg_probackup_binary=missing))
    assert result['failed'] and result['server_version_num'] >= 150000
    assert result['msg'].startswith('%s is not an executable file' % missing), result['msg']
    assert 'set pg_probackup_binary (alation_backup_pg_probackup_binary) to its path' in result['msg']
