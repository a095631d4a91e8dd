# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drill on a schedule (alation_backup_drill_every_days) through the backup role in a real Alation shell:
the first run drills the archive it made (the restore role's drill, PostgreSQL started on it and checked) and
keeps the verdict on the host; the next run is not due; a scratch dir short of space skips the drill with a
warning and the backup stands; a drill that fails fails the run and keeps its archive."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

import alation_shell
from playbook import HOST, REPO, run_playbook

parser = pytest.importorskip('prometheus_client.parser')

STATE = '/data2/backup/.alation_backup.drill.json'
# Issue 19's budget for a default run (pg_probackup, incremental off, no copy, no metrics), skipped entries included.
MOST_ENTRIES = 24


@pytest.fixture(scope='module')
def shell():
    tmp = tempfile.mkdtemp(prefix='alation-drill-test-')
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, 'alation')
    try:
        host = alation_shell.ShellHost(root, alation_shell.up(root, scale=1))
        if not host.has_pg_probackup:
            pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH)')
        yield host
    finally:
        tiny = os.path.join(root, 'data2/tiny')
        if os.path.ismount(tiny):
            subprocess.run(['umount', tiny], check=False)
        alation_shell.down(root, purge=True)
        shutil.rmtree(tmp, ignore_errors=True)


def entries(host, workdir, **extra):
    """A run's task entries on the host, counted by the benchmarks' callback."""
    events = os.path.join(workdir, 'events.json')
    env = dict(ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, 'bench', 'callback_plugins'),
               ANSIBLE_CALLBACKS_ENABLED='bench_events', ALATION_BENCH_EVENTS=events)
    run = run_playbook('backup.yml', dict(host.role_vars, **extra), workdir=workdir, env=env)
    with open(events) as f:
        return run, [e for e in json.load(f)['entries'] if e['host'] == HOST]


def backup(host, tmp_path, **extra):
    textfile = tmp_path / 'textfile'
    textfile.mkdir(exist_ok=True)
    run = run_playbook('backup.yml', dict(host.role_vars, alation_backup_engine='pg_probackup',
                                          alation_backup_drill_every_days=7,
                                          alation_backup_metrics_dir=str(textfile), **extra))
    lines = re.findall(r'"(%s: [^"]*)"' % re.escape(HOST), run.output)
    print('\n'.join(lines[-1:]))
    return run, lines


def state(host):
    with open(host.path(STATE)) as f:
        return json.load(f)


def metrics(tmp_path):
    with open(str(tmp_path / 'textfile' / 'alation_backup.prom')) as f:
        return dict(((s.name, tuple(sorted(s.labels.items()))), s.value)
                    for family in parser.text_string_to_metric_families(f.read()) for s in family.samples)


def test_drilled_then_not_due(shell, tmp_path):
    run, lines = backup(shell, tmp_path)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    drill = record['drill']
    assert record['result'] == 'ok' and drill['result'] == 'ok', drill
    assert drill['archive'] == record['archive'] and drill['duration_s'] > 0 and drill['at']
    assert lines and lines[-1].endswith('; drill OK'), lines
    s = state(shell)
    assert s['last']['result'] == 'ok' and s['last_good']['archive'] == record['archive']
    assert not os.path.exists(shell.path('/data2/backup_drill'))
    m = metrics(tmp_path)
    assert m[('alation_backup_last_drill_result', (('result', 'ok'),))] == 1
    assert m[('alation_backup_last_drill_timestamp_seconds', ())] == s['last_good']['at_ts']

    run, lines = backup(shell, tmp_path)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['drill']['result'] == 'not due' and 'younger than 7 days' in record['drill']['reason']
    assert 'drill' not in lines[-1]
    assert state(shell) == s
    # The last good drill is still told by the metrics of a run that did not drill.
    assert metrics(tmp_path)[('alation_backup_last_drill_timestamp_seconds', ())] == s['last_good']['at_ts']


def test_a_scratch_dir_short_of_space_skips_the_drill_and_the_backup_stands(shell, tmp_path):
    os.unlink(shell.path(STATE))
    tiny = shell.path('/data2/tiny')
    os.makedirs(tiny, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tiny], check=True)
    try:
        run, lines = backup(shell, tmp_path, alation_backup_drill_scratch_dir='/data2/tiny/drill')
    finally:
        subprocess.run(['umount', tiny], check=True)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['drill']['result'] == 'skipped'
    assert 'not enough free space' in record['drill']['reason']
    assert any(w.startswith('the scheduled drill was skipped: not enough free space') for w in record['warnings'])
    assert '; drill SKIPPED: not enough free space' in lines[-1] and lines[-1].startswith(HOST + ': OK')
    s = state(shell)
    assert s['last']['result'] == 'skipped' and 'last_good' not in s
    assert os.path.exists(record['archive'])


def test_a_drill_that_fails_fails_the_run_and_keeps_the_archive(shell, tmp_path):
    # The temporary PostgreSQL cannot listen on a privileged port as the database OS user.
    run, lines = backup(shell, tmp_path, alation_restore_port=1)
    assert run.rc != 0
    record = run.records[HOST]
    assert record['result'] == 'failed' and record['drill']['result'] == 'failed'
    assert record['error'].startswith('drill: the archive %s was written and verified, but the drill did not restore it'
                                      % record['archive'])
    assert os.path.exists(record['archive']) and os.path.exists(record['archive'] + '.sha256')
    assert '(written, but it did not restore); drill FAILED: ' in lines[-1], lines
    assert 'Alation backup failed on %s: drill: the archive' % HOST in run.output
    s = state(shell)
    assert s['last']['result'] == 'failed' and 'last_good' not in s
    assert metrics(tmp_path)[('alation_backup_last_drill_result', (('result', 'failed'),))] == 1
    assert not os.path.exists(shell.path('/data2/backup_drill'))


def test_off_or_not_due_costs_one_skipped_entry(shell, tmp_path):
    """A default run (drill off) and a run that is not due each pay one skipped include, and stay in the budget."""
    for name, extra in (('off', {}), ('not-due', dict(alation_backup_drill_every_days=7))):
        if extra:
            # A good drill just now: not due.
            with open(shell.path(STATE), 'w') as f:
                json.dump({'last_good': {'result': 'ok', 'at_ts': time.time()}}, f)
        os.makedirs(str(tmp_path / name))
        run, seen = entries(shell, str(tmp_path / name), **extra)
        assert run.rc == 0, run.output
        drill = [e for e in seen if 'drill' in e['task'].lower()]
        assert [(e['task'].split(' : ')[-1], e['kind']) for e in drill] == [('Scheduled drill', 'skipped')], drill
        assert len(seen) <= MOST_ENTRIES, [e['task'] for e in seen]
        print('%s: %d task entries' % (name, len(seen)))
        assert run.records[HOST]['drill']['result'] == ('off' if name == 'off' else 'not due')
