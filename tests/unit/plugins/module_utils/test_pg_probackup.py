# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/_pg_probackup.py against output recorded from the real pg_probackup 2.5.15."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _pg_probackup as pp
from ansible_collections.alation.backup.plugins.module_utils._host import pid_state

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'pg_probackup')
CAT = '/data2/backup/pgbackup'


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def backups_of(name):
    return pp.instance_backups(pp.parse_show(fixture_text(name)), 'alation')


DEAD = {'alive': False, 'pid': 10063, 'reused': False}
ALIVE = {'alive': True, 'pid': 4242, 'reused': False}


# -- stderr --------------------------------------------------------------------

@pytest.mark.parametrize('fixture, expected', [
    ('full-backup-stderr.txt', []),
    ('delta-backup-stderr.txt', []),
    ('delta-without-full-stderr.txt', ['ERROR: Create new full backup before an incremental one']),
    ('backup-no-catalog-stderr.txt', ["ERROR: Instance 'alation' does not exist in this backup catalog"]),
    ('show-no-catalog-stderr.txt',
     ['ERROR: Cannot open directory "/srv/pg/no-such-catalog/backups": No such file or directory']),
    ('no-catalog-path-stderr.txt',
     ['ERROR: No backup catalog path specified. Please specify it either using environment variable BACKUP_PATH '
      'or command line option --backup-path (-B)']),
    ('init-not-empty-stderr.txt', ['ERROR: The backup catalog already exists and is not empty']),
    ('server-down-stderr.txt',
     ['ERROR: could not connect to database postgres: connection to server at "127.0.0.1", port 55432 failed: '
      'Connection refused Is the server running on that host and accepting TCP/IP connections?']),
    ('wrong-user-stderr.txt',
     ['ERROR: could not connect to database postgres: connection to server at "127.0.0.1", port 55432 failed: '
      'FATAL:  role "nosuchuser" does not exist']),
    ('wrong-db-stderr.txt',
     ['ERROR: could not connect to database nosuchdb: connection to server at "127.0.0.1", port 55432 failed: '
      'FATAL:  database "nosuchdb" does not exist']),
    ('wrong-pgdata-stderr.txt',
     ['ERROR: Could not open file "/tmp/global/pg_control" for reading: No such file or directory']),
    ('sigterm-stderr.txt', ['ERROR: Interrupted during waiting for WAL streaming']),
    ('validate-after-kill-stderr.txt', []),
])
def test_error_lines(fixture, expected):
    assert pp.error_lines(fixture_text(fixture)) == expected


def test_error_inside_a_warning_is_not_an_error():
    # "WARNING: Could not send replication command ...: ERROR:  could not open file" is a warning.
    warnings = pp.warning_lines(fixture_text('delta-without-full-stderr.txt'))
    assert any(w.startswith('Could not send replication command') for w in warnings)
    assert len(pp.error_lines(fixture_text('delta-without-full-stderr.txt'))) == 1


@pytest.mark.parametrize('fixture, count, first', [
    ('full-backup-stderr.txt', 2, 'This PostgreSQL instance was initialized without data block checksums'),
    ('delta-after-killed-stderr.txt', 3, 'This PostgreSQL instance was initialized without data block checksums'),
    ('validate-after-kill-stderr.txt', 3, 'Process 10063 which used backup TP5HLM no longer exists'),
])
def test_warning_lines(fixture, count, first):
    warnings = pp.warning_lines(fixture_text(fixture))
    assert len(warnings) == count
    assert warnings[0].startswith(first)


def test_warning_lines_drop_repeats():
    text = fixture_text('full-backup-stderr.txt') * 2
    assert len(pp.warning_lines(text)) == 2


@pytest.mark.parametrize('fixture, backup_id', [
    ('full-backup-stderr.txt', 'TP5HJN'),
    ('delta-backup-stderr.txt', 'TP5HK2'),
    # The retried same-second start names the id it could not use first (trap 4).
    ('same-second-stderr.txt', 'TP5HMS'),
    ('server-down-stderr.txt', 'TP5HL2'),
    ('delta-without-full-stderr.txt', 'TP5HKY'),
    # Lines with a timestamp in front.
    ('delta-after-killed-stderr.txt', 'TP5HLO'),
    ('backup-no-catalog-stderr.txt', None),
    ('validate-after-kill-stderr.txt', None),
])
def test_backup_id_from_log(fixture, backup_id):
    assert pp.backup_id_from_log(fixture_text(fixture)) == backup_id


