# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup run's record as node_exporter textfile metrics (Prometheus text format 0.0.4).

node_exporter's textfile collector reads ``*.prom`` files from one directory
on every scrape, so the file is replaced atomically (written beside it under
a name it ignores, then renamed). The last success survives a failed run: it
is read back from the file the previous run wrote. Alert on
``time() - alation_backup_last_success_timestamp_seconds`` and on
``time() - alation_backup_newest_archive_timestamp_seconds``, and on
``alation_backup_future_archives > 0`` (archives named by a clock that ran
ahead, which retention leaves alone and no newest_archive_* metric counts).
With the scheduled drill on, alert on ``alation_backup_last_drill_result{result="failed"} == 1`` and on
``time() - alation_backup_last_drill_timestamp_seconds`` (the last good drill, kept on the host).

Standard library only.
"""

import os
import re
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import (
    archive_time, is_future, list_archives, newest_good)
from ansible_collections.alation.backup.plugins.module_utils import _drill
from ansible_collections.alation.backup.plugins.module_utils._host import write_file
from ansible_collections.alation.backup.plugins.module_utils._watch import read_state

PREFIX = 'alation_backup_'
RESULTS = ('ok', 'failed', 'skipped')
COPY_RESULTS = ('ok', 'failed', 'off')
STEPS = ('stage', 'database', 'archive', 'cleanup', 'total')
_LAST_SUCCESS_RE = re.compile(r'^%slast_success_timestamp_seconds (?P<v>[0-9.eE+-]+)$' % PREFIX, re.M)


def previous_success(path):
    """The last success the file at ``path`` recorded, or None."""
    try:
        with open(path) as f:
            m = _LAST_SUCCESS_RE.search(f.read())
    except (OSError, UnicodeDecodeError):
        return None
    return float(m.group('v')) if m else None


def _number(value):
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _escape(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


class _Text(object):
    def __init__(self):
        self.lines = []

    def metric(self, name, kind, help_text, samples):
        """``samples``: [(labels dict or None, value)]."""
        self.lines.append('# HELP %s%s %s' % (PREFIX, name, help_text))
        self.lines.append('# TYPE %s%s %s' % (PREFIX, name, kind))
        for labels, value in samples:
            text = ','.join('%s="%s"' % (k, _escape(v)) for k, v in sorted((labels or {}).items()))
            self.lines.append('%s%s%s %s' % (PREFIX, name, '{%s}' % text if text else '', repr(float(value))))

    def render(self):
        return '\n'.join(self.lines) + '\n'


def render(record, storage_dir=None, now=None, last_success=None):
    """The metrics text for one run's ``record`` (the backup role's alation_backup_result)."""
    now = time.time() if now is None else now
    result = record.get('result') or 'failed'
    if result == 'ok' and not record.get('check_mode'):
        last_success = now
    t = _Text()
    t.metric('last_attempt_timestamp_seconds', 'gauge', 'When the last backup run ended (Unix time).', [(None, now)])
    t.metric('last_success_timestamp_seconds', 'gauge',
             'When the last successful backup run ended (Unix time; 0 if none recorded).', [(None, last_success or 0)])
    t.metric('last_result', 'gauge', 'Result of the last run, one series per result, 1 for the one it had.',
             [(dict(result=r), 1 if r == result else 0) for r in RESULTS])
    t.metric('last_mode', 'gauge', 'Database backup mode of the last run (FULL, DELTA, ...), 1 for the one taken.',
             [(dict(mode=record.get('mode') or 'none', engine=record.get('engine') or ''), 1)])
    t.metric('archive_size_bytes', 'gauge', 'Size of the archive the last run wrote (0 when none).',
             [(None, _number(record.get('size')))])
    durations = record.get('durations_s') or {}
    t.metric('step_duration_seconds', 'gauge', 'How long each step of the last run took on the host.',
             [(dict(step=s), _number(durations.get(s))) for s in STEPS])
    retention = record.get('retention') or {}
    t.metric('retention_freed_bytes', 'gauge', 'Bytes retention freed in the last run.',
             [(None, _number(retention.get('freed_bytes')))])
    copy = record.get('copy') or {}
    copy_result = copy.get('result') or 'off'
    t.metric('copy_result', 'gauge', 'Off-host copy of the last run, one series per result, 1 for the one it had.',
             [(dict(result=r), 1 if r == copy_result else 0) for r in COPY_RESULTS])
    drills = _drill.read_state(storage_dir) if storage_dir and os.path.isdir(storage_dir) else {}
    drill = record.get('drill') or {}
    if not drills and drill.get('result') in _drill.RESULTS:
        # No state to read (no storage dir given): this run's own drill.
        drills = dict(last=dict(drill, at_ts=now), last_good=dict(drill, at_ts=now) if drill['result'] == 'ok' else {})
    last = drills.get('last') or {}
    t.metric('last_drill_timestamp_seconds', 'gauge',
             'When the last good scheduled drill ended (Unix time; 0 if none recorded).',
             [(None, _number((drills.get('last_good') or {}).get('at_ts')))])
    t.metric('last_drill_result', 'gauge', 'Result of the last scheduled drill, one series per result, 1 for the one '
             'it had (all 0 when none was recorded).', [(dict(result=r), 1 if r == last.get('result') else 0) for r in _drill.RESULTS])
    if storage_dir and os.path.isdir(storage_dir):
        cancel = read_state(storage_dir) or {}
        t.metric('last_cancel_timestamp_seconds', 'gauge',
                 'When a step last stopped on the host because its controller stopped polling (an AWX cancel; Unix '
                 'time, 0 if never).', [(dict(step=cancel.get('step') or ''), _number(cancel.get('stopped_ts')))])
        archives = list_archives(storage_dir)
        # A name in the future (a clock that ran ahead) is never the newest: a staleness alert must still fire.
        newest, dummy = newest_good(storage_dir, now=now)
        t.metric('archives_kept', 'gauge', 'Archives in the backup storage dir.', [(None, len(archives))])
        t.metric('future_archives', 'gauge',
                 'Archives named more than an hour ahead of the host\'s clock: left alone, never the newest.',
                 [(None, sum(1 for a in archives if is_future(a, now)))])
        t.metric('newest_archive_timestamp_seconds', 'gauge',
                 'Time of the newest archive its .sha256 vouches for (Unix time, from its name; 0 if none).',
                 [(None, archive_time(newest) if newest else 0)])
        t.metric('newest_archive_age_seconds', 'gauge',
                 'Age of that archive when the last run ended (alert on time() - the timestamp instead).',
                 [(None, now - archive_time(newest) if newest else 0)])
    return t.render()


def write(path, text):
    """Replace ``path`` atomically, readable by node_exporter (0644)."""
    write_file(path, text, mode=0o644)
