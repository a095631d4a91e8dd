# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alation_info keeps clear of Alation's own backup: its schedule (alation_schedule_margin) and its processes (refuse_busy)."""

import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from .test_alation_info import STORE, FakeShell, snapshot
from .utils import run_module

from ansible_collections.alation.backup.plugins.module_utils import _alation_schedule
from ansible_collections.alation.backup.plugins.modules import alation_info

SCHEDULE_KEYS = list(_alation_schedule.SCHEDULE_KEYS)


@pytest.fixture
def shell():
    d = tempfile.mkdtemp(prefix='alation-info-test-')
    os.chmod(d, 0o755)
    shell = FakeShell(os.path.join(d, 'alation'))
    for sub in ('data2/tmp', 'data2/backup/pgbackup'):
        os.makedirs(os.path.join(shell.root, sub))
    yield shell
    shutil.rmtree(d)


@pytest.fixture
def now(monkeypatch):
    """Pin the module's clock: Tuesday 2026-12-01 at the time given."""
    def pin(hhmm):
        when = datetime.datetime(2026, 12, 1, *map(int, hhmm.split(':')))
        monkeypatch.setattr(_alation_schedule, 'utcnow', lambda: when)
    return pin


def args(shell, **kw):
    # Only the keys the role asks for; the schedule keys come with the margin.
    return shell.args(alation_conf_keys=[], **kw)


def test_margin_0_reads_no_schedule_key(shell, now):
    now('01:30')
    failed, result = run_module(alation_info.main, args(shell))
    assert not failed, result
    assert list(result['conf']) == ['alation.backup.data_temp_dir']
    assert result['alation_schedule'] == {} and result['busy_processes'] == []


def test_a_start_within_the_margin_is_refused(shell, now):
    # STORE: 01:30 every day.
    now('00:10')
    failed, result = run_module(alation_info.main, args(shell, alation_schedule_margin=90))
    assert failed
    assert result['msg'].startswith(
        "refusing the run, nothing was touched: Alation's own backup schedule (alation_conf scheduled_minute = '30', "
        "scheduled_hour = '1', scheduled_day = '*') starts a backup at 2026-12-01T01:30Z UTC (in 80 min), within "
        "alation_backup_alation_schedule_margin (90 min)"), result['msg']
    assert result['alation_schedule']['nearest_start'] == '2026-12-01T01:30Z'
    assert sorted(result['conf']) == sorted(['alation.backup.data_temp_dir'] + SCHEDULE_KEYS)


def test_a_start_beyond_the_margin_runs_and_is_returned(shell, now):
    now('12:00')
    shell.write_store(dict(STORE, **{'alation.backup.scheduled_day': 'tue,sat'}))
    failed, result = run_module(alation_info.main, args(shell, alation_schedule_margin=90))
    assert not failed, result
    assert result['alation_schedule'] == dict(minute='30', hour='1', day='tue,sat', margin_minutes=90,
                                              now='2026-12-01T12:00Z', next_start='2026-12-05T01:30Z', nearest_start=None)


def test_a_day_not_set_counts_as_every_day(shell, now):
    now('02:00')
    store = dict(STORE)
    del store['alation.backup.scheduled_day']
    shell.write_store(store)
    failed, result = run_module(alation_info.main, args(shell, alation_schedule_margin=45))
    assert failed and 'scheduled_day = not set) starts a backup at 2026-12-01T01:30Z UTC (30 min ago)' in result['msg']


def test_an_unreadable_schedule_is_refused(shell, now):
    now('12:00')
    shell.write_store(dict(STORE, **{'alation.backup.scheduled_hour': '25'}))
    failed, result = run_module(alation_info.main, args(shell, alation_schedule_margin=90))
    assert failed
    assert "alation.backup.scheduled_hour is '25': '25' is not a number from 0 to 23" in result['msg']
    # With the check off the value does not matter.
    failed, result = run_module(alation_info.main, args(shell))
    assert not failed, result


def test_a_command_that_cannot_run_refuses_the_schedule_check(shell, now):
    now('12:00')
    missing = os.path.join(shell.root, 'no', 'alation_conf')
    given = args(shell, staging_dir='/data2/tmp', alation_conf_command=missing, alation_schedule_margin=90)
    failed, result = run_module(alation_info.main, given)
    assert failed
    assert result['msg'].startswith("refusing the run, nothing was touched: Alation's own backup schedule cannot be "
                                    "read: cannot run alation_conf command '%s': not found" % missing)


@pytest.mark.parametrize('margin, read_conf, text', [
    (-1, True, 'alation_schedule_margin is -1'),
    (90, False, 'alation_schedule_margin needs read_conf'),
])
def test_bad_margin(shell, margin, read_conf, text):
    failed, result = run_module(alation_info.main, args(shell, alation_schedule_margin=margin, read_conf=read_conf))
    assert failed and text in result['msg']


def test_a_process_in_the_staging_dir_is_refused_by_pid(shell):
    staging = os.path.join(shell.root, 'data2', 'tmp')
    with open(os.path.join(staging, 'half.tar'), 'w') as f:
        f.write('packing')
    proc = subprocess.Popen(['sleep', '60'], cwd=staging)
    try:
        before = snapshot(shell.root)
        failed, result = run_module(alation_info.main, args(shell, refuse_busy=True))
        assert failed
        assert ('is at work in the staging dirs: pid %d (sleep 60, uid %d) has its cwd %s in %s'
                % (proc.pid, os.getuid(), staging, staging)) in result['msg'], result['msg']
        assert 'Wait for it to end' in result['msg'] and "turn that schedule off" in result['msg']
        assert [b['pid'] for b in result['busy_processes']] == [proc.pid]
        assert snapshot(shell.root) == before
        # Not asked: not looked for.
        failed, result = run_module(alation_info.main, args(shell))
        assert not failed, result
    finally:
        proc.kill()
        proc.wait()
    failed, result = run_module(alation_info.main, args(shell, refuse_busy=True))
    assert not failed, result
    assert result['busy_processes'] == []


def test_this_module_in_the_staging_dir_is_not_counted(shell):
    staging = os.path.join(shell.root, 'data2', 'tmp')
    here = os.getcwd()
    os.chdir(staging)
    try:
        failed, result = run_module(alation_info.main, args(shell, refuse_busy=True))
    finally:
        os.chdir(here)
    assert not failed, result


def test_another_run_of_ours_is_named_as_the_host_lock_holder(shell):
    staging = os.path.join(shell.root, 'data2', 'tmp')
    proc = subprocess.Popen(['sleep', '60'], cwd=staging)
    try:
        lock = os.path.join(shell.root, 'data2', 'backup', '.alation_backup.lock')
        with open(lock, 'w') as f:
            json.dump(dict(owner='admin via ansible-playbook', run_id='cli-1', pid=proc.pid, started=time.time() - 30,
                           renewed=time.time(), stale_after=600), f)
        failed, result = run_module(alation_info.main, args(shell, refuse_busy=True))
    finally:
        proc.kill()
        proc.wait()
    assert failed
    assert result['msg'].startswith('refusing the run, nothing was touched: another run holds the host lock %s: run cli-1 '
                                    'of admin via ansible-playbook (pid %d)' % (lock, proc.pid)), result['msg']
    assert 'pid %d (sleep 60, uid %d) has its cwd' % (proc.pid, os.getuid()) in result['msg']