@pytest.mark.parametrize('fixture, rc, parts', [
    ('server-down-stderr.txt', 1, ['pg_probackup backup failed with exit code 1', 'Connection refused',
                                   'hint: is PostgreSQL running']),
    ('server-down-socket-stderr.txt', 1, ['.s.PGSQL.55432', 'hint: is PostgreSQL running, and is host its socket']),
    ('wrong-user-stderr.txt', 1, ['role "nosuchuser" does not exist', 'hint: set user']),
    ('wrong-db-stderr.txt', 1, ['database "nosuchdb" does not exist', 'hint: set dbname']),
    ('wrong-pgdata-stderr.txt', 1, ['global/pg_control', 'hint: set pgdata']),
    ('delta-without-full-stderr.txt', 1, ['Create new full backup', 'backup_mode=auto or full']),
    ('sigterm-stderr.txt', 1, ['Interrupted during waiting for WAL streaming']),
    ('init-not-empty-stderr.txt', 1, ['already exists and is not empty', 'must be empty or absent']),
    # Killed with SIGKILL: the shell says 137, subprocess says -9; the output just stops.
    ('full-backup-stderr.txt', 137, ['was killed by signal 9 (exit code 137)']),
    ('full-backup-stderr.txt', -9, ['was killed by signal 9 (exit code -9)']),
])
def test_failure_message(fixture, rc, parts):
    msg = pp.failure_message('backup', dict(rc=rc, stderr=fixture_text(fixture)))
    for part in parts:
        assert part in msg
    assert '\n' not in msg


def test_failure_message_without_error_line_quotes_the_last_line():
    assert pp.failure_message('show', dict(rc=2, stderr='something odd\n')).endswith(': something odd')


@pytest.mark.parametrize('stderr, empty', [
    (fixture_text('show-no-catalog-stderr.txt'), True),
    (fixture_text('show-instance-not-added-stderr.txt'), True),
    (fixture_text('backup-no-catalog-stderr.txt'), True),
    ('ERROR: Cannot open directory "/x/backups": Permission denied\n', False),
    (fixture_text('server-down-stderr.txt'), False),
    ('', False),
])
def test_show_error_means_empty(stderr, empty):
    assert pp.show_error_means_empty(stderr) is empty


# -- show ------------------------------------------------------------------------

@pytest.mark.parametrize('fixture, ids', [
    ('show-after-full-delta.json', ['TP5HK2', 'TP5HJN']),
    ('show-after-killed-backup.json', ['TP5HLM', 'TP5HK2', 'TP5HJN']),
    ('show-after-killed-then-delta.json', ['TP5HLO', 'TP5HLM', 'TP5HK2', 'TP5HJN']),
    ('show-case-a-delta-without-full.json', ['TP5HKY']),
    ('show-killed-after-datacopy.json', ['TP5HOB']),
    ('show-after-concurrency-tests.json',
     ['TP5HN7', 'TP5HMS', 'TP5HMR', 'TP5HMJ', 'TP5HMH', 'TP5HLO', 'TP5HK2', 'TP5HJN']),
])
def test_parse_show_newest_first(fixture, ids):
    assert [b['id'] for b in backups_of(fixture)] == ids


def test_instance_backups_sorts_and_filters():
    data = pp.parse_show(fixture_text('show-after-full-delta.json'))
    data[0]['backups'].reverse()
    data.append(dict(instance='other', backups=[dict(id='ZZZZZZ')]))
    assert [b['id'] for b in pp.instance_backups(data, 'alation')] == ['TP5HK2', 'TP5HJN']
    assert pp.instance_backups(data, 'missing') == []
    assert pp.parse_show('[\n]\n') == []


def test_parse_show_rejects_non_list():
    with pytest.raises(ValueError):
        pp.parse_show('{"instance": "alation"}')


def test_id_key_orders_in_time():
    assert pp.id_key('TP5HMS') == pp.id_key('TP5HMR') + 1  # same-second retry takes the next second
    assert pp.id_key('TP5HK2') > pp.id_key('TP5HJN')
    assert pp.id_key(None) == -1


