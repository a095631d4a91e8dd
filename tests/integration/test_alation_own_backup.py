# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role keeps clear of Alation's own backup, in a real Alation shell.

Alation's Backup V1 runs on its own schedule (alation_conf keys, UTC) in the
same staging dirs. A run of ours beside it would empty the staging dir it is
packing: the role refuses while a process is at work there, and near a start
of Alation's schedule (alation_backup_alation_schedule_margin).
"""

import datetime
import glob
import json
import os
import re
import signal
import subprocess
import time

import pytest

from playbook import HOST, run_playbook

ARCHIVE_RE = re.compile(r'^\d{12}_5-17-0-116556_alation_backup\.tar\.gz$')
ENGINE = {'alation_backup_engine': 'pg_basebackup'}
STORE = '/usr/local/bin/alation_conf.store'


def archives(host):
    return sorted(p for p in glob.glob(host.path('/data2/backup/*')) if ARCHIVE_RE.match(os.path.basename(p)))


def role_run(host, **extra):
    return run_playbook('backup.yml', dict(host.role_vars, **dict(ENGINE, **extra)))


def tree(path):
    """Every path under ``path`` with its mtime, size and content: what a refused run must leave as it was."""
    found = {}
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(top, name)
            st = os.lstat(p)
            data = open(p, 'rb').read() if name in files else None
            found[p] = (st.st_mtime_ns, st.st_size, data)
    return found


def alation_packing(host):
    """What Alation's own backup would have half-staged: a file in the staging dir, alationadmin's."""
    path = host.path('/data2/tmp/alation_backup_in_progress.tar')
    with open(path, 'wb') as f:
        f.write(b'half an archive' * 1000)
    os.chown(path, 4502, 4502)


@pytest.fixture
def in_shell(alation_host):
    """Start a process inside the shell as one of its users; each one is killed afterwards."""
    procs = []

    def start(argv, user='alationadmin'):
        proc = subprocess.Popen(['chroot', '--userspec=%s:%s' % (user, user), alation_host.root] + argv,
                                stdout=subprocess.PIPE)
        procs.append(proc)
        # It says when it stands where it should.
        assert proc.stdout.readline() == b'ready\n'
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_process_in_the_staging_dir_refuses_the_run_by_its_pid(alation_host, in_shell):
    host = alation_host
    alation_packing(host)
    before = tree(host.path('/data2/tmp'))
    proc = in_shell(['/bin/sh', '-c', 'cd /data2/tmp && echo ready && exec sleep 600'])
    run = role_run(host)
    assert run.rc != 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'failed'
    error = record['error']
    assert 'refusing the run, nothing was touched' in error, error
    assert 'pid %d (sleep 600, uid 4502) has its cwd %s in %s' % (
        proc.pid, host.path('/data2/tmp'), host.path('/data2/tmp')) in error, error
    assert 'Wait for it to end' in error
    assert tree(host.path('/data2/tmp')) == before, "the staging dir Alation's backup is packing is untouched"
    assert archives(host) == []
    assert not os.path.exists(host.path('/data2/backup/.alation_backup.lock'))

    proc.kill()
    proc.wait()
    run = role_run(host)
    assert run.rc == 0, run.output
    assert len(archives(host)) == 1


def test_a_pg_probackup_on_the_shell_catalog_refuses_the_run(alation_host, in_shell):
    host = alation_host
    os.makedirs(host.path('/data2/backup/pgbackup'))
    os.chown(host.path('/data2/backup/pgbackup'), 4501, 4501)
    # A stand-in with Alation's pg_probackup command line, inside the shell (perl renames itself, as titles go).
    title = 'pg_probackup backup -B /data2/backup/pgbackup --instance alation -b FULL --stream'
    proc = in_shell(['/usr/bin/perl', '-e', '$| = 1; $0 = "%s"; print "ready\\n"; sleep 600' % title], user='alation')
    run = role_run(host)
    assert run.rc != 0, run.output
    error = run.records[HOST]['error']
    assert 'pid %d (%s, uid 4501) runs pg_probackup on the pg staging dir (catalog /data2/backup/pgbackup)' % (
        proc.pid, title) in error, error
    assert os.path.isdir(host.path('/data2/backup/pgbackup')) and archives(host) == []


def test_a_real_pg_probackup_held_mid_backup_refuses_the_run_and_finishes_untouched(alation_host):
    """Alation's own backup as it runs: the real pg_probackup inside the shell, stopped half-way through."""
    host = alation_host
    if not host.has_pg_probackup:
        pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH)')
    catalog = '/data2/backup/pgbackup'
    probackup = '/usr/local/bin/pg_probackup'
    # As Alation's backup keeps it: the pg staging dir is alation's.
    os.mkdir(host.path(catalog), 0o700)
    os.chown(host.path(catalog), 4501, 4501)
    host.run([probackup, 'init', '-B', catalog])
    host.run([probackup, 'add-instance', '-B', catalog, '-D', '/data1/pgsql/data', '--instance', 'alation'])
    argv = [probackup, 'backup', '-B', catalog, '--instance', 'alation', '-b', 'FULL', '--stream', '-j', '1',
            '-h', '127.0.0.1', '-p', str(host.port), '-U', 'alation', '-d', 'postgres']
    proc = subprocess.Popen(['chroot', '--userspec=alation:alation', host.root] + argv,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Hold it once it has started copying into the catalog.
        deadline = time.time() + 60
        while not glob.glob(host.path(catalog + '/backups/alation/*/database/*')) and time.time() < deadline:
            assert proc.poll() is None, 'pg_probackup ended before it could be held'
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGSTOP)
        run = role_run(host)
        assert run.rc != 0, run.output
        error = run.records[HOST]['error']
        assert 'pid %d (%s, uid 4501) runs pg_probackup on the pg staging dir (catalog %s)' % (
            proc.pid, ' '.join(argv), catalog) in error, error
        assert archives(host) == []
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=300) == 0, "Alation's own backup finishes as if nothing happened"
    shown = json.loads(host.run([probackup, 'show', '-B', catalog, '--instance', 'alation', '--format=json']).stdout)
    assert [b['status'] for b in shown[0]['backups']] == ['OK']


