# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled drill's state on the host (alation_backup_drill_every_days).

The last drill and the last good one are kept in a small JSON file beside the host lock in the backup storage
dir, where the next run (backup_lock, which says whether a drill is due) and the metrics find them. Only a run
that holds the host lock writes it. Standard library only.
"""

import json
import os
import time

from ansible_collections.alation.backup.plugins.module_utils._host import write_file
from ansible_collections.alation.backup.plugins.module_utils._locks import read_holder, utc_text

STATE_NAME = '.alation_backup.drill.json'
RESULTS = ('ok', 'failed', 'skipped')
DAY_S = 86400.0
# A last good drill dated further ahead than this was dated by a clock that ran ahead: it never defers a drill.
FUTURE_S = 3600.0


def state_path(directory):
    return os.path.join(directory, STATE_NAME)


def read_state(directory):
    """``{'last': {...}, 'last_good': {...}}`` as the last run wrote it; {} when there is none (or it is unreadable)."""
    state = read_holder(state_path(directory)) or {}
    return dict((k, v) for k, v in state.items() if k in ('last', 'last_good') and isinstance(v, dict))


def _ts(entry):
    try:
        return float((entry or {}).get('at_ts') or 0)
    except (TypeError, ValueError):
        return 0.0


def due(state, every_days, now=None):
    """Whether this run should drill its archive, and why, as ``(due, reason)``."""
    now = time.time() if now is None else now
    every_days = float(every_days or 0)
    if every_days <= 0:
        return False, 'off (alation_backup_drill_every_days is 0)'
    last_ts = _ts((state or {}).get('last_good'))
    if not last_ts:
        return True, 'no good drill is recorded on this host'
    if last_ts > now + FUTURE_S:
        return True, 'the last good drill is dated %s, ahead of this host\'s clock' % utc_text(last_ts)
    if now - last_ts >= every_days * DAY_S:
        return True, 'the last good drill (%s) is older than %g days' % (utc_text(last_ts), every_days)
    return False, ('the last good drill (%s) is younger than %g days (alation_backup_drill_every_days); the next is '
                   'due after %s' % (utc_text(last_ts), every_days, utc_text(last_ts + every_days * DAY_S)))


def record(directory, verdict, now=None):
    """Keep ``verdict`` (result ok, failed or skipped; reason, archive, duration_s) as the last drill, and as the
    last good one when it passed; returns the new state."""
    now = time.time() if now is None else now
    result = str((verdict or {}).get('result') or '')
    if result not in RESULTS:
        raise ValueError('a drill result is one of %s, not %r' % (', '.join(RESULTS), result))
    entry = dict(result=result, reason=str(verdict.get('reason') or ''), archive=str(verdict.get('archive') or ''),
                 duration_s=round(float(verdict.get('duration_s') or 0), 2), at_ts=round(now, 3), at=utc_text(now))
    state = read_state(directory)
    state['last'] = entry
    if result == 'ok':
        state['last_good'] = entry
    write_file(state_path(directory), json.dumps(state, sort_keys=True), mode=0o644)
    return state
