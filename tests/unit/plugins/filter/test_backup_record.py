# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's record built from what its steps returned (report.yml passes them to backup_record)."""

import os

import pytest

from ansible_collections.alation.backup.plugins.filter import report

ARCHIVE = '/opt/alation/alation/data2/backup/202611301402_5-17-0-116556_alation_backup.tar.gz'
SETTINGS = dict(engine='pg_probackup', incremental=False, encrypt_recipient='', copy_to='',
                pg_staging_dir='/data2/backup/pgbackup')


def steps(**kw):
    s = dict(error='', info=dict(version='5.17.0.116556', paths=dict(backup_storage_dir=dict(path='/data2/backup'))),
             lock=dict(lease=dict(path='/x/.alation_backup.lock', token='t')),
             space=dict(removed=[dict(path='/a')], freed_bytes=10),
             stage=dict(duration_s=0.5),
             db=dict(engine='pg_probackup', mode='FULL', reason='incremental backups are off', backup_id='T1',
                     recovered={}, pruned=[], duration_s=3.25),
             archive=dict(path=ARCHIVE, size=1234, sha256='ab', compressor='pigz', duration_s=2),
             retention=dict(removed=[dict(path='/b')], freed_bytes=5,
                            kept=[dict(path=ARCHIVE, rules=['newest good', 'this run', 'count', 'daily 2026-12-01'])]),
             cleanup=dict(duration_s=0.25), copy={})
    s.update(kw)
    return s


def test_a_good_run():
    r = report.backup_record(steps(), 'h1', 100.0, 112.5, SETTINGS)
    assert r['result'] == 'ok' and r['host'] == 'h1'
    assert (r['mode'], r['backup_id'], r['engine'], r['size'], r['compressor']) == ('FULL', 'T1', 'pg_probackup', 1234, 'pigz')
    assert r['archive_shell_path'] == '/data2/backup/' + os.path.basename(ARCHIVE)
    assert r['durations_s'] == dict(stage=0.5, database=3.25, archive=2.0, cleanup=0.25, total=6.0, wall=12.5)
    # Retention before the backup (the space needed it) and after, together.
    # Retention before the backup (the space needed it) and after, together; kept says which rule kept each archive.
    assert r['retention'] == dict(removed=['/a', '/b'], freed_bytes=15, refused='',
                                  kept=[dict(path=ARCHIVE, rules=['newest good', 'this run', 'count', 'daily 2026-12-01'])])
    assert r['copy'] == dict(result='off', dest='', bytes=0, duration_s=0, error='')
    assert report.summary_line(r).startswith('h1: OK FULL 1.2 KiB in 6.0s -> /data2/backup/')


def test_steps_that_never_ran():
    # Failed in preflight: every later step registered nothing (or was reset to {}).
    r = report.backup_record(dict(error='Preflight | Check that PostgreSQL ...: refused', info={}, lock={}, db=None),
                             'h1', 100.0, 101.0, dict(SETTINGS, copy_to='backup@b:/x'))
    assert r['result'] == 'failed' and r['archive'] == '' and r['archive_shell_path'] == ''
    assert r['engine'] == 'pg_probackup' and r['mode'] == ''
    assert r['durations_s']['total'] == 0 and r['copy']['result'] == 'skipped'


def test_unreachable_and_skipped():
    r = report.backup_record(dict(error='', info=dict(unreachable=True, msg='ssh: no route')), 'h1', 1, 2, SETTINGS)
    assert r['result'] == 'unreachable'
    fresh = dict(path='/x/a.tar.gz', age_s=60, ignored=[dict(path='/x/b.sha256', reason='lone')], future_archives=['f'])
    r = report.backup_record(steps(lock=dict(skip_reason='a.tar.gz is younger', fresh=fresh), db={}, archive={}),
                             'h1', 1, 2, SETTINGS)
    assert r['result'] == 'skipped' and r['skipped_reason'] == 'a.tar.gz is younger'
    assert r['ignored_archives'] == fresh['ignored'] and r['future_archives'] == ['f']


def test_warnings_and_the_lock_history():
    lock = dict(lease=dict(path='p', token='t'), taken_over=dict(description='run 7 on h1, silent 900 s'),
                previous_cancel=dict(message='stopped at 10:02: the controller stopped polling'))
    r = report.backup_record(steps(lock=lock), 'h1', 1, 2, dict(SETTINGS, encrypt_recipient='ops', incremental=True))
    assert r['lock_taken_over'] == 'run 7 on h1, silent 900 s'
    assert r['previous_cancel'].startswith('stopped at 10:02')
    assert len(r['warnings']) == 1 and 'unencrypted' in r['warnings'][0]