def set_schedule(host, minute, hour, day):
    for key, value in (('minute', minute), ('hour', hour), ('day', day)):
        host.run(['/usr/local/bin/alation_conf', 'alation.backup.scheduled_' + key, '-s', value], user='alationadmin')


def test_a_schedule_starting_now_refuses_the_run_and_margin_0_runs(alation_host):
    host = alation_host
    alation_packing(host)
    before = tree(host.path('/data2/tmp'))
    # Alation's own backup starts now (UTC), on today's weekday, set with alation_conf -s as an admin would.
    now = datetime.datetime.now(datetime.timezone.utc)
    day = ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')[now.weekday()]
    set_schedule(host, str(now.minute), str(now.hour), day)
    with open(host.path(STORE)) as f:
        assert 'alation.backup.scheduled_day = %s\n' % day in f.read()

    run = role_run(host)
    assert run.rc != 0, run.output
    record = run.records[HOST]
    error = record['error']
    schedule = ("Alation's own backup schedule (alation_conf scheduled_minute = '%d', scheduled_hour = '%d', "
                "scheduled_day = '%s') starts a backup at " % (now.minute, now.hour, day))
    assert schedule in error, error
    assert 'within alation_backup_alation_schedule_margin (90 min)' in error
    assert record['alation_schedule']['day'] == day and record['alation_schedule']['nearest_start']
    assert tree(host.path('/data2/tmp')) == before
    assert archives(host) == []

    run = role_run(host, alation_backup_alation_schedule_margin=0)
    assert run.rc == 0, run.output
    assert run.records[HOST]['result'] == 'ok' and run.records[HOST]['alation_schedule'] == {}
    assert len(archives(host)) == 1


def test_a_schedule_far_away_runs_and_the_record_shows_it(alation_host):
    host = alation_host
    # Six hours on, on every day: beyond the margin.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)
    set_schedule(host, '0', str(later.hour), '*')
    run = role_run(host)
    assert run.rc == 0, run.output
    found = run.records[HOST]['alation_schedule']
    assert found['hour'] == str(later.hour) and found['nearest_start'] is None
    assert found['next_start'] == later.strftime('%Y-%m-%dT%H:00Z'), found
    assert found['margin_minutes'] == 90
