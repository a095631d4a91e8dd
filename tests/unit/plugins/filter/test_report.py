# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The summary's filters: a record for every host, and one line a host."""

import pytest

from ansible_collections.alation.backup.plugins.filter import report

ARCHIVE = '202611301402_5-17-0-116556_alation_backup.tar.gz'


def ok_record(**kw):
    record = dict(host='alation-prod-1', result='ok', check_mode=False, mode='DELTA', size=int(12.7 * 1024 ** 3),
                  archive='/opt/alation/alation/data2/backup/' + ARCHIVE, archive_shell_path='/data2/backup/' + ARCHIVE,
                  durations_s=dict(total=842.3), error='', skipped_reason='')
    record.update(kw)
    return record


def test_ok_line_as_the_issue_shows_it():
    assert report.summary_line(ok_record()) == \
        'alation-prod-1: OK DELTA 12.7 GiB in 14m02s -> /data2/backup/' + ARCHIVE


def test_check_mode_says_check_and_leaves_out_what_it_did_not_write():
    line = report.summary_line(ok_record(check_mode=True, size=0, mode='FULL', durations_s=dict(total=1.2)))
    assert line == 'alation-prod-1: CHECK FULL in 1.2s -> /data2/backup/' + ARCHIVE


def test_the_host_path_when_there_is_no_shell_path():
    line = report.summary_line(ok_record(archive_shell_path=''))
    assert line.endswith('-> /opt/alation/alation/data2/backup/' + ARCHIVE)


@pytest.mark.parametrize('error, line', [
    ('Database | Wait for pg_basebackup, showing its progress: cannot connect to PostgreSQL\n  at 127.0.0.1',
     'h: FAILED database: cannot connect to PostgreSQL at 127.0.0.1'),
    ('cleanup: the staging dir is busy', 'h: FAILED cleanup: the staging dir is busy'),
    ('something odd', 'h: FAILED something odd'),
])
def test_failed_names_the_step_and_the_error_on_one_line(error, line):
    assert report.summary_line(dict(host='h', result='failed', error=error)) == line


def test_a_long_error_is_cut():
    line = report.summary_line(dict(host='h', result='failed', error='Archive | Pack: ' + 'x' * 1000))
    assert line.startswith('h: FAILED archive: xxx') and line.endswith('...') and len(line) < 330


def test_skipped_unreachable_and_not_run():
    assert report.summary_line(dict(host='h', result='skipped', skipped_reason='A is younger than 24 h')) == \
        'h: SKIPPED A is younger than 24 h'
    assert report.summary_line(dict(host='h', result='unreachable',
                                    error='Connect | Reach the host and its Python: Failed to connect')) == \
        'h: UNREACHABLE Failed to connect'
    assert report.summary_line(dict(host='h', result='not run', error=report.NEVER)) == 'h: NOT RUN ' + report.NEVER


def test_run_records_has_one_record_per_host_in_order():
    own = ok_record(host='b')
    records = report.run_records([{}, own, None], ['a', 'b', 'c'], ['1764500000.0', '1764500000.0', ''], True)
    assert [r['host'] for r in records] == ['a', 'b', 'c']
    assert records[1] is own
    assert records[0]['result'] == 'unreachable' and records[0]['error'] == report.LOST
    assert records[2]['result'] == 'not run' and records[2]['error'] == report.NEVER
    assert records[0]['check_mode'] is True and records[0]['durations_s'] == {}
    # Lists shorter than the hosts (nothing known at all): not run.
    assert [r['result'] for r in report.run_records([], ['x'])] == ['not run']


def test_the_filters_are_registered():
    assert sorted(report.FilterModule().filters()) == ['backup_record', 'report_path_problem', 'run_records', 'summary_line']