def test_normalise():
    delta = backups_of('show-after-full-delta.json')[0]
    assert pp.normalise(delta) == dict(
        id='TP5HK2', mode='DELTA', status='OK', parent='TP5HJN', wal='STREAM',
        start_time='2026-11-27 07:45:38+00', end_time='2026-11-27 07:45:48+00',
        recovery_time='2026-11-27 07:45:39+00', data_bytes=111329374, wal_bytes=16777216,
        uncompressed_bytes=111221022, pgdata_bytes=338621355, compress_alg='none', server_version='15',
        program_version='2.5.15')
    killed = pp.normalise(backups_of('show-after-killed-backup.json')[0])
    assert killed['status'] == 'RUNNING' and killed['end_time'] is None and killed['data_bytes'] is None
    assert pp.normalise(None) is None


# -- chain analysis ------------------------------------------------------------------

def test_analyse_good_chain():
    a = pp.analyse(backups_of('show-after-full-delta.json'), {})
    assert a['newest']['id'] == 'TP5HK2'
    assert not a['broken'] and a['bad'] == [] and a['in_flight'] == []


def test_analyse_killed_backup_is_broken():
    a = pp.analyse(backups_of('show-after-killed-backup.json'), {'TP5HLM': DEAD})
    assert a['broken']
    assert a['bad'] == [dict(id='TP5HLM', status='RUNNING',
                             reason='backup TP5HLM is RUNNING but its process 10063 is gone')]
    assert a['broken_reason'] == 'backup TP5HLM is RUNNING but its process 10063 is gone'


def test_analyse_running_without_pid_file_is_dead():
    a = pp.analyse(backups_of('show-killed-after-datacopy.json'), {})
    assert a['broken'] and 'has no backup.pid' in a['broken_reason']


def test_analyse_reused_pid_is_dead():
    a = pp.analyse(backups_of('show-after-killed-backup.json'),
                   {'TP5HLM': dict(alive=False, pid=77, reused=True)})
    assert a['broken'] and 'now belongs to another program' in a['broken_reason']


def test_analyse_live_running_is_in_flight_not_broken():
    a = pp.analyse(backups_of('show-after-killed-backup.json'), {'TP5HLM': ALIVE})
    assert a['in_flight'] == [dict(id='TP5HLM', pid=4242)]
    assert not a['broken'] and a['bad'] == []


def test_analyse_old_bad_entry_does_not_break_the_chain():
    # The killed FULL stays RUNNING below the next good DELTA (recorded).
    a = pp.analyse(backups_of('show-after-killed-then-delta.json'), {'TP5HLM': DEAD})
    assert not a['broken']
    assert [x['id'] for x in a['bad']] == ['TP5HLM']


def test_analyse_error_entry():
    a = pp.analyse(backups_of('show-case-a-delta-without-full.json'), {})
    assert a['broken'] and a['bad'][0]['status'] == 'ERROR'


def _entry(bid, mode, status='OK', parent=None):
    e = {'id': bid, 'backup-mode': mode, 'status': status}
    if parent:
        e['parent-backup-id'] = parent
    return e


@pytest.mark.parametrize('backups, problem', [
    ([_entry('B2', 'DELTA', parent='B1'), _entry('B1', 'FULL')], None),
    ([_entry('B3', 'DELTA', parent='B2'), _entry('B2', 'DELTA', parent='B1'), _entry('B1', 'FULL', 'DONE')], None),
    ([_entry('B2', 'DELTA', parent='B1')], 'parent B1 of backup B2 is missing'),
    ([_entry('B2', 'DELTA', parent='B1'), _entry('B1', 'FULL', 'CORRUPT')], 'parent B1 of backup B2 is CORRUPT'),
    ([_entry('B3', 'PAGE', parent='B2'), _entry('B2', 'DELTA', 'ERROR', parent='B1'), _entry('B1', 'FULL')],
     'parent B2 of backup B3 is ERROR'),
    ([_entry('B2', 'DELTA')], 'DELTA backup B2 has no parent'),
])
def test_chain_problem(backups, problem):
    by_id = dict((b['id'], b) for b in backups)
    assert pp.chain_problem(backups[0], by_id) == problem