def test_report_path_problem(tmp_path):
    assert report.report_path_problem('') == ''
    assert report.report_path_problem(str(tmp_path / 'r.json')) == ''
    problem = report.report_path_problem(str(tmp_path / 'missing' / 'r.json'), 'alation_backup_report_path')
    assert 'cannot write alation_backup_report_path ' in problem and 'does not exist' in problem
    (tmp_path / 'd').mkdir()
    # A directory, or a path ending with '/': a directory of reports, one file a run.
    assert report.report_path_problem(str(tmp_path / 'd')) == ''
    assert report.report_path_problem(str(tmp_path / 'd') + '/') == ''
    problem = report.report_path_problem(str(tmp_path / 'nodir') + '/', 'alation_backup_report_path')
    assert 'the directory of reports %s/nodir does not exist' % tmp_path in problem
    (tmp_path / 'f').write_text('x')
    assert 'is not a directory' in report.report_path_problem(str(tmp_path / 'f') + '/')


def test_report_path_problem_a_directory_it_may_not_write(tmp_path):
    (tmp_path / 'ro').mkdir()
    os.chmod(str(tmp_path / 'ro'), 0o500)
    try:
        if os.access(str(tmp_path / 'ro'), os.W_OK):
            pytest.skip('root may write any directory')
        assert 'is not writable' in report.report_path_problem(str(tmp_path / 'ro'))
    finally:
        os.chmod(str(tmp_path / 'ro'), 0o700)


DRILL_SETTINGS = dict(SETTINGS, drill_every_days=7)
DUE = dict(lease=dict(path='/x/.alation_backup.lock', token='t'), drill_due=True, drill_reason='no good drill is recorded')
DRILLED = dict(result='ok', reason='', archive=ARCHIVE, duration_s=41.234, at='2026-12-03T17:30:00Z')


def test_the_drill_off_and_not_due_say_nothing_on_the_line():
    r = report.backup_record(steps(), 'h1', 1, 2, SETTINGS)
    assert r['drill'] == dict(result='off', reason='', archive='', duration_s=0, at='')
    lock = dict(DUE, drill_due=False, drill_reason='the last good drill (2026-12-01T00:00:00Z) is younger than 7 days')
    r = report.backup_record(steps(lock=lock), 'h1', 1, 2, DRILL_SETTINGS)
    assert r['drill']['result'] == 'not due' and 'younger than 7 days' in r['drill']['reason']
    assert 'drill' not in report.summary_line(r) and r['warnings'] == []


def test_a_good_drill_ends_the_line():
    r = report.backup_record(steps(lock=DUE, drill=DRILLED), 'h1', 1, 2, DRILL_SETTINGS)
    assert r['result'] == 'ok' and r['drill'] == dict(DRILLED, duration_s=41.23)
    assert report.summary_line(r).startswith('h1: OK FULL 1.2 KiB in 6.0s -> /data2/backup/')
    assert report.summary_line(r).endswith('; drill OK')


def test_a_drill_short_of_scratch_space_is_a_warning_and_the_backup_stands():
    drill = dict(result='skipped', reason='not enough free space for unpacking x in /data2/restore_drill: ...', archive=ARCHIVE)
    r = report.backup_record(steps(lock=DUE, drill=drill), 'h1', 1, 2, DRILL_SETTINGS)
    assert r['result'] == 'ok' and r['warnings'] == [report.DRILL_SKIPPED + drill['reason']]
    line = report.summary_line(r)
    assert line.startswith('h1: OK FULL') and line.endswith('; drill SKIPPED: ' + drill['reason'])
    assert 'WARNING' not in line


def test_a_failed_drill_fails_the_run_and_keeps_the_archive_on_the_line():
    drill = dict(result='failed', reason='rebuild: pg_probackup restore failed', archive=ARCHIVE, duration_s=3)
    r = report.backup_record(steps(lock=DUE, drill=drill), 'h1', 1, 2, DRILL_SETTINGS)
    assert r['result'] == 'failed' and r['archive'] == ARCHIVE and r['drill']['result'] == 'failed'
    assert r['error'] == ('drill: the archive %s was written and verified, but the drill did not restore it: '
                          'rebuild: pg_probackup restore failed' % ARCHIVE)
    line = report.summary_line(r)
    assert line.startswith('h1: FAILED FULL 1.2 KiB in 6.0s -> /data2/backup/') and '(written, but it did not restore)' in line
    assert line.endswith('; drill FAILED: rebuild: pg_probackup restore failed')
    # A run that failed elsewhere is not dressed as a drill failure.
    r = report.backup_record(steps(lock=DUE, drill=drill, error='Retention | Remove: EIO'), 'h1', 1, 2, DRILL_SETTINGS)
    assert report.summary_line(r).startswith('h1: FAILED retention: EIO; drill: the archive')


def test_the_drill_that_could_not_run():
    r = report.backup_record(steps(lock=DUE, error='Archive | Pack: disk full'), 'h1', 1, 2, DRILL_SETTINGS)
    assert r['drill']['result'] == 'skipped' and 'did not complete' in r['drill']['reason']
    assert 'drill' not in report.summary_line(r)
    r = report.backup_record(steps(lock=DUE), 'h1', 1, 2, DRILL_SETTINGS, check_mode=True)
    assert r['drill']['result'] == 'skipped' and r['drill']['reason'].startswith('check mode: a run now would drill')
    r = report.backup_record(steps(lock=dict(skip_reason='a.tar.gz is younger')), 'h1', 1, 2, DRILL_SETTINGS)
    assert r['drill']['result'] == 'skipped' and r['result'] == 'skipped'
