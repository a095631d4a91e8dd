# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tiered retention and pins, through the backup role in a real Alation shell.

Archives named across days, ISO weeks and months (each with a .sha256 that matches it), a policy of
2 newest, 3 daily, 2 weekly and 3 monthly, one archive pinned by a ``.keep`` file and one by
alation_backup_keep_pinned. A check run lists what a real run would remove and which rule keeps
each survivor; the real run then removes exactly those, and the pinned archives stay.
"""

import datetime
import glob
import hashlib
import os
import re

from playbook import HOST, run_playbook

TAG = '5-17-0-116556'
ARCHIVE_RE = re.compile(r'^(?P<ts>\d{12})_5-17-0-116556_alation_backup\.tar\.gz$')
RULES = dict(alation_backup_keep_count=2, alation_backup_keep_daily=3, alation_backup_keep_weekly=2,
             alation_backup_keep_monthly=3)
UTC = datetime.timezone.utc


def archives(host):
    return sorted(p for p in glob.glob(host.path('/data2/backup/*')) if ARCHIVE_RE.match(os.path.basename(p)))


def plant(host, when):
    """A valid archive named ``when`` (UTC), with its .sha256, as the role leaves them (0600)."""
    name = '%s_%s_alation_backup.tar.gz' % (when.strftime('%Y%m%d%H%M'), TAG)
    path = host.path('/data2/backup/' + name)
    data = ('an archive of %s' % name).encode()
    with open(path, 'wb') as f:
        f.write(data)
    with open(path + '.sha256', 'w') as f:
        f.write('%s  %s\n# size %d\n' % (hashlib.sha256(data).hexdigest(), name, len(data)))
    for p in (path, path + '.sha256'):
        os.chmod(p, 0o600)
    return path


def when_of(path):
    return datetime.datetime.strptime(ARCHIVE_RE.match(os.path.basename(path)).group('ts'), '%Y%m%d%H%M').replace(tzinfo=UTC)


PERIODS = (('daily', 'alation_backup_keep_daily', lambda d: d.strftime('%Y-%m-%d')),
           ('weekly', 'alation_backup_keep_weekly', lambda d: '%04d-W%02d' % d.isocalendar()[:2]),
           ('monthly', 'alation_backup_keep_monthly', lambda d: d.strftime('%Y-%m')))


def expected_rules(planted, pinned, now):
    """What keeps each planted archive once a run writes one more at ``now``, from the rules' definition."""
    rules = dict((p, []) for p in planted)
    for p in pinned:
        rules[p].append(pinned[p])
    newest_first = sorted(planted, reverse=True)
    counted = [p for p in newest_first if p not in pinned]
    for p in counted[:RULES['alation_backup_keep_count'] - 1]:  # the run's own archive is the first
        rules[p].append('count')
    for tier, var, label in PERIODS:
        seen = [label(now)]
        for p in newest_first:
            if label(when_of(p)) not in seen and len(seen) < RULES[var]:
                seen.append(label(when_of(p)))
                rules[p].append('%s %s' % (tier, label(when_of(p))))
    return rules


def test_tiers_check_mode_lists_removed_and_kept_with_rule_then_a_run_removes_exactly_those(alation_host):
    host = alation_host
    now = datetime.datetime.now(UTC)
    today = now.replace(hour=1, minute=2, second=0, microsecond=0)
    # Two yesterday (the later is the newest there is), then across the weeks and months before.
    planted = [plant(host, today - datetime.timedelta(days=1) + datetime.timedelta(hours=12))]
    days_ago = (1, 2, 3, 5, 9, 12, 16, 23, 34, 45, 70, 100, 130, 160, 200)
    planted += [plant(host, today - datetime.timedelta(days=d)) for d in days_ago]
    by_key = sorted(planted)
    # The oldest pinned by a .keep file beside it, the 4th oldest by name in alation_backup_keep_pinned.
    with open(by_key[0] + '.keep', 'w') as f:
        f.write('kept for the audit of 2026\n')
    pinned = {by_key[0]: 'pinned (.keep)', by_key[3]: 'pinned (keep_pinned)'}
    role = dict(host.role_vars, alation_backup_engine='pg_basebackup',
                alation_backup_keep_pinned=[os.path.basename(by_key[3])], **RULES)

    want = expected_rules(planted, pinned, now)
    newest = by_key[-1]
    gone = sorted(p for p in planted if not want[p])
    assert gone and len(gone) < len(planted) - 4, 'the layout must exercise every rule'

    check = run_playbook('backup.yml', role, check=True)
    assert check.rc == 0, check.output
    record = check.records[HOST]
    print('check mode: removes %s; keeps %s' % ([os.path.basename(p)[:12] for p in gone],
                                                [(os.path.basename(k['path'])[:12], k['rules'])
                                                 for k in record['retention']['kept']]))
    assert sorted(record['retention']['removed']) == sorted(gone + [p + '.sha256' for p in gone])
    kept = dict((k['path'], k['rules']) for k in record['retention']['kept'])
    assert sorted(kept) == sorted(p for p in planted if want[p])
    for path, rules in kept.items():
        # In check mode the newest that is there is the newest good one (the run's is not written yet).
        assert rules == (['newest good'] if path == newest else []) + want[path], (path, rules)
    assert archives(host) == by_key, 'check mode removes nothing'

    run = run_playbook('backup.yml', role)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    own = record['archive']
    assert sorted(record['retention']['removed']) == sorted(gone + [p + '.sha256' for p in gone]), \
        'check mode listed exactly what went'
    assert archives(host) == sorted(set(planted) - set(gone)) + [own]
    assert not any(os.path.exists(p + '.sha256') for p in gone)
    kept = dict((k['path'], k['rules']) for k in record['retention']['kept'])
    assert kept[own][:3] == ['newest good', 'this run', 'count']
    assert kept[own][3:] == ['daily %s' % now.strftime('%Y-%m-%d'), 'weekly %04d-W%02d' % now.isocalendar()[:2],
                             'monthly %s' % now.strftime('%Y-%m')]
    for path in set(planted) - set(gone):
        assert kept[path] == want[path], (path, kept[path])
    # The pinned archives stay, the .keep beside its archive; the oldest is 200 days old and in no tier.
    assert os.path.exists(by_key[0]) and os.path.exists(by_key[0] + '.keep') and os.path.exists(by_key[3])

    # A second run (the next minute) keeps the same pins, whatever it removes.
    again = run_playbook('backup.yml', role)
    assert again.rc == 0, again.output
    assert os.path.exists(by_key[0]) and os.path.exists(by_key[3])
    assert not set(again.records[HOST]['retention']['removed']) & set([by_key[0], by_key[3]])


def test_tiers_with_keep_count_0_are_refused_before_anything_is_touched(alation_host):
    host = alation_host
    old = plant(host, datetime.datetime(2026, 1, 1, 1, 2, tzinfo=UTC))
    run = run_playbook('backup.yml', dict(host.role_vars, alation_backup_engine='pg_basebackup',
                                          alation_backup_keep_count=0, alation_backup_keep_daily=7))
    assert run.rc != 0
    assert 'refusing the run, nothing was touched' in run.output and 'alation_backup_keep_daily' in run.output
    assert archives(host) == [old]
