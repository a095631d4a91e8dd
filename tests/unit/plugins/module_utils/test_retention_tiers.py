# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tiered retention (daily, weekly, monthly, in UTC by the names' time) and pins: which rule keeps each archive."""

import calendar
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _retention as R
from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name
from ansible_collections.alation.backup.plugins.module_utils._host import HostError

TAG = '5-17-0-116556'
# Tuesday 2026-12-01 12:00 UTC (ISO week 2026-W49).
NOW = calendar.timegm(time.strptime('202612011200', '%Y%m%d%H%M'))
DIR = '/srv/b'


def listing(*stamps, extra=()):
    files = {}
    for ts in stamps:
        files[archive_name(ts, TAG)] = dict(size=100, mtime=0.0)
        files[archive_name(ts, TAG) + '.sha256'] = dict(size=80, mtime=0.0)
    for name in extra:
        files[name] = dict(size=0, mtime=0.0)
    return files


def plan(files, now=NOW, **rules):
    return R.plan_listing(DIR, files, rules, now=now, verify_newest=lambda path: None)


def kept(planned):
    return dict((k['path'].rsplit('/', 1)[1][:12], k['rules']) for k in planned['kept'])


def removed(planned):
    return [e['path'].rsplit('/', 1)[1][:12] for e in planned['remove'] if not e['path'].endswith('.sha256')]


# Two a day for the last 10 days, one a week before that back to September.
STAMPS = ['202612010200', '202612010100'] + ['202611%02d%s' % (d, h) for d in range(22, 31) for h in ('0100', '1300')] + [
    '202611150100', '202611080100', '202611010100', '202610250100', '202610180100', '202610110100', '202610040100',
    '202609270100', '202609200100']


def test_each_tier_keeps_the_newest_of_its_last_n_periods_and_says_so():
    planned = plan(listing(*STAMPS), keep_count=2, keep_daily=3, keep_weekly=3, keep_monthly=3)
    k = kept(planned)
    # 2026-11-30 is the Monday of ISO week 49: the week is Dec 1's already, the month (November) is not.
    assert k == {
        '202612010200': ['newest good', 'count', 'daily 2026-12-01', 'weekly 2026-W49', 'monthly 2026-12'],
        '202612010100': ['count'],
        '202611301300': ['daily 2026-11-30', 'monthly 2026-11'],
        '202611291300': ['daily 2026-11-29', 'weekly 2026-W48'],
        '202611221300': ['weekly 2026-W47'],
        '202610250100': ['monthly 2026-10'],
    }
    assert planned['refused'] is None
    # Everything not kept goes, with its .sha256, oldest first; nothing kept is removed.
    gone = removed(planned)
    assert not set(gone) & set(k) and set(gone) | set(k) == set(STAMPS)
    assert gone == sorted(gone)


def test_iso_weeks_and_utc_periods():
    # 2026-11-30 is a Monday: ISO week 49 starts there; 2027-01-01 (a Friday) is in 2026-W53.
    at = calendar.timegm(time.strptime('202611300000', '%Y%m%d%H%M'))
    assert R.period('weekly', at) == '2026-W49' and R.period('weekly', at - 60) == '2026-W48'
    new_year = calendar.timegm(time.strptime('202701012330', '%Y%m%d%H%M'))
    assert R.period('weekly', new_year) == '2026-W53'
    assert (R.period('daily', new_year), R.period('monthly', new_year)) == ('2027-01-01', '2027-01')


def test_exact_plan_over_days_weeks_and_months():
    stamps = ['202612010100', '202611301300', '202611300100', '202611290100', '202611220100', '202611150100',
              '202610310100', '202610010100', '202609300100', '202608150100']
    planned = plan(listing(*stamps), keep_count=1, keep_daily=2, keep_weekly=2, keep_monthly=3)
    assert kept(planned) == {
        '202612010100': ['newest good', 'count', 'daily 2026-12-01', 'weekly 2026-W49', 'monthly 2026-12'],
        '202611301300': ['daily 2026-11-30', 'monthly 2026-11'],
        '202611290100': ['weekly 2026-W48'],
        '202610310100': ['monthly 2026-10'],
    }
    assert removed(planned) == ['202608150100', '202609300100', '202610010100', '202611150100', '202611220100',
                                '202611300100']
    why = [e['why'] for e in planned['remove'] if e['path'].endswith('202611300100_%s_alation_backup.tar.gz' % TAG)]
    assert why == ['beyond the 1 newest (keep_count); not the newest of one of the last 2 days (keep_daily), '
                   '2 ISO weeks (keep_weekly), 3 months (keep_monthly)']


