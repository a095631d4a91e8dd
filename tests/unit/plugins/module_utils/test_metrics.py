# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's metrics, read back with Prometheus' own text-format parser."""

import calendar
import hashlib
import os
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _metrics
from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name, sidecar_text

parser = pytest.importorskip('prometheus_client.parser')

NOW = calendar.timegm(time.strptime('202611301200', '%Y%m%d%H%M'))
RECORD = dict(result='ok', mode='DELTA', engine='pg_probackup', size=13321748, check_mode=False,
              durations_s=dict(stage=0.4, database=12.5, archive=20.25, cleanup=0.1, total=35.9),
              retention=dict(freed_bytes=4096, removed=['a']), copy=dict(result='failed'))


def samples(text):
    found = {}
    for family in parser.text_string_to_metric_families(text):
        assert family.type == 'gauge' and family.documentation
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def archive(d, ts):
    name = archive_name(ts, '5-17-0-116556')
    (d / name).write_bytes(b'x')
    (d / (name + '.sha256')).write_text(sidecar_text(hashlib.sha256(b'x').hexdigest(), name, 1))


def test_every_metric_of_a_successful_run(tmp_path):
    archive(tmp_path, '202611290000')
    archive(tmp_path, '202611301100')
    m = samples(_metrics.render(RECORD, str(tmp_path), now=NOW))
    p = 'alation_backup_'
    assert m[(p + 'last_attempt_timestamp_seconds', ())] == NOW
    assert m[(p + 'last_success_timestamp_seconds', ())] == NOW
    assert m[(p + 'last_result', (('result', 'ok'),))] == 1
    assert m[(p + 'last_result', (('result', 'failed'),))] == 0
    assert m[(p + 'last_mode', (('engine', 'pg_probackup'), ('mode', 'DELTA')))] == 1
    assert m[(p + 'archive_size_bytes', ())] == 13321748
    assert m[(p + 'step_duration_seconds', (('step', 'archive'),))] == 20.25
    assert m[(p + 'step_duration_seconds', (('step', 'total'),))] == 35.9
    assert m[(p + 'retention_freed_bytes', ())] == 4096
    assert m[(p + 'copy_result', (('result', 'failed'),))] == 1
    assert m[(p + 'archives_kept', ())] == 2
    assert m[(p + 'newest_archive_timestamp_seconds', ())] == NOW - 3600
    assert m[(p + 'newest_archive_age_seconds', ())] == 3600
    assert m[(p + 'future_archives', ())] == 0
    assert m[(p + "last_cancel_timestamp_seconds", (("step", ""),))] == 0
    assert m[(p + "last_drill_timestamp_seconds", ())] == 0
    assert m[(p + "last_drill_result", (("result", "ok"),))] == 0
    assert len(m) == 25


def test_a_failed_run_keeps_the_last_success_of_the_file_it_replaces(tmp_path):
    path = str(tmp_path / 'alation_backup.prom')
    _metrics.write(path, _metrics.render(RECORD, now=NOW - 86400))
    assert _metrics.previous_success(path) == NOW - 86400
    failed = dict(RECORD, result='failed', size=0, copy={})
    m = samples(_metrics.render(failed, now=NOW, last_success=_metrics.previous_success(path)))
    assert m[('alation_backup_last_success_timestamp_seconds', ())] == NOW - 86400
    assert m[('alation_backup_last_attempt_timestamp_seconds', ())] == NOW
    assert m[('alation_backup_last_result', (('result', 'failed'),))] == 1
    assert m[('alation_backup_copy_result', (('result', 'off'),))] == 1
    # A check-mode run is no success either.
    m = samples(_metrics.render(dict(RECORD, check_mode=True), now=NOW, last_success=None))
    assert m[('alation_backup_last_success_timestamp_seconds', ())] == 0


def test_written_atomically_and_readable_by_node_exporter(tmp_path):
    path = str(tmp_path / 'alation_backup.prom')
    _metrics.write(path, 'x 1\n')
    assert oct(os.stat(path).st_mode & 0o777) == '0o644' and os.listdir(str(tmp_path)) == ['alation_backup.prom']


def test_no_storage_dir_no_archive_metrics_and_labels_escaped():
    text = _metrics.render(dict(RECORD, mode='we"ird\\'), now=NOW)
    assert 'archives_kept' not in text
    assert samples(text)[('alation_backup_last_mode', (('engine', 'pg_probackup'), ('mode', 'we"ird\\')))] == 1


def test_an_archive_named_in_the_future_is_never_the_newest_and_is_counted(tmp_path):
    """A clock that ran ahead must not silence the staleness alert: the newest is the newest real name."""
    archive(tmp_path, '202611200000')
    for day in (1, 2, 3):
        archive(tmp_path, '2031010%d0000' % day)
    archive(tmp_path, '202611301230')  # half an hour ahead: within the hour, a real newest
    m = samples(_metrics.render(RECORD, str(tmp_path), now=NOW))
    p = 'alation_backup_'
    assert m[(p + 'future_archives', ())] == 3 and m[(p + 'archives_kept', ())] == 5
    assert m[(p + 'newest_archive_timestamp_seconds', ())] == NOW + 1800
    os.unlink(str(tmp_path / archive_name('202611301230', '5-17-0-116556')))
    m = samples(_metrics.render(RECORD, str(tmp_path), now=NOW))
    assert m[(p + 'newest_archive_timestamp_seconds', ())] == NOW - 10 * 86400 - 12 * 3600
    assert m[(p + 'newest_archive_age_seconds', ())] == 10 * 86400 + 12 * 3600


def test_the_last_cancel_is_a_metric_from_the_state_file_beside_the_lease(tmp_path):
    from ansible_collections.alation.backup.plugins.module_utils import _watch
    m = samples(_metrics.render(RECORD, str(tmp_path), now=NOW))
    assert m[('alation_backup_last_cancel_timestamp_seconds', (('step', ''),))] == 0
    _watch.write_state(str(tmp_path), _watch.cancel_record('archive', NOW - 400, now=NOW - 200))
    m = samples(_metrics.render(RECORD, str(tmp_path), now=NOW))
    assert m[('alation_backup_last_cancel_timestamp_seconds', (('step', 'archive'),))] == NOW - 200


def test_the_last_drill_is_read_from_the_drill_state_beside_the_lease(tmp_path):
    from ansible_collections.alation.backup.plugins.module_utils import _drill
    p = 'alation_backup_'
    _drill.record(str(tmp_path), dict(result='ok', archive='a'), now=NOW - 86400)
    _drill.record(str(tmp_path), dict(result='failed', reason='rebuild: x', archive='b'), now=NOW - 60)
    # A run that did not drill (not due) still tells the last drill and the last good one.
    m = samples(_metrics.render(dict(RECORD, drill=dict(result='not due')), str(tmp_path), now=NOW))
    assert m[(p + 'last_drill_timestamp_seconds', ())] == NOW - 86400
    assert m[(p + 'last_drill_result', (('result', 'failed'),))] == 1
    assert m[(p + 'last_drill_result', (('result', 'ok'),))] == 0
    # Without a storage dir: this run's own drill.
    m = samples(_metrics.render(dict(RECORD, drill=dict(result='ok')), None, now=NOW))
    assert m[(p + 'last_drill_timestamp_seconds', ())] == NOW
    assert m[(p + 'last_drill_result', (('result', 'ok'),))] == 1
