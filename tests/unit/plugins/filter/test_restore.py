# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore role's record, built from what its steps registered."""

import pytest

from ansible_collections.alation.backup.plugins.filter import restore

ARCHIVE = '/opt/alation/alation/data2/backup/202611301402_5-17-0-116556_alation_backup.tar.gz'
SHA = 'a' * 64
MANIFEST = dict(engine='pg_probackup', backup_id='TPH9ID', backup_mode='FULL', databases={'postgres': {'tables': 4}},
                alation_version='5.17.0.116556', created_utc='2026-11-30T14:02:00Z')
HEAD = dict(path=ARCHIVE, size=1000, sha256=SHA, sha256_recorded=SHA, duration_s=0.5, manifest=MANIFEST)


def drill(**kw):
    """A drill that went through every step."""
    run = dict(
        mode='drill', check_mode=False, amcheck=True, heapallindexed=False, head=HEAD, manifest=MANIFEST,
        extract=dict(sources=[dict(arcname='tmp', files=2), dict(arcname='pgbackup', files=10)], bytes=500,
                     dest='/scratch/extracted', duration_s=1.5),
        rebuild=dict(pgdata='/scratch/pgdata', duration_s=2.0, verified='pg_probackup restore', moved_aside=None),
        files={}, server=dict(pg_version='15', port=5999, duration_s=0.2, socket_dir='/scratch/socket',
                              consistent=['2026-12-03 LOG:  consistent recovery state reached at 0/3000168']),
        inventory=dict(databases={'postgres': {'tables': 4}},
                       comparison=dict(databases=dict(result='ok', detail='all 1 databases recorded exist: postgres'),
                                       table_counts=dict(result='ok', detail='postgres: 4'))),
        amcheck_result=dict(databases=['postgres', 'template1'], available=True), cleanup=dict(duration_s=0.1),
        failure={}, cleanup_error='', pgdata_path='/opt/alation/alation/scratch/pgdata', files_dest_path='')
    run.update(kw)
    return run


@pytest.mark.parametrize('name, result, step', [
    ('Rebuild | Wait for the rebuild, showing its progress', None, 'rebuild'),
    ('Start | Start PostgreSQL on the rebuilt data directory', None, 'consistent'),
    ('Check | Fail when a check failed', None, 'check'),
    ('Extract | Take the scratch dir\'s lock', None, 'extract'),
    # The one read-only call for the archive, its sha256 and its manifest: the step it reached.
    ('Find | Take the archive', {'msg': 'no archive in /data2/backup'}, 'find'),
    ('Find | Take the archive', {'path': ARCHIVE, 'msg': 'the .sha256 file is missing'}, 'sha256'),
    ('Find | Take the archive', dict(HEAD, sha256='b' * 64), 'sha256'),
    ('Find | Take the archive', dict(HEAD, manifest=None, msg='is encrypted'), 'extract'),
])
def test_a_failed_task_belongs_to_its_step(name, result, step):
    assert restore.restore_step(name, result) == step


def test_a_drill_through_every_step_is_ok_with_each_check_said():
    record = restore.restore_record(drill(), 'h1', 9.517)
    assert record['result'] == 'ok' and record['error'] == '' and record['failed_check'] == ''
    assert list(record['checks']) == ['sha256', 'extract', 'rebuild', 'consistent', 'databases', 'amcheck', 'table_counts']
    assert {c['result'] for c in record['checks'].values()} == {'ok'}
    assert record['checks']['sha256']['detail'] == 'matches its .sha256 file (%s, hashed in 0.5 s)' % SHA
    assert record['checks']['extract']['detail'] == 'tmp and pgbackup: 12 files, 500 bytes unpacked and matching the manifest, in 1.5 s'
    assert record['checks']['rebuild']['detail'] == ('restored pg_probackup backup TPH9ID (FULL) into /scratch/pgdata in 2.0 s; '
                                                     'files checked by pg_probackup restore')
    assert record['checks']['consistent']['detail'] == ('PostgreSQL 15 on 127.0.0.1:5999 started in 0.2 s: '
                                                        'consistent recovery state reached at 0/3000168')
    assert record['checks']['amcheck']['detail'] == 'no corruption in postgres, template1 (heap, B-tree indexes)'
    assert record['duration_s'] == 9.52 and record['sha256'] == SHA and record['databases_found'] == {'postgres': {'tables': 4}}
    assert restore.restore_summary_line(record) == (
        'h1: DRILL OK 202611301402_5-17-0-116556_alation_backup.tar.gz in 9.52 s [sha256=ok extract=ok rebuild=ok '
        'consistent=ok databases=ok amcheck=ok table_counts=ok]')


