# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bounded incremental chain end to end: the backup role with the real pg_probackup inside a real Alation
shell, full_every + 2 runs, so the chain wraps once; the older chain leaves the pg staging dir, the archives stay
bounded, and the archive of the new chain restores on its own with the drill."""

import json
import os
import tarfile
import time

import pytest

from playbook import HOST, run_playbook

FULL_EVERY = 3
CATALOG = '/data2/backup/pgbackup'


def catalog_ids(host):
    """The backup ids in the pg staging dir, newest first, as pg_probackup show reports them."""
    out = host.run(['/usr/local/bin/pg_probackup', 'show', '-B', CATALOG, '--instance', 'alation',
                    '--format=json']).stdout
    return [(b['id'], b['backup-mode'], b['status']) for b in json.loads(out)[0]['backups']]


def archived_ids(archive):
    """The pg_probackup backups an archive carries (pgbackup/backups/alation/<id>)."""
    with tarfile.open(archive) as tar:
        parts = (m.name.split('/') for m in tar.getmembers() if m.isdir())
        return sorted(set(p[3] for p in parts if len(p) >= 4 and p[:3] == ['pgbackup', 'backups', 'alation']))


def test_full_every_plus_two_runs_wrap_the_chain_once_and_the_new_chain_restores_alone(alation_host):
    host = alation_host
    if not host.has_pg_probackup:
        pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH): the bounded incremental chain '
                    'is not tested')
    bound = dict(host.role_vars, alation_backup_incremental=True, alation_backup_full_every=FULL_EVERY)
    records, catalogs = [], []
    for run in range(FULL_EVERY + 2):
        if run:
            # Something for each DELTA to carry.
            host.psql('update pgbench_accounts set abalance = abalance + %d where aid %% 7 = %d' % (run, run))
        started = time.time()
        result = run_playbook('backup.yml', bound)
        assert result.rc == 0, result.output
        record = result.records[HOST]
        records.append(record)
        catalogs.append(catalog_ids(host))
        print('run %d: %s %s, archive %s, %d bytes, %.0f s; %s; chain_pruned %s' % (
            run + 1, record['mode'], record['backup_id'], os.path.basename(record['archive']), int(record['size']),
            time.time() - started, record['mode_reason'], record['chain_pruned']))

    ids = [r['backup_id'] for r in records]
    assert [r['mode'] for r in records] == ['FULL', 'DELTA', 'DELTA', 'FULL', 'DELTA'], [
        r['mode_reason'] for r in records]
    assert records[0]['mode_reason'] == 'the catalog has no backup yet'
    assert records[2]['mode_reason'].startswith('DELTA on %s: 3 of 3 in this chain, whose FULL %s' % (ids[1], ids[0]))
    assert records[3]['mode_reason'] == ('FULL: the chain since FULL %s already has 2 incrementals (full_every 3)'
                                         % ids[0])
    assert records[4]['mode_reason'].startswith('DELTA on %s: 2 of 3 in this chain' % ids[3])
    # The older chain left the catalog by pg_probackup's own delete, once the new FULL was OK.
    assert [r['chain_pruned'] for r in records] == [[], [], [], ids[:3], []]
    assert catalogs[2] == [(ids[2], 'DELTA', 'OK'), (ids[1], 'DELTA', 'OK'), (ids[0], 'FULL', 'OK')]
    assert catalogs[3] == [(ids[3], 'FULL', 'OK')], 'one chain only after the new FULL'
    assert catalogs[4] == [(ids[4], 'DELTA', 'OK'), (ids[3], 'FULL', 'OK')]
    # Each archive carries the chain of its own backup only.
    archives = [r['archive'] for r in records]
    assert archived_ids(archives[2]) == sorted(ids[:3])
    assert archived_ids(archives[3]) == [ids[3]]
    assert archived_ids(archives[4]) == sorted(ids[3:])

    sizes = [int(r['size']) for r in records]
    print('archive sizes (bytes): %s' % ', '.join(
        '%s %s %d' % (os.path.basename(a)[:12], r['mode'], s) for a, r, s in zip(archives, records, sizes)))
    print('archive sizes (MB): %s' % ', '.join('%.2f' % (s / 1e6) for s in sizes))
    # Bounded: the 3rd holds FULL + 2 DELTAs, the 5th FULL + 1 DELTA; without the bound it would hold FULL + 4.
    assert sizes[4] <= sizes[2] * 1.05, sizes
    assert sizes[3] <= sizes[2], sizes

    # The archive taken after the new FULL restores on its own: the drill unpacks only that archive, which holds
    # the new FULL and the DELTA on it and nothing of the older chain (gone from the catalog and the archive).
    drill = run_playbook('verify_backup.yml', {'alation_restore_root': host.root,
                                               'alation_restore_archive': archives[4]})
    assert drill.rc == 0, drill.output
    record = drill.records[HOST]
    assert record['archive'] == archives[4] and record['backup_mode'] == 'DELTA', record
    assert set(c['result'] for c in record['checks'].values()) == {'ok'}, record['checks']
