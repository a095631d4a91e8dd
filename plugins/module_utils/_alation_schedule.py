# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alation's own backup schedule, and whether it starts near now.

Alation runs its own Backup V1 at the times the alation_conf keys
``alation.backup.scheduled_minute``, ``_hour`` and ``_day`` give (UTC from
Alation 2022.3), in the same staging dirs as this collection: two backups at
once clear each other's staging dir. See shared/reference/alation.md.

The values are read like cron's fields, which covers what is documented (a
number, ``tue,sat``): ``*`` or empty for every, numbers, ``a-b`` ranges,
``/step`` and comma lists; days also by name (``sun`` .. ``sat``, 0 or 7 for
Sunday). A key alation_conf does not have counts as ``*``: Alation's backup
could then start at any such time. Pure functions: ``now`` is always passed in.
"""

import datetime
import re

MINUTE_KEY = 'alation.backup.scheduled_minute'
HOUR_KEY = 'alation.backup.scheduled_hour'
DAY_KEY = 'alation.backup.scheduled_day'
SCHEDULE_KEYS = (MINUTE_KEY, HOUR_KEY, DAY_KEY)
# The role variable that sets the margin, for messages.
MARGIN_VARIABLE = 'alation_backup_alation_schedule_margin'

# cron's day numbers: 0 (and 7) is Sunday.
DAY_NAMES = ('sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat')
_FULL_DAY_NAMES = ('sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday')
_ITEM = re.compile(r'(?P<first>[0-9a-z]+)(?:-(?P<last>[0-9a-z]+))?(?:/(?P<step>[0-9]+))?')
# ASCII digits only: str.isdigit() also accepts other scripts' digits.
_DIGITS = re.compile(r'[0-9]+')
_STEP_ALL = re.compile(r'\*/(?P<step>[0-9]+)')
WEEK_MINUTES = 7 * 24 * 60


class ScheduleError(ValueError):
    """A schedule value that cannot be read; the message names the key, the value and what to do."""


def _number(key, value, token, low, high, names=None):
    token = token.lower()
    if names:
        for table in names:
            if token in table:
                return table.index(token)
    if _DIGITS.fullmatch(token):
        n = int(token)
        if low <= n <= high:
            return n
    wanted = 'a day (sun to sat, or 0 to 7)' if names else 'a number from %d to %d' % (low, high)
    raise ScheduleError('%s is %r: %r is not %s' % (key, value, token, wanted))


def parse_field(key, value, low, high, names=None):
    """The set of numbers ``value`` (one alation_conf value) stands for, from ``low`` to ``high``.

    None (not set), empty and ``*`` stand for every number.
    """
    text = (value or '').strip()
    every = set(range(low, high + 1))
    if text in ('', '*'):
        return every
    found = set()
    for item in text.replace(' ', '').split(','):
        m = _STEP_ALL.fullmatch(item)
        if m:
            first, last, step = low, high, int(m.group('step'))
        else:
            m = _ITEM.fullmatch(item.lower())
            if not m:
                raise ScheduleError('%s is %r: %r is not a number, a range a-b or *' % (key, value, item))
            first = _number(key, value, m.group('first'), low, high, names)
            last = _number(key, value, m.group('last'), low, high, names) if m.group('last') else first
            step = int(m.group('step') or 1)
            if m.group('step') and not m.group('last'):
                # cron: "5/10" is 5, 15, 25 ... up to the end.
                last = high
        if step < 1 or last < first:
            raise ScheduleError('%s is %r: %r is an empty range' % (key, value, item))
        found.update(range(first, last + 1, step))
    return found


class Schedule(object):
    """Alation's own backup schedule from the three alation_conf values (None: not set)."""

    def __init__(self, minute, hour, day):
        self.values = {MINUTE_KEY: minute, HOUR_KEY: hour, DAY_KEY: day}
        self.minutes = parse_field(MINUTE_KEY, minute, 0, 59)
        self.hours = parse_field(HOUR_KEY, hour, 0, 23)
        # 7 is Sunday too; keep 0 to 6.
        self.days = set(d % 7 for d in parse_field(DAY_KEY, day, 0, 7, (DAY_NAMES, _FULL_DAY_NAMES)))

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.get(MINUTE_KEY), conf.get(HOUR_KEY), conf.get(DAY_KEY))

    def starts_at(self, when):
        """Whether a run starts at the minute ``when`` (a UTC datetime)."""
        # Python: Monday is 0; cron: Sunday is 0.
        return (when.minute in self.minutes and when.hour in self.hours
                and (when.weekday() + 1) % 7 in self.days)

    def describe(self):
        """The schedule in words, with the values it was read from."""
        values = ', '.join('%s = %s' % (key.rsplit('.', 1)[1], 'not set' if v is None else repr(v))
                           for key, v in self.values.items())
        return 'Alation\'s own backup schedule (alation_conf %s)' % values

    def nearest_start(self, now, margin):
        """The start closest to ``now`` within ``margin`` minutes before or after it, or None.

        The schedule repeats every week, so a margin of half a week or more
        sees every start.
        """
        now = now.replace(second=0, microsecond=0)
        margin = min(int(margin), WEEK_MINUTES)
        for offset in range(0, margin + 1):
            for sign in (1, -1):
                when = now + datetime.timedelta(minutes=sign * offset)
                if self.starts_at(when):
                    return when
        return None

    def next_start(self, now):
        """The first start at or after ``now`` (to the minute), or None when the schedule never starts."""
        first = now.replace(second=0, microsecond=0)
        if first < now:
            first += datetime.timedelta(minutes=1)
        for offset in range(0, WEEK_MINUTES + 1):
            when = first + datetime.timedelta(minutes=offset)
            if self.starts_at(when):
                return when
        return None


