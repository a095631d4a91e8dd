# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bounded incremental chain: when a FULL is due (full_every, full_every_days), and how the older chain
leaves the catalog (pg_probackup delete -i), against recorded catalogs and a pg_probackup double that keeps
its catalog as the real one does (delete -i takes a backup's children with it)."""

import json
import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _pg_probackup as pp

from .runner_double import runner

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'pg_probackup')
CAT = '/data2/backup/pgbackup'
DAY = 86400
T0 = pp.id_key('TP5HJN')  # 2026-11-27 07:45:23 UTC, a recorded FULL
DEAD = {'alive': False, 'pid': 10063, 'reused': False}
ALIVE = {'alive': True, 'pid': 4242, 'reused': False}


def backups_of(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return pp.instance_backups(pp.parse_show(f.read()), 'alation')


def base36(n):
    digits = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'
    out = ''
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


def utc(epoch):
    import time
    return time.strftime('%Y-%m-%d %H:%M:%S+00', time.gmtime(epoch))


def entry(epoch, mode, parent=None, status='OK'):
    """A show entry as pg_probackup writes it: the id is the start time in base 36."""
    e = {'id': base36(epoch), 'backup-mode': mode, 'status': status, 'start-time': utc(epoch)}
    if parent:
        e['parent-backup-id'] = parent
    return e


def chain(length, start=T0, step=3600):
    """A FULL at ``start`` and ``length - 1`` DELTAs after it, ``step`` seconds apart."""
    out = [entry(start, 'FULL')]
    for i in range(1, length):
        out.append(entry(start + i * step, 'DELTA', out[-1]['id']))
    return out


# -- start times ------------------------------------------------------------------------

@pytest.mark.parametrize('start_time, expected', [
    ('2026-11-27 07:45:23+00', T0),
    ('2026-11-27 10:45:23+03', T0),
    ('2026-11-27 13:15:23+05:30', T0),
    ('2026-11-27 03:45:23-04', T0),
    ('2026-11-27 07:45:23.123+0000', T0),
])
def test_start_epoch_reads_shows_start_time_in_any_offset(start_time, expected):
    assert pp.start_epoch({'id': 'X', 'start-time': start_time}) == expected


@pytest.mark.parametrize('start_time', [None, '', 'yesterday', '2026-11-27 07:45:23'])
def test_start_epoch_falls_back_to_the_id(start_time):
    # The id is the start time in base 36; a time without its offset is not trusted.
    assert pp.start_epoch({'id': 'TP5HJN', 'start-time': start_time}) == T0
    assert pp.start_epoch({'id': None, 'start-time': start_time}) is None


def test_recorded_start_times_match_their_ids():
    for b in backups_of('show-after-concurrency-tests.json'):
        assert pp.start_epoch(b) == pp.id_key(b['id'])


# -- when a FULL is due -------------------------------------------------------------------

def decide(backups, full_every=7, full_every_days=7, now=None, mode='auto'):
    return pp.choose_mode(mode, 'delta', backups, full_every, full_every_days, T0 + DAY if now is None else now)


@pytest.mark.parametrize('length, mode, words', [
    (1, 'DELTA', 'DELTA on %s: 2 of 7 in this chain' % base36(T0)),
    (5, 'DELTA', 'DELTA on %s: 6 of 7 in this chain' % base36(T0 + 4 * 3600)),
    (6, 'DELTA', 'DELTA on %s: 7 of 7 in this chain, whose FULL %s is 1.0 days old (full_every_days 7)'
     % (base36(T0 + 5 * 3600), base36(T0))),
    (7, 'FULL', 'FULL: the chain since FULL %s already has 6 incrementals (full_every 7)' % base36(T0)),
    (9, 'FULL', 'already has 8 incrementals (full_every 7)'),
])
def test_count_rule_a_full_then_at_most_six_incrementals(length, mode, words):
    got, reason = decide(chain(length)[::-1])
    assert got == mode
    assert words in reason, reason


@pytest.mark.parametrize('full_every, lengths_to_full', [(1, [1, 2]), (2, [2, 3]), (3, [3])])
def test_count_rule_small_values(full_every, lengths_to_full):
    for length in range(1, 5):
        got = decide(chain(length), full_every=full_every)[0]
        assert got == ('FULL' if length >= full_every else 'DELTA'), (full_every, length)
    assert decide(chain(2), full_every=2)[1].endswith('already has 1 incremental (full_every 2)')


@pytest.mark.parametrize('age, mode', [
    (7 * DAY - 1, 'DELTA'),
    (7 * DAY, 'FULL'),
    (8.1 * DAY, 'FULL'),
])
def test_days_rule_boundary(age, mode):
    got, reason = decide(chain(2, step=60), full_every=0, now=T0 + age)
    assert got == mode, reason
    if mode == 'FULL':
        assert reason == "FULL: the chain's FULL %s is %.1f days old (full_every_days 7)" % (base36(T0), age / DAY)
    else:
        assert reason == 'DELTA on %s: 3 in this chain (full_every off), whose FULL %s is 7.0 days old ' \
                         '(full_every_days 7)' % (base36(T0 + 60), base36(T0))


def test_days_rule_takes_fractions():
    assert decide(chain(2), full_every=0, full_every_days=0.5, now=T0 + 0.5 * DAY)[0] == 'FULL'
    assert decide(chain(2), full_every=0, full_every_days=0.5, now=T0 + 0.4 * DAY)[0] == 'DELTA'


def test_whichever_comes_first_and_both_are_named():
    # Count first: a busy host with 7 backups in a day.
    assert 'full_every 7' in decide(chain(7, step=600), now=T0 + DAY)[1]
    # Days first: a host backed up every other day.
    got, reason = decide(chain(4, step=2 * DAY), now=T0 + 7 * DAY)
    assert got == 'FULL' and 'full_every_days 7' in reason and 'full_every 7' not in reason
    # Both at once.
    got, reason = decide(chain(7, step=DAY + 60), now=T0 + 8 * DAY)
    assert got == 'FULL'
    assert reason == ("FULL: the chain since FULL %s already has 6 incrementals (full_every 7) and the chain's "
                      "FULL %s is 8.0 days old (full_every_days 7)" % (base36(T0), base36(T0)))


def test_zero_is_off():
    long_old = chain(40, step=DAY)
    got, reason = decide(long_old, full_every=0, full_every_days=0, now=T0 + 100 * DAY)
    assert got == 'DELTA'
    assert reason == 'DELTA on %s: 41 in this chain (full_every off), whose FULL %s is 100.0 days old ' \
                     '(full_every_days off)' % (long_old[-1]['id'], base36(T0))
    assert decide(chain(3), full_every=0, full_every_days=0, now=None, mode='auto')[0] == 'DELTA'


def test_the_chain_counted_is_the_newest_backups_own():
    # An older, longer chain in the catalog does not count: only the newest backup's chain down to its FULL.
    old = chain(9, start=T0)
    new = chain(2, start=T0 + DAY)
    assert decide(old + new, now=T0 + DAY + 7200)[1].startswith('DELTA on %s: 3 of 7' % new[-1]['id'])


def test_forced_modes_ignore_the_bound():
    assert decide(chain(1), full_every=1, mode='delta')[0] == 'DELTA'
    assert decide(chain(1), full_every=0, full_every_days=0, mode='full') == ('FULL', 'backup_mode is full')


def test_recorded_catalog_with_three_backups_in_its_chain():
    # TP5HJN <- TP5HK2 <- TP5HLO, with the killed FULL TP5HLM (dead RUNNING) beside it.
    got, reason = decide(backups_of('show-after-killed-then-delta.json'), full_every=3, now=T0 + 60)
    assert (got, reason) == ('FULL', 'FULL: the chain since FULL TP5HJN already has 2 incrementals (full_every 3)')
    assert decide(backups_of('show-after-killed-then-delta.json'), full_every=4, now=T0 + 60)[1].startswith(
        'DELTA on TP5HLO: 4 of 4 in this chain')


# -- the plan: recovery first, then the bound, then what goes ---------------------------------------

def plan(backups, running=None, on_broken='reset', full_every=7, full_every_days=7, now=T0 + 600, mode='auto'):
    return pp.plan_backup(backups, running or {}, mode, 'delta', on_broken, CAT, 'alation', full_every,
                          full_every_days, now)


def test_plan_a_due_full_would_delete_the_whole_older_chain():
    p = plan(backups_of('show-after-killed-then-delta.json'), {'TP5HLM': DEAD}, full_every=3)
    assert p['mode'] == 'FULL' and p['prune']
    assert p['would_prune'] == [
        dict(id='TP5HJN', mode='FULL', status='OK', with_children=['TP5HK2', 'TP5HLO']),
        # The killed FULL its run left RUNNING: older than the new FULL, so it goes too, by its own id.
        dict(id='TP5HLM', mode='FULL', status='RUNNING', with_children=[])]
    assert pp.pruned_ids(p['would_prune']) == ['TP5HJN', 'TP5HK2', 'TP5HLM', 'TP5HLO']


def test_plan_an_incremental_deletes_nothing():
    p = plan(backups_of('show-after-full-delta.json'))
    assert p['mode'] == 'DELTA' and not p['prune'] and p['would_prune'] == []


def test_plan_unbounded_chain_never_deletes():
    p = plan(backups_of('show-after-killed-backup.json'), {'TP5HLM': DEAD}, on_broken='repair', full_every=0,
             full_every_days=0, mode='full')
    assert p['mode'] == 'FULL' and not p['prune']
    p = plan(backups_of('show-case-a-delta-without-full.json'), on_broken='repair', full_every=0,
             full_every_days=0)
    assert p['mode'] == 'FULL' and not p['prune']


def test_plan_forced_full_deletes_nothing():
    # backup_mode=full is what the role asks with incremental off: the catalog is removed whole afterwards.
    p = plan(backups_of('show-after-full-delta.json'), mode='full')
    assert p['mode'] == 'FULL' and not p['prune']


def test_plan_after_repair_the_bound_counts_what_is_left():
    # The killed TP5HLM is deleted by the repair; TP5HJN <- TP5HK2 is then 2 long: full_every 2 is due.
    p = plan(backups_of('show-after-killed-backup.json'), {'TP5HLM': DEAD}, on_broken='repair', full_every=2)
    assert (p['recovery'], p['mode']) == ('repair', 'FULL')
    assert p['reason'] == ('broken entries deleted (backup TP5HLM is RUNNING but its process 10063 is gone); then '
                           'FULL: the chain since FULL TP5HJN already has 1 incremental (full_every 2)')
    assert pp.pruned_ids(p['would_prune']) == ['TP5HJN', 'TP5HK2']
    # Not due: the repair goes on with a DELTA, nothing pruned.
    p = plan(backups_of('show-after-killed-backup.json'), {'TP5HLM': DEAD}, on_broken='repair')
    assert (p['mode'], p['would_prune']) == ('DELTA', [])


def test_plan_after_reset_there_is_nothing_left_to_delete():
    p = plan(backups_of('show-after-killed-backup.json'), {'TP5HLM': DEAD}, on_broken='reset')
    assert (p['recovery'], p['mode'], p['prune'], p['would_prune']) == ('reset', 'FULL', True, [])


def test_plan_a_broken_parent_chain_full_deletes_the_unusable_rest():
    backups = [entry(T0 + 120, 'DELTA', base36(T0 + 60)), entry(T0 + 60, 'DELTA', base36(T0), status='CORRUPT'),
               entry(T0, 'FULL')]
    p = plan(backups)
    assert p['mode'] == 'FULL' and p['reason'].startswith('parent %s' % base36(T0 + 60))
    assert pp.pruned_ids(p['would_prune']) == [base36(T0), base36(T0 + 60), base36(T0 + 120)]


# -- prune_plan ---------------------------------------------------------------------------------

def test_prune_plan_recorded_catalog_of_several_chains():
    backups = backups_of('show-after-concurrency-tests.json')
    steps = pp.prune_plan(backups, 'TP5HN7')
    assert [(s['id'], s['with_children']) for s in steps] == [
        ('TP5HJN', ['TP5HK2', 'TP5HLO', 'TP5HMJ']), ('TP5HMH', []), ('TP5HMR', []), ('TP5HMS', [])]
    assert 'TP5HN7' not in pp.pruned_ids(steps)


def test_prune_plan_keeps_what_is_newer_than_the_new_full_and_anything_in_flight():
    full = entry(T0, 'FULL')
    delta = entry(T0 + 60, 'DELTA', full['id'])
    running = entry(T0 + 90, 'FULL', status='RUNNING')
    new = entry(T0 + 120, 'FULL')
    later = entry(T0 + 180, 'FULL', status='RUNNING')
    backups = [later, new, running, delta, full]
    steps = pp.prune_plan(backups, new['id'], {running['id']: ALIVE, later['id']: ALIVE})
    assert pp.pruned_ids(steps) == [full['id'], delta['id']]
    # A live backup built on an old FULL keeps that FULL (delete -i would take the live one with it).
    child = entry(T0 + 100, 'DELTA', full['id'], status='RUNNING')
    steps = pp.prune_plan([new, child, delta, full], new['id'], {child['id']: ALIVE})
    assert pp.pruned_ids(steps) == [delta['id']]


def test_prune_plan_an_orphan_goes_by_its_own_id():
    orphan = entry(T0 + 60, 'DELTA', 'GONE00', status='ORPHAN')
    new = entry(T0 + 120, 'FULL')
    assert pp.prune_plan([new, orphan], new['id']) == [
        dict(id=orphan['id'], mode='DELTA', status='ORPHAN', with_children=[])]
    assert pp.prune_plan([new], new['id']) == []


# -- run_backup with a pg_probackup double ---------------------------------------------------------

def add_instance(catalog, instance='alation'):
    """What pg_probackup add-instance leaves in ``catalog``: the instance's dirs, and its pg_probackup.conf."""
    for sub in ('backups', 'wal'):
        os.makedirs(os.path.join(str(catalog), sub, instance), exist_ok=True)
    with open(os.path.join(str(catalog), 'backups', instance, 'pg_probackup.conf'), 'w') as f:
        f.write('# Backup instance information\npgdata = /data1/pgsql/data\n')


class FakeProbackup(object):
    """pg_probackup answering from a catalog in memory, as recorded: backup logs its id, validate makes it
    OK, delete -i takes the backup and every backup built on it, and fails on an id it does not have."""

    def __init__(self, backups=None, now=T0):
        self.backups = list(backups or [])
        self.now = now
        self.fail_delete = False

    def __call__(self, argv):
        cmd = argv[1]
        if cmd == 'show':
            return 0, json.dumps([{'instance': 'alation', 'backups': pp.newest_first(self.backups)}]), ''
        if cmd == 'backup':
            mode = argv[argv.index('-b') + 1]
            parent = None if mode == 'FULL' else pp.valid_parent(self.backups)['id']
            new = entry(self.now, mode, parent, status='DONE')
            self.backups.append(new)
            return 0, '', 'INFO: Backup start, pg_probackup version: 2.5.15, instance: alation, backup ID: %s, ' \
                          'backup mode: %s\nINFO: Backup %s completed\n' % (new['id'], mode, new['id'])
        if cmd == 'add-instance':
            add_instance(argv[argv.index('-B') + 1], argv[argv.index('--instance') + 1])
            return 0, '', "INFO: Instance '%s' successfully initialized\n" % argv[argv.index('--instance') + 1]
        if cmd == 'validate':
            bid = argv[argv.index('-i') + 1]
            for b in self.backups:
                if b['id'] == bid:
                    b['status'] = 'OK'
            return 0, '', 'INFO: Backup %s is valid\n' % bid
        if cmd == 'delete':
            bid = argv[argv.index('-i') + 1]
            if self.fail_delete or bid not in [b['id'] for b in self.backups]:
                return 1, '', 'ERROR: Failed to find backup %s, cannot delete\n' % bid
            gone = pp.descendants(self.backups, [bid])
            self.backups = [b for b in self.backups if b['id'] not in gone]
            return 0, '', ''.join('INFO: Delete: %s\n' % g for g in sorted(gone))
        return 0, '', ''

    def ids(self):
        return [b['id'] for b in pp.newest_first(self.backups)]


@pytest.fixture
def catalog(tmp_path):
    add_instance(tmp_path / 'pgbackup')
    fake = FakeProbackup()
    cat = pp.Catalog(runner({'pg_probackup': fake}), '/usr/bin/pg_probackup', str(tmp_path / 'pgbackup'), 'alation')
    return cat, fake


def params(**kw):
    p = dict(backup_mode='auto', incremental_mode='delta', on_broken_chain='reset', pgdata='/data1/pgsql/data',
             stream=True, compress_algorithm=None, compression_level=None, validate=True, full_every=3,
             full_every_days=7)
    p.update(kw)
    return p


def deletes(cat):
    return [c[c.index('-i') + 1] for c in cat.runner.module.calls if c[1] == 'delete']


def test_full_every_plus_two_runs_wrap_once_and_leave_one_chain(catalog):
    cat, fake = catalog
    modes, reasons, pruned = [], [], []
    for run in range(5):
        fake.now = T0 + run * 3600
        res = pp.run_backup(cat, params(), False, now=fake.now + 30)
        modes.append(res['mode_taken'])
        reasons.append(res['reason'])
        pruned.append(res['pruned'])
        assert res['prune_error'] == ''
        if run == 0:
            # Nothing older to delete: no delete, no second look at the catalog.
            assert [c[1] for c in cat.runner.module.calls] == ['show', 'backup', 'validate', 'show']
    assert modes == ['FULL', 'DELTA', 'DELTA', 'FULL', 'DELTA']
    first, second = base36(T0), base36(T0 + 3 * 3600)
    assert reasons[2].startswith('DELTA on %s: 3 of 3 in this chain' % base36(T0 + 3600))
    assert reasons[3] == 'FULL: the chain since FULL %s already has 2 incrementals (full_every 3)' % first
    assert pruned == [[], [], [], [first, base36(T0 + 3600), base36(T0 + 7200)], []]
    # One delete -i, of the old FULL: its DELTAs went with it.
    assert deletes(cat) == [first]
    assert fake.ids() == [base36(T0 + 4 * 3600), second]


def test_days_rule_wraps_a_daily_chain(catalog):
    cat, fake = catalog
    modes = []
    for day in range(4):
        fake.now = T0 + day * DAY
        modes.append(pp.run_backup(cat, params(full_every=0, full_every_days=2), False, now=fake.now + 30)
                     ['mode_taken'])
    assert modes == ['FULL', 'DELTA', 'FULL', 'DELTA']
    assert deletes(cat) == [base36(T0)]


def test_check_mode_names_what_would_go_and_runs_only_show(catalog):
    cat, fake = catalog
    fake.backups = chain(3)
    before = list(fake.backups)
    res = pp.run_backup(cat, params(), True, now=T0 + DAY)
    assert res['mode_taken'] == 'FULL' and res['changed']
    assert res['pruned'] == [b['id'] for b in chain(3)]
    assert [c[1] for c in cat.runner.module.calls] == ['show']
    assert fake.backups == before


def test_not_validated_full_keeps_the_older_chain(catalog):
    cat, fake = catalog
    fake.backups = chain(3)
    fake.now = T0 + DAY
    res = pp.run_backup(cat, params(validate=False), False, now=T0 + DAY)
    assert res['mode_taken'] == 'FULL' and res['pruned'] == [] and deletes(cat) == []
    assert 'the older chain is kept' in res['prune_error'] and 'is DONE, not validated' in res['prune_error']
    assert len(fake.backups) == 4


def test_a_failed_delete_warns_and_keeps_the_good_full(catalog):
    cat, fake = catalog
    fake.backups = chain(3)
    fake.now = T0 + DAY
    fake.fail_delete = True
    res = pp.run_backup(cat, params(), False, now=T0 + DAY)
    assert res['mode_taken'] == 'FULL' and res['backup']['status'] == 'OK' and res['pruned'] == []
    assert res['prune_error'].startswith('the older chain was not all deleted (pg_probackup delete failed')
    assert 'Failed to find backup %s' % base36(T0) in res['prune_error']
    assert 'the next FULL that validates tries again' in res['prune_error']
    assert len(res['backups']) == 4


def test_unbounded_chain_keeps_everything(catalog):
    cat, fake = catalog
    for run in range(4):
        fake.now = T0 + run * DAY * 3
        assert pp.run_backup(cat, params(full_every=0, full_every_days=0), False,
                             now=fake.now + 30)['mode_taken'] == ('FULL' if run == 0 else 'DELTA')
    assert deletes(cat) == [] and len(fake.backups) == 4


def test_show_says_what_the_next_run_would_delete(catalog):
    cat, fake = catalog
    fake.backups = chain(3)
    res = pp.run_show(cat, params())
    assert res['next_mode'] == 'FULL' and res['next_pruned'] == [b['id'] for b in chain(3)]
    res = pp.run_show(cat, params(full_every=4))
    assert res['next_mode'] == 'DELTA' and res['next_pruned'] == []


@pytest.fixture
def half_added(tmp_path):
    """A catalog whose add-instance was stopped (recorded with 2.5.15: its dirs, no pg_probackup.conf)."""
    catalog = tmp_path / 'pgbackup'
    for sub in ('backups', 'wal'):
        (catalog / sub / 'alation').mkdir(parents=True)
    fake = FakeProbackup()
    return pp.Catalog(runner({'pg_probackup': fake}), '/usr/bin/pg_probackup', str(catalog), 'alation'), fake


def test_a_half_added_instance_is_added_again_and_backed_up(half_added):
    cat, fake = half_added
    res = pp.run_backup(cat, params(), False, now=T0 + 30)
    dirs = [os.path.join(cat.host_catalog, sub, 'alation') for sub in ('backups', 'wal')]
    assert res['recovered'] == dict(action='re-add', broken=[], deleted=[], removed=dirs)
    # pg_probackup show would fail on it ("could not open file .../pg_probackup.conf"): not asked.
    assert [c[1] for c in cat.runner.module.calls] == ['add-instance', 'backup', 'validate', 'show']
    assert res['mode_taken'] == 'FULL' and res['backup']['status'] == 'OK'
    assert os.path.exists(os.path.join(dirs[0], 'pg_probackup.conf'))


def test_check_mode_names_the_half_added_dirs_and_keeps_them(half_added):
    cat, fake = half_added
    res = pp.run_backup(cat, params(), True, now=T0 + 30)
    assert res['recovered']['action'] == 're-add' and res['mode_taken'] == 'FULL'
    assert cat.runner.module.calls == []
    assert os.path.isdir(os.path.join(cat.host_catalog, 'backups', 'alation'))


@pytest.mark.parametrize('sub', ['backups', 'wal'])
def test_a_conf_less_instance_that_holds_anything_is_refused_untouched(half_added, sub):
    cat, fake = half_added
    kept = os.path.join(cat.host_catalog, sub, 'alation', 'TP5HJN')
    os.mkdir(kept)
    with pytest.raises(pp.PgProbackupError) as e:
        pp.run_backup(cat, params(), False, now=T0 + 30)
    assert 'instance alation of catalog %s has no pg_probackup.conf' % cat.host_catalog in e.value.msg
    assert '%s is not empty' % os.path.dirname(kept) in e.value.msg and 'nothing was deleted' in e.value.msg
    assert os.path.isdir(kept) and cat.runner.module.calls == []
