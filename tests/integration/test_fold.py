# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules that let the backup role drop tasks (issue 19), run for real against a PostgreSQL 15 cluster:
the database engines make their pg staging dir, start a fresh catalog and count the tables themselves, and
return one shape."""

import os
import pwd
import stat

import pytest

from modrun import run_module

SHAPE = ('engine', 'mode', 'reason', 'backup_id', 'recovered', 'pruned', 'duration_s')


@pytest.fixture
def storage(scratch):
    """A backup storage dir owned by root: the engines make the pg staging dir in it themselves."""
    path = os.path.join(scratch, 'backup')
    os.mkdir(path, 0o755)
    return path


def owned_private_by(path, user):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == pwd.getpwnam(user).pw_uid


def connection(cluster):
    return dict(host=cluster.host, port=cluster.port, user=cluster.db_user, dbname='postgres', run_as=cluster.os_user)


@pytest.mark.pg_probackup
def test_pg_probackup_makes_the_catalog_counts_and_starts_fresh(pg_cluster, pg_probackup_bin, storage):
    catalog = os.path.join(storage, 'pgbackup')
    args = dict(connection(pg_cluster), catalog=catalog, pgdata=pg_cluster.pgdata, binary=pg_probackup_bin,
                inventory=True)
    first = run_module('pg_probackup', args)
    assert not first['failed'], first['msg']
    assert first['made_catalog_dir'] and owned_private_by(catalog, pg_cluster.os_user)
    assert all(k in first for k in SHAPE) and first['engine'] == 'pg_probackup' and first['mode'] == 'FULL'
    assert first['backup_id'] == first['backup']['id']
    assert first['databases']['postgres'] == {'tables': 4} and first['databases_error'] == ''

    check = run_module('pg_probackup', dict(args, fresh=True), check=True)
    assert not check['failed'] and check['fresh_removed'] and check['mode'] == 'FULL'
    assert os.path.isdir(os.path.join(catalog, 'backups', 'alation', first['backup_id']))

    fresh = run_module('pg_probackup', dict(args, fresh=True, inventory=False))
    assert not fresh['failed'], fresh['msg']
    assert fresh['fresh_removed'] and fresh['mode'] == 'FULL' and fresh['reason'].startswith('fresh: a new catalog')
    assert [b['id'] for b in fresh['backups']] == [fresh['backup_id']] != [first['backup_id']]
    assert owned_private_by(catalog, pg_cluster.os_user) and 'databases' not in fresh


def test_pg_basebackup_makes_its_dest_counts_and_returns_the_shape(pg_cluster, storage):
    dest = os.path.join(storage, 'pgbackup')
    args = dict(connection(pg_cluster), dest=dest, bindir='/usr/lib/postgresql/15/bin', inventory=True)
    result = run_module('pg_basebackup', args)
    assert not result['failed'], result['msg']
    assert owned_private_by(dest, pg_cluster.os_user) and 'base.tar' in result['files']
    assert {k: result[k] for k in SHAPE if k != 'duration_s'} == dict(
        engine='pg_basebackup', mode='FULL', reason='pg_basebackup always takes a full backup',
        backup_id='alation_backup', recovered={}, pruned=[])
    assert result['databases']['postgres'] == {'tables': 4} and result['databases_error'] == ''
    # Again: the earlier backup is emptied out first.
    again = run_module('pg_basebackup', dict(args, inventory=False))
    assert not again['failed'], again['msg']
    assert again['emptied']['removed_files'] == len(result['files'])


def test_preflight_and_cleanup_in_three_calls(scratch):
    """backup_lock makes the storage dir and hands out the lease, space_check makes room with retention under it,
    cleanup empties the staging dir, removes the pg staging dir and releases the lease: each a real module run."""
    import hashlib
    from ansible_collections.alation.backup.plugins.module_utils._archive_names import sidecar_text
    storage = os.path.join(scratch, 'data2', 'backup')
    lock = os.path.join(storage, '.alation_backup.lock')
    taken = run_module('backup_lock', dict(path=lock, run_id='run-1', owner='test', storage_dir=storage,
                                           min_interval=24))
    assert not taken['failed'], taken['msg']
    assert taken['storage_dir_made'] and taken['lease'] == dict(path=lock, token=taken['token'])
    assert stat.S_IMODE(os.lstat(storage).st_mode) == 0o755

    names = ['2024010%d0000_5-17-0-1_alation_backup.tar.gz' % day for day in (1, 2, 3)]
    for name in names:
        data = name.encode() * 1000
        with open(os.path.join(storage, name), 'wb') as f:
            f.write(data)
        with open(os.path.join(storage, name + '.sha256'), 'w') as f:
            f.write(sidecar_text(hashlib.sha256(data).hexdigest(), name, len(data)))
    pgdata = os.path.join(scratch, 'pgdata')
    os.mkdir(pgdata)
    space = run_module('space_check', dict(storage_dir=storage, pgdata=pgdata, keep_count=2, lease=taken['lease']))
    assert not space['failed'] and not space['needs_retention'] and space['removed'] == []
    assert space['reclaimable'] > 2 * len(names[0]) * 1000

    staging = os.path.join(scratch, 'data2', 'tmp')
    os.makedirs(os.path.join(staging, 'stale'))
    pg_staging = os.path.join(storage, 'pgbackup')
    os.makedirs(os.path.join(pg_staging, 'backups', 'alation'))
    os.makedirs(os.path.join(pg_staging, 'wal', 'alation'))
    done = run_module('cleanup', dict(staging_dir=staging, remove_pg_staging=True, pg_staging_dir=pg_staging,
                                      engine='pg_probackup', lease=taken['lease'], chroot=''))
    assert not done['failed'], done['msg']
    assert os.listdir(staging) == [] and not os.path.exists(pg_staging) and done['released']
    assert not os.path.exists(lock)

    # The next run within min_interval skips: the newest archive vouched for is young (just written).
    again = run_module('backup_lock', dict(path=lock, run_id='run-2', owner='test', storage_dir=storage,
                                           min_interval=24))
    assert not again['failed'] and again['lease'] == {} and not os.path.exists(lock)
    assert again['skip_reason'] == '%s is younger than alation_backup_min_interval (24 h)' % names[-1]