def utcnow():
    """Now, in UTC (the clock Alation's schedule uses). Tests replace this."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def iso(when):
    return when.strftime('%Y-%m-%dT%H:%MZ') if when else None


def check(conf, margin, now):
    """Look at Alation's own schedule against now; return (found, problem).

    ``found`` is what the record shows: the three values, ``next_start``,
    ``nearest_start`` (within the margin, else None), ``margin_minutes``.
    ``problem`` is the refusal message, or '' when the margin is 0 (off) or
    no start lies within it. Raises ScheduleError for a value that cannot be read.
    """
    found = dict(minute=conf.get(MINUTE_KEY), hour=conf.get(HOUR_KEY), day=conf.get(DAY_KEY),
                 margin_minutes=margin, next_start=None, nearest_start=None, now=iso(now))
    if margin <= 0:
        return found, ''
    try:
        schedule = Schedule.from_conf(conf)
    except ScheduleError as e:
        raise ScheduleError(
            '%s; Alation\'s own backup schedule cannot be read, so this run cannot keep clear of it. Fix the value '
            '(alation_conf <key> -s <value> in the Alation shell), or set %s to 0 to skip this check'
            % (e, MARGIN_VARIABLE))
    found['next_start'] = iso(schedule.next_start(now))
    nearest = schedule.nearest_start(now, margin)
    found['nearest_start'] = iso(nearest)
    if nearest is None:
        return found, ''
    minutes = int(round((nearest - now.replace(second=0, microsecond=0)).total_seconds() / 60))
    when = ('now' if minutes == 0 else 'in %d min' % minutes if minutes > 0 else '%d min ago' % -minutes)
    problem = (
        '%s starts a backup at %s UTC (%s), within %s (%d min) of now (%s UTC): Alation\'s backup uses the same '
        'staging dirs and the two would clear each other\'s. Run this backup at another time, or turn Alation\'s '
        'own schedule off now that this collection backs up (see the README, "Alation\'s own backup"), or change '
        '%s (0 turns this check off)'
        % (schedule.describe(), iso(nearest), when, MARGIN_VARIABLE, margin, iso(now), MARGIN_VARIABLE))
    return found, problem
