# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The summary line carries the record's warnings (encryption with incremental backups keeps a plain catalog)."""

from ansible_collections.alation.backup.plugins.filter import report

from .test_report import ARCHIVE, ok_record

PLAIN = ('the archive is encrypted, but the pg staging dir /data2/backup/pgbackup is kept between runs '
         '(alation_backup_incremental) and holds the database backup unencrypted on this host')


def test_each_warning_follows_the_line():
    line = report.summary_line(ok_record(warnings=[PLAIN, 'second\nline']))
    assert line == ('alation-prod-1: OK DELTA 12.7 GiB in 14m02s -> /data2/backup/%s; WARNING: %s; WARNING: second line'
                    % (ARCHIVE, PLAIN))


def test_a_failed_line_keeps_its_warning_too():
    line = report.summary_line(dict(host='h', result='failed', error='Archive | Pack: boom', warnings=[PLAIN]))
    assert line == 'h: FAILED archive: boom; WARNING: ' + PLAIN


def test_no_warnings_no_suffix():
    assert 'WARNING' not in report.summary_line(ok_record(warnings=[]))
    assert 'WARNING' not in report.summary_line(ok_record())
