# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The clock, through the backup role in a real Alation shell: a file name's time is only what some clock said.

A clock that ran ahead (a bad NTP source, a VM restored from a snapshot) left archives named in 2031 in the
backup storage dir. Ranked by name they would be the newest three, and with keep_count 3 retention would
remove the archive the run just wrote; the metrics would call a 2031 archive the newest, so a staleness alert
would never fire.
"""

import calendar
import glob
import os
import re
import shutil
import time

import pytest

from playbook import HOST, run_playbook
from restoring import copy_archive, write_sha256

pytest.importorskip('prometheus_client.parser')

from test_metrics import metrics  # noqa: E402  pylint: disable=wrong-import-position

ARCHIVE_RE = re.compile(r'^(?P<ts>\d{12})_5-17-0-116556_alation_backup\.tar\.gz$')
FUTURE = ('203101010000', '203101020000', '203101030000')
DAY = 86400


def archives(host):
    return sorted(p for p in glob.glob(host.path('/data2/backup/*')) if ARCHIVE_RE.match(os.path.basename(p)))


def name_time(path):
    return calendar.timegm(time.strptime(ARCHIVE_RE.match(os.path.basename(path)).group('ts'), '%Y%m%d%H%M'))


def named_in_the_future(archive, scratch, stamps=FUTURE):
    """Valid copies of ``archive`` (each with a .sha256 that matches) named ``stamps`` (by a clock in 2031)."""
    made = []
    for ts in stamps:
        name = os.path.basename(archive).replace(ARCHIVE_RE.match(os.path.basename(archive)).group('ts'), ts)
        staged = os.path.join(scratch, name)
        shutil.copy2(archive, staged)
        write_sha256(staged)
        made.append(copy_archive(staged, os.path.dirname(archive)))
        st = os.stat(archive)
        for path in (made[-1], made[-1] + '.sha256'):
            os.chown(path, st.st_uid, st.st_gid)  # the shell's alationadmin's, as the role leaves its archives
            os.chmod(path, 0o600)
    return made


def test_archives_named_in_the_future_never_push_the_run_s_own_archive_out(alation_host, scratch):
    host = alation_host
    base = dict(host.role_vars, alation_backup_engine='pg_basebackup', alation_backup_keep_count=3)
    first = run_playbook('backup.yml', base)
    assert first.rc == 0, first.output
    [first_archive] = archives(host)
    future = named_in_the_future(first_archive, scratch)
    # The first archive becomes two days old (name, .sha256 and mtime): older than alation_backup_min_interval.
    [earlier] = named_in_the_future(first_archive, scratch, [time.strftime('%Y%m%d%H%M', time.gmtime(time.time() - 2 * DAY))])
    os.utime(earlier, (time.time() - 2 * DAY,) * 2)
    os.unlink(first_archive)
    os.unlink(first_archive + '.sha256')
    snapshot = dict((p, (os.stat(p).st_mtime, os.path.getsize(p))) for p in future + [f + '.sha256' for f in future])

    textfile = os.path.join(scratch, 'textfile')
    os.mkdir(textfile)
    # The freshness guard must not take a 2031 archive (written a minute ago) for a fresh backup and skip.
    run = run_playbook('backup.yml', dict(base, alation_backup_metrics_dir=textfile, alation_backup_min_interval=1))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    own = record['archive']
    assert record['result'] == 'ok' and not record['skipped_reason'], record
    assert own and os.path.basename(own) not in [os.path.basename(f) for f in future]
    assert sorted(i['path'] for i in record['ignored_archives']) == sorted(future), 'passed over, saying why'

    # The run's own archive survives; so does the earlier one (the future ones do not count toward keep_count).
    assert archives(host) == sorted([earlier, own] + future)
    assert os.path.isfile(own + '.sha256')
    assert record['retention']['removed'] == []
    # The future ones are untouched, named in the record and in a warning.
    assert dict((p, (os.stat(p).st_mtime, os.path.getsize(p))) for p in snapshot) == snapshot
    assert sorted(record['future_archives']) == sorted(future), record
    assert run.output.count('named more than an hour ahead of this host') == 1, 'one warning, however many steps'
    assert all(f in run.output for f in future)

    # The metrics never take a 2031 name for the newest: the newest is the run's own archive.
    m = metrics(os.path.join(textfile, 'alation_backup.prom'))
    assert m[('future_archives', ())] == 3
    assert m[('newest_archive_timestamp_seconds', ())] == name_time(own) < name_time(future[0])
    assert 0 <= m[('newest_archive_age_seconds', ())] < 600


def test_a_clock_that_jumped_back_never_removes_the_run_s_own_archive(alation_host, scratch):
    """The clock went back 40 minutes (under the hour, so nothing counts as in the future): three archives of
    before the jump are named after the run's own. The run's own archive stays, counting toward keep_count, and
    the oldest others go in its place."""
    host = alation_host
    base = dict(host.role_vars, alation_backup_engine='pg_basebackup', alation_backup_keep_count=3)
    first = run_playbook('backup.yml', base)
    assert first.rc == 0, first.output
    [earlier] = archives(host)
    ahead = [time.strftime('%Y%m%d%H%M', time.gmtime(time.time() + m * 60)) for m in (20, 30, 40)]
    before_the_jump = named_in_the_future(earlier, scratch, ahead)

    run = run_playbook('backup.yml', base)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    own = record['archive']
    assert record['result'] == 'ok' and name_time(own) < name_time(before_the_jump[0])
    assert record['future_archives'] == []
    assert archives(host) == sorted([own] + before_the_jump[1:]), 'own kept; the earlier one and the oldest other go'
    assert sorted(record['retention']['removed']) == sorted(
        [earlier, earlier + '.sha256', before_the_jump[0], before_the_jump[0] + '.sha256'])
