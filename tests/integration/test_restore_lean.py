# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore role's cost on the controller (issue 19): a default drill runs few task entries per host,
counted by the benchmarks' callback (every result and include Ansible prints a line for), and a refused
drill still names the step it failed at, found from the failed task's name."""

import collections
import json
import os

from playbook import HOST, REPO, run_playbook
from restoring import restore_vars

# 73 before issue 19 (25 set_fact, 7 of them "Note the step", 11 includes).
MOST_ENTRIES = 31


def entries(variables, workdir, check=False):
    events = os.path.join(workdir, 'events.json')
    env = dict(ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, 'bench', 'callback_plugins'),
               ANSIBLE_CALLBACKS_ENABLED='bench_events', ALATION_BENCH_EVENTS=events)
    run = run_playbook('verify_backup.yml', variables, check=check, workdir=workdir, env=env)
    with open(events) as f:
        return run, [e for e in json.load(f)['entries'] if e['host'] == HOST]


def test_a_default_drill_runs_few_task_entries_and_a_refused_one_names_its_step(alation_host, scratch):
    # The default engine where the shell has pg_probackup; pg_basebackup's archive drills the same steps.
    engine = {} if alation_host.has_pg_probackup else {'alation_backup_engine': 'pg_basebackup'}
    backup = run_playbook('backup.yml', dict(alation_host.role_vars, **engine))
    assert backup.rc == 0, backup.output
    variables = restore_vars(alation_host.role_vars)

    os.makedirs(os.path.join(scratch, 'drill'))
    run, drill = entries(variables, os.path.join(scratch, 'drill'))
    assert run.rc == 0, run.output
    kinds = collections.Counter(e['kind'] for e in drill)
    assert len(drill) <= MOST_ENTRIES, (kinds, [e['task'] for e in drill])
    assert kinds['include'] == 0 and kinds['failed'] == 0, kinds
    assert not [e for e in drill if e['action'] == 'ansible.builtin.set_fact' and 'Note the step' in e['task']]
    assert 'DRILL OK' in run.output

    os.makedirs(os.path.join(scratch, 'check'))
    run, check = entries(variables, os.path.join(scratch, 'check'), check=True)
    assert run.rc == 0 and len(check) <= MOST_ENTRIES, (run.output, len(check))

    # A refused drill names the step it failed at, found from the failed task's name: the scratch dir holds a
    # stranger's file (the extract step), or the archive named is not there (the find step).
    stranger = alation_host.path('/data2/restore_drill/precious.txt')
    os.makedirs(os.path.dirname(stranger))
    with open(stranger, 'w') as f:
        f.write('not the drill\'s\n')
    os.makedirs(os.path.join(scratch, 'refused'))
    run, dummy = entries(variables, os.path.join(scratch, 'refused'))
    assert run.rc != 0 and os.path.exists(stranger)
    record = run.records[HOST]
    assert record['failed_step'] == 'extract' and record['error'].startswith('extract: '), record
    assert record['checks']['extract']['result'] == 'failed' and record['checks']['sha256']['result'] == 'ok'
    assert 'restore drill failed on %s (extract)' % HOST in run.output

    os.makedirs(os.path.join(scratch, 'missing'))
    run, dummy = entries(dict(variables, alation_restore_archive='200001010000_5-17-0-1_alation_backup.tar.gz'),
                         os.path.join(scratch, 'missing'))
    assert run.rc != 0
    record = run.records[HOST]
    assert record['failed_step'] == 'find' and record['failed_check'] == '', record
    assert {c['result'] for c in record['checks'].values()} == {'skipped'}
    assert 'restore drill failed on %s (find)' % HOST in run.output