def test_a_failed_step_is_its_check_and_the_later_ones_not_reached():
    run = drill(rebuild=dict(failed=True, msg='pg_verifybackup: missing file'), server={}, inventory={}, amcheck_result={},
                failure=dict(step='rebuild', msg='pg_verifybackup: missing file'), cleanup_error='busy mount')
    record = restore.restore_record(run, 'h1', 3)
    assert record['result'] == 'failed' and record['failed_check'] == 'rebuild' and record['failed_step'] == 'rebuild'
    assert record['error'] == 'rebuild: pg_verifybackup: missing file; cleanup: busy mount'
    assert record['checks']['rebuild'] == {'result': 'failed', 'detail': 'pg_verifybackup: missing file'}
    assert record['checks']['consistent'] == {'result': 'skipped', 'detail': 'not reached'}
    assert record['databases_found'] == {}
    assert restore.restore_summary_line(record).endswith('] rebuild: pg_verifybackup: missing file; cleanup: busy mount')


def test_the_checks_all_run_and_the_step_names_each_that_failed():
    run = drill(inventory=dict(failed=True, msg='cannot connect'), amcheck_result=dict(failed=True, msg='2 problems'))
    assert restore.restore_failed_checks(run) == ('databases failed: cannot connect; amcheck failed: 2 problems; '
                                                  'table_counts failed: cannot connect')
    assert restore.restore_failed_checks(drill()) == ''
    assert restore.restore_checks(drill(amcheck=False))[0]['amcheck'] == {
        'result': 'skipped', 'detail': 'turned off (alation_restore_amcheck)'}


def test_check_mode_says_what_it_would_do_and_checks_nothing():
    run = drill(mode='restore', check_mode=True, rebuild=dict(pgdata='/data1/data', moved_aside='/data1/data.before-restore-X'),
                extract=dict(sources=[dict(arcname='pgbackup', files=10)], bytes=500, dest='/scratch/extracted'),
                files=dict(sources=[dict(arcname='tmp', files=2)], bytes=9, dest='/files', moved_aside=None),
                server=dict(socket_dir='/scratch/socket'), inventory=dict(skipped=True), amcheck_result=dict(skipped=True),
                pgdata_path='/opt/alation/alation/data1/data', files_dest_path='/opt/alation/alation/files')
    checks, would = restore.restore_checks(run)
    assert {n: c['result'] for n, c in checks.items()} == dict(
        sha256='ok', extract='skipped', rebuild='skipped', files='skipped', consistent='skipped', databases='skipped',
        amcheck='skipped', table_counts='skipped')
    assert checks['databases']['detail'] == 'check mode'
    assert would == ['unpack pgbackup: 10 files, 500 bytes of %s into /scratch/extracted' % ARCHIVE,
                     'restore pg_probackup backup TPH9ID (FULL) into /data1/data',
                     'move /opt/alation/alation/data1/data aside to /data1/data.before-restore-X',
                     'put the staging files (2 files, 9 bytes into /files)']
    record = restore.restore_record(run, 'h1', 1)
    assert restore.restore_summary_line(record).startswith('h1: CHECK MODE RESTORE OK ')