@pytest.mark.parametrize('fixture, mode, incremental, taken, why', [
    ('show-after-full-delta.json', 'auto', 'delta', 'DELTA',
     'DELTA on TP5HK2: 3 in this chain (full_every off), whose FULL TP5HJN is of unknown age (full_every_days off)'),
    ('show-after-full-delta.json', 'auto', 'page', 'PAGE', 'PAGE on TP5HK2: 3 in this chain'),
    ('show-after-full-delta.json', 'full', 'delta', 'FULL', 'backup_mode is full'),
    ('show-after-full-delta.json', 'ptrack', 'delta', 'PTRACK', 'parent will be TP5HK2'),
    ('show-after-concurrency-tests.json', 'auto', 'delta', 'DELTA', 'DELTA on TP5HN7: 2 in this chain'),
    ('show-after-killed-then-delta.json', 'auto', 'delta', 'DELTA', 'DELTA on TP5HLO: 4 in this chain'),
    # A RUNNING entry newest (pg_probackup skips it as a parent): FULL in auto...
    ('show-after-killed-backup.json', 'auto', 'delta', 'FULL', 'newest backup TP5HLM is RUNNING, not OK or DONE'),
    # ... while a forced incremental builds on the newest valid one.
    ('show-after-killed-backup.json', 'delta', 'delta', 'DELTA', 'parent will be TP5HK2'),
    ('show-case-a-delta-without-full.json', 'auto', 'delta', 'FULL', 'TP5HKY is ERROR'),
])
def test_choose_mode(fixture, mode, incremental, taken, why):
    got, reason = pp.choose_mode(mode, incremental, backups_of(fixture))
    assert got == taken
    assert why in reason


def test_choose_mode_empty_catalog():
    assert pp.choose_mode('auto', 'delta', []) == ('FULL', 'the catalog has no backup yet')


@pytest.mark.parametrize('fixture', ['show-case-a-delta-without-full.json', None])
def test_forced_incremental_with_nothing_to_build_on_fails_early(fixture):
    # Recorded: pg_probackup would fail with "Create new full backup before an incremental one"
    # and leave an ERROR entry; we refuse before running anything.
    backups = backups_of(fixture) if fixture else []
    with pytest.raises(ValueError, match='backup_mode=auto or full'):
        pp.choose_mode('delta', 'delta', backups)


def test_choose_mode_broken_parent_chain_takes_full():
    backups = [_entry('B2', 'DELTA', parent='B1'), _entry('B1', 'FULL', 'CORRUPT')]
    assert pp.choose_mode('auto', 'delta', backups) == ('FULL', 'parent B1 of backup B2 is CORRUPT')


def test_without_removes_descendants():
    backups = [_entry('B4', 'FULL'), _entry('B3', 'DELTA', parent='B2'), _entry('B2', 'DELTA', parent='B1'),
               _entry('B1', 'FULL')]
    assert [b['id'] for b in pp.without(backups, ['B2'])] == ['B4', 'B1']
    assert [b['id'] for b in pp.without(backups, [])] == ['B4', 'B3', 'B2', 'B1']


def test_valid_parent():
    assert pp.valid_parent(backups_of('show-after-killed-backup.json'))['id'] == 'TP5HK2'
    assert pp.valid_parent(backups_of('show-case-a-delta-without-full.json')) is None


def test_delete_statuses_orders_children_first():
    bad = [dict(id='a', status='RUNNING'), dict(id='b', status='CORRUPT'), dict(id='c', status='ORPHAN'),
           dict(id='d', status='ERROR'), dict(id='e', status='ERROR')]
    assert pp.delete_statuses(bad) == ['ORPHAN', 'ERROR', 'CORRUPT', 'RUNNING']
    assert pp.delete_statuses([]) == []


# -- planning --------------------------------------------------------------------------

def plan(fixture, running=None, mode='auto', on_broken='reset', incremental='delta'):
    return pp.plan_backup(backups_of(fixture) if fixture else [], running or {}, mode, incremental, on_broken,
                          CAT, 'alation')


def test_plan_first_backup():
    p = plan(None)
    assert (p['recovery'], p['mode']) == (None, 'FULL')


