# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup playbook through ansible-runner, the engine AWX runs jobs with, over a real shell host and an
unreachable one: the job stats hold a record a host, and the database password is in no artifact."""

import os
import re
import sys

import pytest

import alation_shell
from playbook import COLLECTIONS, HOST, REPO, local_host

ansible_runner = pytest.importorskip('ansible_runner')

UNREACHABLE = 'alation-unreachable'
# Distinctive: found by grep only if it leaked.
PASSWORD = 'AwxRunner-Secret-5e1d7c93-Qz7'


def pg_reload(host):
    host.run([alation_shell.PG_BIN + '/pg_ctl', '-D', alation_shell.PGDATA, 'reload'])


@pytest.fixture
def scram_host(alation_host):
    """The shell host with a password on alation and scram-sha-256 for every TCP line of pg_hba (trust after)."""
    hba = alation_host.path(alation_shell.PGDATA + '/pg_hba.conf')
    with open(hba) as f:
        original = f.read()
    alation_host.psql("ALTER ROLE alation PASSWORD '%s'" % PASSWORD)
    try:
        with open(hba, 'w') as f:
            f.write(re.sub(r'^(host\s.*\s)trust$', r'\1scram-sha-256', original, flags=re.M))
        pg_reload(alation_host)
        yield alation_host
    finally:
        with open(hba, 'w') as f:
            f.write(original)
        pg_reload(alation_host)


def stats_artifact(runner):
    """The custom stats (set_stats) of the run: the playbook_on_stats event's artifact_data."""
    for event in runner.events:
        if event.get('event') == 'playbook_on_stats':
            return event.get('event_data', {}).get('artifact_data') or {}
    return {}


def test_runner_job_stats_hold_every_host_and_no_artifact_holds_the_password(scram_host, scratch):
    # The password is in force: without it the loopback connection is refused.
    refused = scram_host.run([alation_shell.PG_BIN + '/psql', '-X', '-w', '-h', '127.0.0.1', '-p',
                              str(scram_host.port), '-U', 'alation', '-d', 'postgres', '-c', 'SELECT 1'], check=False)
    assert refused.returncode != 0, 'scram-sha-256 is not in force: psql without a password connected'

    pdd = os.path.join(scratch, 'runner')
    os.mkdir(pdd)
    hosts = {HOST: local_host(**scram_host.role_vars),
             # ssh to a port nobody listens on: Ansible cannot reach it.
             UNREACHABLE: dict(ansible_connection='ssh', ansible_host='127.0.0.1', ansible_port=1,
                               ansible_python_interpreter=sys.executable)}
    engine = 'pg_probackup' if scram_host.has_pg_probackup else 'pg_basebackup'
    r = ansible_runner.run(
        private_data_dir=pdd, playbook=os.path.join(REPO, 'playbooks', 'backup.yml'),
        inventory={'all': {'children': {'alation': {'hosts': hosts}}}}, quiet=True,
        envvars=dict(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0',
                     ANSIBLE_LOCALHOST_WARNING='0',
                     PATH=os.path.dirname(sys.executable) + ':' + os.environ.get('PATH', '')),
        # As AWX passes a credential's secret: an extra var, never on the command line.
        extravars=dict(alation_backup_become=False, alation_backup_engine=engine,
                       alation_backup_pg_password=PASSWORD))
    stdout = r.stdout.read()
    print(stdout)

    # The unreachable host fails the job (the role catches the unreachable connection and fails it, naming the
    # cause); the shell host backed up (with the password: trust is off).
    assert r.status == 'failed' and r.rc != 0, (r.status, r.rc)
    assert UNREACHABLE in r.stats['failures'] or UNREACHABLE in r.stats['dark'], r.stats
    assert HOST not in r.stats['failures'] and HOST not in r.stats['dark'], r.stats

    records = stats_artifact(r).get('alation_backup')
    assert records, 'no alation_backup in the job stats (playbook_on_stats artifact_data)'
    assert sorted(records) == sorted(hosts), records
    assert records[HOST]['result'] == 'ok' and records[HOST]['engine'] == engine, records[HOST]
    assert os.path.isfile(records[HOST]['archive']), records[HOST]
    assert records[UNREACHABLE]['result'] == 'unreachable', records[UNREACHABLE]

    assert PASSWORD not in stdout
    artifacts = os.path.join(pdd, 'artifacts')
    files = [os.path.join(d, n) for d, dummy, names in os.walk(artifacts) for n in names]
    events = [p for p in files if os.sep + 'job_events' + os.sep in p]
    assert events, 'ansible-runner wrote no job events under %s' % artifacts
    leaked = []
    for path in files:
        with open(path, 'rb') as f:
            if PASSWORD.encode() in f.read():
                leaked.append(os.path.relpath(path, pdd))
    assert not leaked, 'the password is in: %s' % ', '.join(leaked)
