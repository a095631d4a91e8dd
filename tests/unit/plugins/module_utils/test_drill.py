# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _drill

NOW = 1800000000.0
DAY = 86400.0


@pytest.mark.parametrize('every, last_good, expect, words', [
    (0, NOW - 30 * DAY, False, 'off'),
    (7, None, True, 'no good drill'),
    (7, NOW - 8 * DAY, True, 'older than 7 days'),
    (7, NOW - 7 * DAY, True, 'older than 7 days'),
    (7, NOW - 2 * DAY, False, 'younger than 7 days'),
    (0.5, NOW - 0.25 * DAY, False, 'younger than 0.5 days'),
    # A clock that ran ahead must not put the next drill off for ever.
    (7, NOW + 2 * DAY, True, 'ahead of this host'),
])
def test_due(every, last_good, expect, words):
    state = {'last_good': {'at_ts': last_good}} if last_good else {}
    due, reason = _drill.due(state, every, now=NOW)
    assert due is expect and words in reason


def test_a_failed_drill_does_not_count_as_good(tmp_path):
    d = str(tmp_path)
    _drill.record(d, dict(result='ok', archive='a.tar.gz', duration_s=12.345), now=NOW - 8 * DAY)
    state = _drill.record(d, dict(result='failed', reason='rebuild: broken', archive='b.tar.gz'), now=NOW)
    assert state['last']['result'] == 'failed' and state['last']['reason'] == 'rebuild: broken'
    assert state['last_good']['archive'] == 'a.tar.gz' and state['last_good']['duration_s'] == 12.35
    assert _drill.read_state(d) == state
    # Still due: the failure is no good drill.
    assert _drill.due(state, 7, now=NOW)[0]
    ok = _drill.record(d, dict(result='ok', archive='c.tar.gz'), now=NOW)
    assert ok['last_good']['at'] == '2027-01-15T08:00:00Z' and not _drill.due(ok, 7, now=NOW + 60)[0]
    assert oct(os.stat(_drill.state_path(d)).st_mode & 0o777) == '0o644'


def test_unreadable_or_foreign_state_is_none(tmp_path):
    d = str(tmp_path)
    assert _drill.read_state(d) == {}
    with open(_drill.state_path(d), 'w') as f:
        f.write('not json')
    assert _drill.read_state(d) == {}
    with open(_drill.state_path(d), 'w') as f:
        json.dump({'last_good': 'x', 'other': {}}, f)
    assert _drill.read_state(d) == {}


def test_a_result_outside_the_list_is_refused(tmp_path):
    with pytest.raises(ValueError, match='not done'):
        _drill.record(str(tmp_path), dict(result='not done'))