def test_plan_good_chain_goes_incremental():
    p = plan('show-after-full-delta.json')
    assert (p['recovery'], p['mode']) == (None, 'DELTA')


def test_plan_killed_backup_reset():
    p = plan('show-after-killed-backup.json', {'TP5HLM': DEAD}, on_broken='reset')
    assert p['recovery'] == 'reset' and p['mode'] == 'FULL' and p['remaining'] == []
    assert 'catalog reset' in p['reason'] and 'TP5HLM' in p['reason']


def test_plan_killed_backup_repair_goes_on_incrementally():
    p = plan('show-after-killed-backup.json', {'TP5HLM': DEAD}, on_broken='repair')
    assert p['recovery'] == 'repair' and p['mode'] == 'DELTA'
    assert [b['id'] for b in p['remaining']] == ['TP5HK2', 'TP5HJN']
    assert p['reason'].startswith('broken entries deleted (backup TP5HLM is RUNNING but its process 10063 is gone)')


def test_plan_killed_backup_repair_with_forced_full():
    p = plan('show-after-killed-backup.json', {'TP5HLM': DEAD}, on_broken='repair', mode='full')
    assert (p['recovery'], p['mode']) == ('repair', 'FULL')


def test_plan_killed_backup_fail_says_what_to_run():
    with pytest.raises(pp.PgProbackupError) as e:
        plan('show-after-killed-backup.json', {'TP5HLM': DEAD}, on_broken='fail')
    msg = e.value.msg
    assert 'backup TP5HLM is RUNNING but its process 10063 is gone' in msg
    assert 'on_broken_chain=repair' in msg and 'on_broken_chain=reset' in msg
    assert 'pg_probackup delete -B %s --instance alation --status=RUNNING' % CAT in msg
    assert e.value.extra['bad'][0]['id'] == 'TP5HLM'


@pytest.mark.parametrize('on_broken', ['reset', 'repair', 'fail'])
def test_plan_refuses_while_another_backup_runs(on_broken):
    with pytest.raises(pp.PgProbackupError, match='another backup of this catalog is running.*TP5HLM.*4242'):
        plan('show-after-killed-backup.json', {'TP5HLM': ALIVE}, on_broken=on_broken)


def test_plan_error_entry_repair_leaves_nothing_so_full():
    p = plan('show-case-a-delta-without-full.json', on_broken='repair')
    assert (p['recovery'], p['mode'], p['remaining']) == ('repair', 'FULL', [])


def test_plan_forced_incremental_after_repair_with_nothing_left_fails():
    with pytest.raises(pp.PgProbackupError, match='backup_mode is delta but the catalog has no valid backup'):
        plan('show-case-a-delta-without-full.json', on_broken='repair', mode='delta')


def test_plan_old_dead_running_below_good_backup_is_left_alone():
    p = plan('show-after-killed-then-delta.json', {'TP5HLM': DEAD}, on_broken='fail')
    assert (p['recovery'], p['mode']) == (None, 'DELTA')


# -- host-side helpers ---------------------------------------------------------------------

def test_catalog_state(tmp_path):
    assert pp.catalog_state(str(tmp_path / 'none')) == 'absent'
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert pp.catalog_state(str(empty)) == 'empty'
    cat = tmp_path / 'cat'
    (cat / 'backups').mkdir(parents=True)
    (cat / 'wal').mkdir()
    assert pp.catalog_state(str(cat)) == 'catalog'
    foreign = tmp_path / 'foreign'
    (foreign / 'backups').mkdir(parents=True)
    assert pp.catalog_state(str(foreign)) == 'foreign'
    wal_link = tmp_path / 'linked'
    (wal_link / 'backups').mkdir(parents=True)
    (wal_link / 'wal').symlink_to(str(empty))
    assert pp.catalog_state(str(wal_link)) == 'foreign'
    (tmp_path / 'link').symlink_to(str(cat))
    assert pp.catalog_state(str(tmp_path / 'link')) == 'symlink'
    (tmp_path / 'file').write_text('x')
    assert pp.catalog_state(str(tmp_path / 'file')) == 'not_dir'


def test_lock_path_is_beside_the_catalog():
    assert pp.lock_path('/data2/backup/pgbackup') == '/data2/backup/.pgbackup.lock'
    assert pp.lock_path('/data2/backup/pgbackup/') == '/data2/backup/.pgbackup.lock'


