# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alation's own backup schedule: the values alation_conf gives, and the window around now."""

import datetime

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _alation_schedule as sched

MINUTE, HOUR, DAY = sched.SCHEDULE_KEYS


def conf(minute, hour, day):
    return {MINUTE: minute, HOUR: hour, DAY: day}


def at(text):
    # 2026-12-01 is a Tuesday.
    return datetime.datetime.strptime(text, '%Y-%m-%d %H:%M')


@pytest.mark.parametrize('value, expected', [
    ('tue,sat', {2, 6}),
    ('TUE, Sat', {2, 6}),
    ('mon-fri', {1, 2, 3, 4, 5}),
    ('sunday', {0}),
    ('0', {0}),
    ('7', {0}),
    ('1-5', {1, 2, 3, 4, 5}),
    ('*', set(range(7))),
    ('', set(range(7))),
    (None, set(range(7))),
])
def test_days(value, expected):
    assert sched.Schedule('0', '0', value).days == expected


@pytest.mark.parametrize('value, expected', [
    ('2', {2}),
    ('0,30', {0, 30}),
    ('*/15', {0, 15, 30, 45}),
    ('10-20/5', {10, 15, 20}),
    (' 5 ', {5}),
    ('*', set(range(60))),
    ('', set(range(60))),
    (None, set(range(60))),
])
def test_minutes(value, expected):
    assert sched.Schedule(value, '0', '*').minutes == expected


@pytest.mark.parametrize('minute, hour, day, text', [
    ('60', '1', '*', "alation.backup.scheduled_minute is '60': '60' is not a number from 0 to 59"),
    ('2', '24', '*', "alation.backup.scheduled_hour is '24': '24' is not a number from 0 to 23"),
    ('2', '1', 'tues', "alation.backup.scheduled_day is 'tues': 'tues' is not a day"),
    ('2', '1', 'fri-mon', "'fri-mon' is an empty range"),
    ('2', 'one', '*', "'one' is not a number from 0 to 23"),
    ('2', '\u0661', '*', 'is not a number'),
    ('2;3', '1', '*', 'is not a number, a range a-b or *'),
])
def test_unreadable_values_are_named(minute, hour, day, text):
    with pytest.raises(sched.ScheduleError) as e:
        sched.check(conf(minute, hour, day), 90, at('2026-12-01 12:00'))
    assert text in str(e.value)
    assert 'alation_backup_alation_schedule_margin to 0' in str(e.value)


@pytest.mark.parametrize('now, schedule, margin, nearest', [
    # Before and after the start, at the margin's edge and just beyond it.
    ('2026-12-01 00:00', ('2', '1', '*'), 90, '2026-12-01T01:02Z'),
    ('2026-12-01 02:32', ('2', '1', '*'), 90, '2026-12-01T01:02Z'),
    ('2026-12-01 02:33', ('2', '1', '*'), 90, None),
    ('2026-11-30 23:32', ('2', '1', '*'), 90, '2026-12-01T01:02Z'),
    ('2026-11-30 23:31', ('2', '1', '*'), 90, None),
    # Across midnight: a start at 23:50 seen from 00:30 the next day.
    ('2026-12-02 00:30', ('50', '23', '*'), 60, '2026-12-01T23:50Z'),
    # Only on the days named: Tuesday the 1st and Saturday the 5th.
    ('2026-12-01 01:00', ('2', '1', 'tue,sat'), 90, '2026-12-01T01:02Z'),
    ('2026-12-02 01:00', ('2', '1', 'tue,sat'), 90, None),
    # Across the week's end: Saturday 23:30 to Sunday 00:15 (the 6th is a Sunday).
    ('2026-12-05 23:30', ('15', '0', 'sun'), 60, '2026-12-06T00:15Z'),
    ('2026-12-06 00:40', ('50', '23', 'sat'), 60, '2026-12-05T23:50Z'),
    ('2026-12-06 00:40', ('50', '23', 'fri'), 60, None),
    # Every hour: always near.
    ('2026-12-01 12:40', ('2', '*', '*'), 30, '2026-12-01T13:02Z'),
    ('2026-12-01 12:40', ('2', '', ''), 10, None),
    # A key not set counts as every.
    ('2026-12-01 12:40', ('2', None, None), 30, '2026-12-01T13:02Z'),
    # The nearest of two starts, now itself first.
    ('2026-12-01 12:00', ('*', '*', '*'), 5, '2026-12-01T12:00Z'),
    # A margin of more than a week sees any start.
    ('2026-12-01 12:00', ('0', '0', 'mon'), 20000, '2026-11-30T00:00Z'),
])
def test_window(now, schedule, margin, nearest):
    found, problem = sched.check(conf(*schedule), margin, at(now))
    assert found['nearest_start'] == nearest
    assert bool(problem) == bool(nearest)
    assert found['margin_minutes'] == margin and found['now'] == at(now).strftime('%Y-%m-%dT%H:%MZ')


def test_margin_0_is_off_and_reads_nothing():
    # Not even an unreadable value counts.
    found, problem = sched.check(conf('2', 'nonsense', '*'), 0, at('2026-12-01 01:02'))
    assert problem == '' and found['nearest_start'] is None and found['next_start'] is None


def test_the_message_names_the_schedule_and_the_variable():
    found, problem = sched.check(conf('2', '1', 'tue,sat'), 90, at('2026-12-01 00:40'))
    assert problem.startswith("Alation's own backup schedule (alation_conf scheduled_minute = '2', "
                              "scheduled_hour = '1', scheduled_day = 'tue,sat') starts a backup at "
                              '2026-12-01T01:02Z UTC (in 22 min), within alation_backup_alation_schedule_margin '
                              '(90 min) of now (2026-12-01T00:40Z UTC)')
    assert "turn Alation's own schedule off" in problem
    assert found == dict(minute='2', hour='1', day='tue,sat', margin_minutes=90, now='2026-12-01T00:40Z',
                         next_start='2026-12-01T01:02Z', nearest_start='2026-12-01T01:02Z')
    problem = sched.check(conf('2', '1', None), 90, at('2026-12-01 01:30'))[1]
    assert "scheduled_day = not set" in problem and '(28 min ago)' in problem


@pytest.mark.parametrize('now, schedule, expected', [
    ('2026-12-01 12:00', ('2', '1', 'tue,sat'), '2026-12-05T01:02Z'),
    ('2026-12-05 01:02', ('2', '1', 'tue,sat'), '2026-12-05T01:02Z'),
    ('2026-12-06 23:59', ('0', '0', 'mon'), '2026-12-07T00:00Z'),
])
def test_next_start(now, schedule, expected):
    assert sched.check(conf(*schedule), 1, at(now))[0]['next_start'] == expected


def test_next_start_rounds_up_to_the_minute():
    now = at('2026-12-01 01:02') + datetime.timedelta(seconds=30)
    assert sched.Schedule('2', '1', '*').next_start(now) == at('2026-12-02 01:02')


def test_utcnow_is_naive_utc():
    now = sched.utcnow()
    assert now.tzinfo is None
    assert abs((now - datetime.datetime.utcnow()).total_seconds()) < 5
