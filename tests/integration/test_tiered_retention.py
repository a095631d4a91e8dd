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

import pytest

from backup_host import SSHD
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


@pytest.mark.skipif(not os.access(SSHD, os.X_OK) or os.geteuid() != 0,
                    reason='needs root and the OpenSSH server (make deps installs openssh-server)')
def test_the_same_tiers_and_pins_on_the_backup_host(sshd, scratch):
    """The off-host copy passes the rules through unchanged: tiers, keep_pinned and a .keep file there."""
    from archives import publish  # pylint: disable=import-outside-toplevel
    from test_far_side import listing, module_args  # pylint: disable=import-outside-toplevel
    from modrun import run_module  # pylint: disable=import-outside-toplevel
    far = sshd.host_dir('alation-tiers')
    stamps = ['202611%02d0102' % d for d in (1, 2, 8, 15, 16, 22, 29)] + ['202610150102', '202609150102']
    older = sorted(os.path.basename(publish(far, ts, uid=sshd.uid)) for ts in stamps)
    pin_file = os.path.join(far, older[0] + '.keep')  # Sep 15, by a .keep file there
    with open(pin_file, 'w') as f:
        f.write('')
    os.chown(pin_file, sshd.uid, sshd.uid)
    src = publish(os.path.join(scratch, 'local'), '202611300102')
    name = os.path.basename(src)
    result = run_module('offsite_copy', module_args(sshd, src, 'alation-tiers', keep_count=1, keep_daily=2,
                                                    keep_weekly=2, keep_monthly=2, keep_pinned=[older[2]]))
    copy = result['copy']
    assert not result['failed'] and copy['result'] == 'ok', result
    kept = [(os.path.basename(k['path'])[:12], k['rules']) for k in copy['retention']['kept']]
    # Nov 30 2026 is the Monday of ISO week 49; Nov 29 (a Sunday) is the newest of week 48.
    # October is the second month that has an archive, Oct 15 its newest.
    assert kept == [('202609150102', ['pinned (.keep)']),
                    ('202610150102', ['monthly 2026-10']),
                    ('202611010102', ['pinned (keep_pinned)']),
                    ('202611290102', ['daily 2026-11-29', 'weekly 2026-W48']),
                    ('202611300102', ['newest good', 'this run', 'count', 'daily 2026-11-30', 'weekly 2026-W49',
                                      'monthly 2026-11'])], kept
    stay = [n for n in older if n[:12] in ('202609150102', '202610150102', '202611010102', '202611290102')]
    assert sorted(copy['retention']['removed']) == sorted(os.path.join(far, n) for o in older if o not in stay
                                                          for n in (o, o + '.sha256'))
    assert listing(far) == sorted([_offsite_marker(), older[0] + '.keep', name, name + '.sha256'] +
                                  [n for o in stay for n in (o, o + '.sha256')])


def _offsite_marker():
    from ansible_collections.alation.backup.plugins.module_utils._offsite import OWNER_MARKER  # pylint: disable=import-outside-toplevel
    return OWNER_MARKER