@pytest.fixture
def fake_pg_probackup():
    """A live process whose argv[0] is pg_probackup (a real sleep, renamed)."""
    proc = subprocess.Popen(['pg_probackup', '60'], executable='/bin/sleep')
    # Popen may return before the child has exec'd (Python 3.13 forks with vfork): wait for its new argv.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open('/proc/%d/cmdline' % proc.pid, 'rb') as f:
            if f.read().startswith(b'pg_probackup\0'):
                break
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def test_pid_alive(fake_pg_probackup):
    assert pid_state(fake_pg_probackup.pid, 'pg_probackup') == 'alive'
    # Our own pid lives but runs python: a reused pid.
    assert pid_state(os.getpid(), 'pg_probackup') == 'reused'
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    assert pid_state(gone.pid, 'pg_probackup') == 'dead'


def test_pid_alive_zombie_is_dead():
    proc = subprocess.Popen(['pg_probackup', '60'], executable='/bin/sleep')
    os.kill(proc.pid, signal.SIGKILL)
    for dummy in range(100):  # not reaped yet: a zombie
        with open('/proc/%d/stat' % proc.pid) as f:
            if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                break
        time.sleep(0.02)
    try:
        assert pid_state(proc.pid, 'pg_probackup') == 'dead'
    finally:
        proc.wait()


def make_catalog(root, running_ids):
    """A catalog-shaped tree (what init leaves) with backup dirs."""
    for sub in ('wal/alation', 'backups/alation'):
        os.makedirs(os.path.join(root, sub))
    for bid, pid in running_ids.items():
        d = os.path.join(root, 'backups', 'alation', bid)
        os.makedirs(d)
        if pid is not None:
            with open(os.path.join(d, 'backup.pid'), 'w') as f:
                f.write('%d\n' % pid)


def test_running_info_and_live_pid_files(tmp_path, fake_pg_probackup):
    root = str(tmp_path / 'cat')
    make_catalog(root, {'TP5HLM': fake_pg_probackup.pid, 'TP5HLN': os.getpid(), 'TP5HLO': None})
    backups = [dict(id=i, status='RUNNING') for i in ('TP5HLM', 'TP5HLN', 'TP5HLO')] + [dict(id='X', status='OK')]
    info = pp.running_info(root, 'alation', backups)
    assert info['TP5HLM']['alive'] and info['TP5HLM']['pid'] == fake_pg_probackup.pid
    assert not info['TP5HLN']['alive'] and info['TP5HLN']['reused']
    assert info['TP5HLO'] == dict(pid=None, alive=False, reused=False,
                                  pid_file=os.path.join(root, 'backups', 'alation', 'TP5HLO', 'backup.pid'))
    assert 'X' not in info
    assert pp.live_pid_files(root) == [('alation/TP5HLM', fake_pg_probackup.pid)]


def test_remove_tree_never_follows_symlinks(tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'keep').write_text('precious')
    cat = tmp_path / 'cat'
    make_catalog(str(cat), {'TP5HJN': None})
    (cat / 'backups' / 'alation' / 'TP5HJN' / 'link').symlink_to(str(outside))
    (cat / 'wal' / 'file').write_text('x')
    pp.remove_tree(str(cat), keep_top=True)
    assert cat.is_dir() and os.listdir(str(cat)) == []
    assert (outside / 'keep').read_text() == 'precious'
    make_catalog(str(cat), {})
    (cat / 'link').symlink_to(str(outside))
    pp.remove_tree(str(cat))
    assert not cat.exists() and (outside / 'keep').exists()


def test_remove_tree_refuses_a_symlink(tmp_path):
    target = tmp_path / 'real'
    make_catalog(str(target), {})
    (tmp_path / 'link').symlink_to(str(target))
    with pytest.raises(OSError, match="refusing staging dir .*symlink"):
        pp.remove_tree(str(tmp_path / 'link'))
    assert (target / 'backups').is_dir()


def test_fixtures_are_real_json():
    for name in os.listdir(FIXTURES):
        if name.endswith('.json'):
            assert isinstance(json.loads(fixture_text(name)), list)