def test_the_tiers_count_periods_that_have_an_archive_so_a_pause_ages_nothing_out_at_once():
    # Backups stopped on Nov 10: keep_daily 3 still keeps the last three days that have one.
    planned = plan(listing('202611100100', '202611090100', '202611080100', '202611070100'), keep_count=1, keep_daily=3)
    assert removed(planned) == ['202611070100']
    assert kept(planned)['202611080100'] == ['daily 2026-11-08']


def test_pins_keep_forever_and_do_not_count_toward_keep_count():
    stamps = ['202612010100', '202611300100', '202611290100', '202611280100', '202611270100']
    files = listing(*stamps, extra=[archive_name('202611270100', TAG) + R.PIN_EXT])
    planned = plan(files, keep_count=2, keep_pinned=[archive_name('202611300100', TAG)])
    k = kept(planned)
    assert k['202611270100'] == ['pinned (.keep)'] and k['202611300100'] == ['pinned (keep_pinned)']
    # The two pinned are not counted: the two newest unpinned stay by count.
    assert k['202612010100'] == ['newest good', 'count'] and k['202611290100'] == ['count']
    assert removed(planned) == ['202611280100']
    # A pin given as a path is the same pin; the .keep file is never a candidate for removal.
    planned = plan(files, keep_count=1, keep_pinned=['/anywhere/' + archive_name('202611300100', TAG)])
    assert removed(planned) == ['202611280100', '202611290100']
    assert not [e for e in planned['remove'] + planned['orphans'] if e['path'].endswith(R.PIN_EXT)]


def test_make_room_for_takes_this_period_for_the_archive_about_to_come():
    stamps = ['202612010100', '202611300100', '202611290100']
    # Without it: keep_daily 2 keeps Dec 1 and Nov 30. With the next archive (today) counted, Nov 30 is the
    # second day already, and Nov 29 goes; the newest stays as it always does.
    assert removed(plan(listing(*stamps), keep_count=1, keep_daily=2)) == ['202611290100']
    planned = R.plan_listing(DIR, listing(*stamps), dict(keep_count=1, keep_daily=2), make_room_for=1, now=NOW,
                             verify_newest=lambda path: None)
    assert kept(planned) == {'202612010100': ['newest good'], '202611300100': ['daily 2026-11-30']}
    assert removed(planned) == ['202611290100']


def test_archives_named_in_the_future_take_no_period():
    planned = plan(listing('202612150100', '202612010100', '202611300100'), keep_count=1, keep_daily=1)
    assert kept(planned) == {'202612010100': ['newest good', 'count', 'daily 2026-12-01']}
    assert removed(planned) == ['202611300100'] and len(planned['future']) == 1


def test_a_refused_plan_keeps_all_and_says_why_for_each():
    planned = R.plan_listing(DIR, listing('202612010100', '202611010100'), dict(keep_count=1), now=NOW,
                             verify_newest=lambda path: 'damaged')
    assert planned['remove'] == [] and planned['refused']
    assert kept(planned) == {'202612010100': ['newest', 'count'], '202611010100': ['the newest does not verify']}


@pytest.mark.parametrize('rules,text', [
    (dict(keep_count=1, keep_daily=-1), 'keep_daily=-1 must be 0 (off) or more days'),
    (dict(keep_count=1, keep_monthly=-2), 'keep_monthly=-2 must be 0 (off) or more months'),
    (dict(keep_count=1, keep_hourly=3), 'unknown retention rule(s) keep_hourly'),
    (dict(keep_count=1, keep_pinned=['backup-of-june.tar.gz']), "'backup-of-june.tar.gz' is not an archive name"),
    (dict(keep_count=1, keep_weekly='four'), "keep_weekly='four' must be a whole number"),
    (dict(keep_daily=7), 'keep_count=0: keep at least 1 archive'),
])
def test_bad_rules_are_refused_naming_the_value(rules, text):
    with pytest.raises(HostError) as e:
        plan(listing('202612010100'), **rules)
    assert text in str(e.value)


def test_rules_from_module_params():
    params = dict(keep_count=7, keep_days=0, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_pinned=[], src='x')
    assert R.rules_from(params) == dict(keep_count=7, keep_days=0, keep_daily=7, keep_weekly=4, keep_monthly=12,
                                        keep_pinned=[])
    assert set(R.rules_argument_spec()) == set(R.RULES) - set(['keep_count', 'keep_days'])
