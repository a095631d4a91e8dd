# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role's node_exporter metrics, in a real Alation shell, read with Prometheus' own parser."""

import os

import pytest

from playbook import HOST, run_playbook

parser = pytest.importorskip('prometheus_client.parser')


def metrics(path):
    with open(path) as f:
        text = f.read()
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name[len('alation_backup_'):], tuple(sorted(s.labels.items())))] = s.value
    return found


def test_each_run_writes_its_metrics_and_a_failure_keeps_the_last_success(alation_host, tmp_path):
    host = alation_host
    textfile = tmp_path / 'textfile'
    textfile.mkdir()
    run = run_playbook('backup.yml', dict(host.role_vars, alation_backup_engine='pg_basebackup',
                                          alation_backup_metrics_dir=str(textfile)))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    m = metrics(str(textfile / 'alation_backup.prom'))
    assert m[('last_result', (('result', 'ok'),))] == 1
    assert m[('last_mode', (('engine', 'pg_basebackup'), ('mode', 'FULL')))] == 1
    assert m[('archive_size_bytes', ())] == int(record['size']) > 0
    assert m[('step_duration_seconds', (('step', 'database'),))] == float(record['durations_s']['database']) > 0
    assert m[('archives_kept', ())] == 1 and 0 <= m[('newest_archive_age_seconds', ())] < 600
    assert m[('copy_result', (('result', 'off'),))] == 1
    success = m[('last_success_timestamp_seconds', ())]
    assert success == m[('last_attempt_timestamp_seconds', ())] > 0
    assert sorted(os.listdir(str(textfile))) == ['alation_backup.prom']

    host.stop_postgres()
    try:
        failed = run_playbook('backup.yml', dict(host.role_vars, alation_backup_engine='pg_basebackup',
                                                 alation_backup_metrics_dir=str(textfile)))
    finally:
        host.start_postgres()
    assert failed.rc != 0
    m = metrics(str(textfile / 'alation_backup.prom'))
    assert m[('last_result', (('result', 'failed'),))] == 1
    assert m[('last_success_timestamp_seconds', ())] == success, 'the last success survives a failed run'
    assert m[('last_attempt_timestamp_seconds', ())] > success
    assert m[('archives_kept', ())] == 1


def test_a_metrics_dir_that_is_not_there_fails_the_host_naming_it(alation_host, tmp_path):
    run = run_playbook('backup.yml', dict(alation_host.role_vars, alation_backup_engine='pg_basebackup',
                                          alation_backup_metrics_dir=str(tmp_path / 'nope')))
    assert run.rc != 0
    record = run.records[HOST]
    assert record['result'] == 'failed' and 'metrics: the metrics dir %s does not exist' % (tmp_path / 'nope') \
        in record['error'], record
    assert record['archive'], 'the backup itself was made and is named'
