# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import multiprocessing
import os
import subprocess
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _locks


@pytest.fixture
def lock_path(tmp_path):
    return str(tmp_path / '.alation_backup.lock')


def test_acquire_writes_a_private_lease_and_release_removes_it(lock_path):
    record, taken_over = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert taken_over is None
    assert oct(os.stat(lock_path).st_mode & 0o777) == '0o600'
    with open(lock_path) as f:
        assert json.load(f)['run_id'] == 'run-1'
    assert _locks.release_lease(lock_path, record['token']) is True
    assert not os.path.exists(lock_path)


def test_a_second_run_is_refused_and_told_who_holds_it(lock_path):
    _locks.acquire_lease(lock_path, 'alice via ansible-playbook', 'run-1', 600)
    with pytest.raises(_locks.LockHeld) as e:
        _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert 'alice via ansible-playbook' in str(e.value) and 'run-1' in str(e.value)


def test_the_same_run_gets_its_own_lease_back_renewed(lock_path):
    first, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    time.sleep(0.05)
    again, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert again['token'] == first['token'] and again['renewed'] > first['renewed']


def test_release_with_another_token_leaves_the_lease(lock_path):
    _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert _locks.release_lease(lock_path, 'not-the-token') is False
    assert os.path.exists(lock_path)


def test_release_of_a_missing_lease_is_a_no_op(lock_path):
    assert _locks.release_lease(lock_path, 'whatever') is False


NOW = time.time()
ME = _locks.this_machine()
# Another machine that shares the storage dir (NFS): only its lease or marker says so.
OTHER = dict(machine_id='fedcba9876543210fedcba9876543210', hostname='alation-neighbour')


@pytest.mark.parametrize('holder, stale', [
    (None, 'the lock file is unreadable'),
    ({'renewed': NOW - 601, 'stale_after': 600}, 'not renewed for 601s (stale after 600s): that run is gone'),
    ({'renewed': NOW - 599, 'stale_after': 600}, None),
    # The holder's own promise counts, not the newcomer's.
    ({'renewed': NOW - 100, 'stale_after': 60}, 'not renewed for 100s (stale after 60s): that run is gone'),
    # This machine with another boot id rebooted; a lease that does not name its machine may be another's.
    (dict(ME, renewed=NOW, stale_after=600, boot_id='another-boot'), 'the host rebooted since it was taken'),
    ({'renewed': NOW, 'stale_after': 600, 'boot_id': 'another-boot'}, None),
    ({'renewed': NOW, 'stale_after': 600, 'boot_id': _locks.boot_id()}, None),
    # Another machine's live lease is never stale, whatever its boot id says.
    (dict(OTHER, renewed=NOW - 599, stale_after=600, boot_id='another-boot'), None),
    (dict(OTHER, renewed=NOW - 601, stale_after=600, boot_id='another-boot'),
     'not renewed for 601s by the wall clock (stale after 600s): that run on host alation-neighbour '
     '(machine id fedcba987654...) is gone'),
    # A lease written before the heartbeat (no renewed, no stale_after): its start and our limit count.
    ({'started': NOW - 700, 'expires': NOW + 20000}, 'not renewed for 700s (stale after 600s): that run is gone'),
])
def test_stale_reason(holder, stale):
    assert _locks.stale_reason(holder, 600, now=NOW) == stale


def test_a_killed_run_is_taken_over_once_stale_and_named(lock_path):
    _locks.acquire_lease(lock_path, 'alice via ansible-playbook', 'run-1', 0.2)
    with pytest.raises(_locks.LockHeld):
        _locks.acquire_lease(lock_path, 'bob', 'run-2', 0.2)
    time.sleep(0.3)  # run-1 was killed: nobody renews its lease
    record, taken_over = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert record['run_id'] == 'run-2'
    assert taken_over['holder']['run_id'] == 'run-1' and taken_over['holder']['owner'] == 'alice via ansible-playbook'
    assert 'token' not in taken_over['holder']
    assert taken_over['reason'].startswith('not renewed for 0s (stale after 0.2s)')


def test_a_live_run_is_never_taken_over(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 0.3)
    lease = dict(path=lock_path, token=record['token'])
    with _locks.Heartbeat(lease) as beat:  # interval: stale_after / 4
        assert beat.interval == 1.0, 'never beats faster than once a second'
    with _locks.Heartbeat(lease, interval=0.05):
        for dummy in range(10):
            time.sleep(0.1)
            with pytest.raises(_locks.LockHeld) as e:
                _locks.acquire_lease(lock_path, 'bob', 'run-2', 0.3)
            assert 'run run-1 of alice' in str(e.value)


def test_the_heartbeat_interval_follows_stale_after(lock_path):
    for stale_after, interval in ((600, 30), (60, 15), (8, 2)):
        record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-%d' % stale_after, stale_after)
        with _locks.Heartbeat(dict(path=lock_path, token=record['token'])) as beat:
            assert beat.interval == interval
        _locks.release_lease(lock_path, record['token'])


def test_a_heartbeat_that_finds_its_lease_taken_says_so_and_writes_nothing(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    with _locks.Heartbeat(dict(path=lock_path, token=record['token']), interval=0.05) as beat:
        os.unlink(lock_path)
        other, dummy = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
        time.sleep(0.2)
    assert isinstance(beat.lost, _locks.LeaseLost) and 'run run-2 of bob' in str(beat.lost)
    assert _locks.read_holder(lock_path)['token'] == other['token'], "bob's lease is left as it was"


def test_no_lease_no_heartbeat():
    with _locks.Heartbeat(None) as beat:
        pass
    assert beat.lost is None


def test_renew_without_the_lease_is_lost(lock_path):
    with pytest.raises(_locks.LeaseLost):
        _locks.renew_lease(lock_path, 'token')


def test_a_renewal_cut_short_leaves_nothing_once_released(lock_path, tmp_path):
    record, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    dead = subprocess.Popen(['true'])
    dead.wait()
    (tmp_path / ('.alation_backup.lock.%d.tmp' % dead.pid)).write_text('{}')  # killed mid-renewal
    (tmp_path / '.alation_backup.lock.1.tmp').write_text('{}')  # pid 1 lives: not ours to judge
    assert _locks.release_lease(lock_path, record['token'])
    assert sorted(os.listdir(str(tmp_path))) == ['.alation_backup.lock.1.tmp']


def test_a_garbage_lock_file_is_taken_over(lock_path):
    with open(lock_path, 'w') as f:
        f.write('not json')
    dummy, taken_over = _locks.acquire_lease(lock_path, 'admin', 'run-2', 60)
    assert taken_over == dict(holder={}, reason='the lock file is unreadable')


def _try(path, run_id, queue):
    try:
        _locks.acquire_lease(path, run_id, run_id, 600)
        queue.put('won')
    except _locks.LockHeld:
        queue.put('refused')


def test_racing_runs_over_a_stale_lease_leave_exactly_one_winner(lock_path):
    _locks.acquire_lease(lock_path, 'gone', 'run-0', -1)  # never renewed: stale at once
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_try, args=(lock_path, 'run-%d' % i, queue)) for i in range(1, 9)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    outcomes = sorted(queue.get() for dummy in procs)
    assert outcomes.count('won') == 1 and outcomes.count('refused') == 7


def test_a_symlink_in_place_of_the_lock_is_not_followed(tmp_path, lock_path):
    target = tmp_path / 'elsewhere'
    target.write_text('{"expires": 0}')
    os.symlink(str(target), lock_path)
    # The stale link is removed and O_EXCL|O_NOFOLLOW makes a fresh file: the
    # link's target is never written through.
    _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert target.read_text() == '{"expires": 0}'
    assert not os.path.islink(lock_path)


def test_a_lease_leaves_nothing_behind_once_released(tmp_path):
    path = str(tmp_path / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(path, 'admin', 'run-1', 60)
    assert os.listdir(str(tmp_path)) == ['.alation_backup.lock']
    assert _locks.release_lease(path, record['token']) is True
    assert os.listdir(str(tmp_path)) == [], 'no .guard file or any other is left'


def test_stop_returns_the_lost_lease_message(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    beat = _locks.Heartbeat(dict(path=lock_path, token=record['token']), interval=0.05).start()
    assert beat.stop() is None
    _locks.release_lease(lock_path, record['token'])
    beat = _locks.Heartbeat(dict(path=lock_path, token=record['token']), interval=0.05).start()
    assert 'no longer holds the host lock' in beat.stop()


class _Module(object):
    def __init__(self, check_mode, lease):
        self.check_mode, self.params = check_mode, dict(lease=lease)


def test_heartbeat_of_a_module_beats_only_outside_check_mode(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    lease = dict(path=lock_path, token=record['token'])
    assert _locks.heartbeat(_Module(True, lease)).lease is None
    beat = _locks.heartbeat(_Module(False, lease))
    assert beat.lease == lease and beat.stop() is None


# -- the machine and the clock ------------------------------------------------------

def other_machines_lease(path, silent_for=5, stale_after=600, **extra):
    """A lease of another machine (a run on the neighbour host sharing the storage dir), renewed ``silent_for`` ago."""
    now = time.time()
    record = dict(OTHER, owner='carol via ansible-playbook', run_id='77-1', pid=4242, started=now - 3600,
                  renewed=now - silent_for, renewed_boottime=12.0, stale_after=stale_after,
                  boot_id=_locks.boot_id(), token='theirs')
    record.update(extra)
    with open(path, 'w') as f:
        json.dump(record, f)
    return record


def test_a_lease_records_the_machine_and_both_clocks(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 600)
    held = _locks.read_holder(lock_path)
    assert held['machine_id'] == ME['machine_id'] and held['hostname'] == ME['hostname']
    assert held['boot_id'] == _locks.boot_id() and abs(held['renewed_boottime'] - _locks.boottime()) < 5
    before = held['renewed_boottime']
    time.sleep(0.05)
    _locks.renew_lease(lock_path, record['token'])
    assert _locks.read_holder(lock_path)['renewed_boottime'] > before


def test_boottime_falls_back_to_proc_uptime(monkeypatch, tmp_path):
    uptime = tmp_path / 'uptime'
    uptime.write_text('12345.67 40000.00\n')
    monkeypatch.setattr(_locks, 'UPTIME_FILE', str(uptime))
    monkeypatch.delattr(_locks.time, 'CLOCK_BOOTTIME', raising=False)  # as on Python 3.6
    assert _locks.boottime() == 12345.67


def test_another_machines_live_lease_is_refused_naming_that_host(lock_path):
    # The hole: its boot id is not ours, which once read as "the host rebooted" and took it at once.
    other_machines_lease(lock_path, silent_for=5, boot_id='their-boot')
    with pytest.raises(_locks.LockHeld) as e:
        _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert 'run 77-1 of carol via ansible-playbook (pid 4242) on host alation-neighbour' in str(e.value)
    assert _locks.read_holder(lock_path)['token'] == 'theirs', 'left as it was'


def test_another_machines_lease_is_judged_by_the_wall_clock_only(lock_path):
    # Its boot clock (renewed_boottime 12 s) means nothing here: only its wall-clock silence counts.
    other_machines_lease(lock_path, silent_for=700, stale_after=600)
    dummy, taken_over = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert 'by the wall clock' in taken_over['reason'] and 'alation-neighbour' in taken_over['reason']


def test_the_same_machine_with_another_boot_id_rebooted(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    held = _locks.read_holder(lock_path)
    held['boot_id'] = 'the-boot-before'
    with open(lock_path, 'w') as f:
        json.dump(held, f)
    dummy, taken_over = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert taken_over['reason'] == 'the host rebooted since it was taken'


def test_a_clone_with_our_machine_id_but_another_name_is_another_machine(lock_path):
    other_machines_lease(lock_path, silent_for=5, machine_id=ME['machine_id'], boot_id='their-boot')
    with pytest.raises(_locks.LockHeld):
        _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)


class Clocks(object):
    """This machine's two clocks, set by the test: the wall clock (which jumps) and CLOCK_BOOTTIME (which does not)."""

    def __init__(self, monkeypatch):
        self.wall, self.boot = time.time(), 5000.0
        fake = type('FakeTime', (), {})()
        for name in ('strftime', 'gmtime', 'monotonic', 'sleep'):
            setattr(fake, name, getattr(time, name))
        fake.time = lambda: self.wall
        monkeypatch.setattr(_locks, 'time', fake)
        monkeypatch.setattr(_locks, 'boottime', lambda: self.boot)

    def run(self, seconds, wall_jump=0):
        self.boot += seconds
        self.wall += seconds + wall_jump


@pytest.mark.parametrize('jump', [-86400, 86400, -600, 3600])
def test_a_killed_runs_lease_frees_itself_after_stale_after_of_boottime_whichever_way_the_clock_moved(
        lock_path, monkeypatch, jump):
    clocks = Clocks(monkeypatch)
    _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)  # then run-1 is killed
    clocks.run(599, wall_jump=jump)
    with pytest.raises(_locks.LockHeld) as e:
        _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert 'last renewed 599s ago' in str(e.value), 'the boot clock says how long, not the wall clock'
    clocks.run(2)
    dummy, taken_over = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert taken_over['reason'] == 'not renewed for 601s (stale after 600s): that run is gone'


@pytest.mark.parametrize('jump', [-86400, 86400])
def test_a_live_run_is_never_taken_over_while_the_wall_clock_jumps(lock_path, monkeypatch, jump):
    clocks = Clocks(monkeypatch)
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    clocks.run(1, wall_jump=jump)
    for dummy in range(10):
        clocks.run(30)
        _locks.renew_lease(lock_path, record['token'])  # the heartbeat
        clocks.run(500)
        with pytest.raises(_locks.LockHeld):
            _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)


# -- a lost lease stops the work at once ----------------------------------------------

def test_check_renews_a_lease_that_is_ours(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    before = _locks.read_holder(lock_path)['renewed_boottime']
    beat = _locks.Heartbeat(dict(path=lock_path, token=record['token']))  # not started: check alone works
    time.sleep(0.02)
    beat.check()
    assert _locks.read_holder(lock_path)['renewed_boottime'] > before and beat.lost is None


def test_check_raises_at_once_when_the_lease_was_taken(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    beat = _locks.Heartbeat(dict(path=lock_path, token=record['token']), interval=3600).start()
    os.unlink(lock_path)
    other, dummy = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    with pytest.raises(_locks.LeaseLost) as e:
        beat.check()
    assert 'run run-2 of bob' in str(e.value)
    with pytest.raises(_locks.LeaseLost):
        beat.check()  # and stays lost
    assert 'no longer holds the host lock' in beat.stop()
    assert _locks.read_holder(lock_path)['token'] == other['token'], "bob's lease is left as it was"


def test_check_without_a_lease_does_nothing():
    _locks.Heartbeat(None).check()


def test_check_passes_when_the_renewal_cannot_be_written_but_the_lease_is_ours(lock_path, monkeypatch):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)

    def full_disk(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(_locks, 'write_file', full_disk)
    _locks.Heartbeat(dict(path=lock_path, token=record['token'])).check()
    with pytest.raises(_locks.LeaseLost):
        _locks.Heartbeat(dict(path=lock_path, token='not-ours')).check()


# -- the owner marker -------------------------------------------------------------------

@pytest.fixture
def storage(tmp_path):
    d = tmp_path / 'backup'
    d.mkdir()
    return d


def test_the_first_run_claims_the_storage_dir_and_covers_the_pg_staging_dir_inside_it(storage):
    markers = _locks.check_owner(str(storage), str(storage / 'pgbackup'), str(storage / '.alation_backup.lock'))
    assert markers == [(str(storage), str(storage / '.alation_backup_owner'))]
    assert _locks.claim_owner(markers) == [str(storage / '.alation_backup_owner')]
    owner = json.loads((storage / '.alation_backup_owner').read_text())
    assert owner['machine_id'] == ME['machine_id'] and owner['hostname'] == ME['hostname']
    assert oct(os.stat(str(storage / '.alation_backup_owner')).st_mode & 0o777) == '0o644'
    assert _locks.claim_owner(_locks.check_owner(str(storage), None)) == [], 'ours already: left alone'


def test_a_pg_staging_dir_elsewhere_gets_its_marker_beside_it(storage, tmp_path):
    (tmp_path / 'data3').mkdir()
    pg = tmp_path / 'data3' / 'pgbackup'
    markers = _locks.check_owner(str(storage), str(pg))
    assert markers[1] == (str(pg), str(tmp_path / 'data3' / '.pgbackup.alation_backup_owner'))
    _locks.claim_owner(markers)
    assert not pg.exists(), 'the pg staging dir itself stays absent (pg_probackup init wants it empty)'


@pytest.mark.parametrize('where', ['storage', 'pg'])
def test_a_dir_another_machine_marked_is_refused_naming_it(storage, tmp_path, where):
    (tmp_path / 'data3').mkdir()
    marker = storage / '.alation_backup_owner' if where == 'storage' else tmp_path / 'data3' / '.pgbackup.alation_backup_owner'
    marker.write_text(json.dumps(OTHER))
    with pytest.raises(_locks.ForeignOwner) as e:
        _locks.check_owner(str(storage), str(tmp_path / 'data3' / 'pgbackup'))
    msg = str(e.value)
    assert 'used by another machine' in msg and 'host alation-neighbour (machine id fedcba987654...)' in msg
    assert 'Give each host its own backup storage dir' in msg and ME['hostname'] in msg


def test_another_machines_lease_in_the_storage_dir_is_refused_live_or_not(storage):
    lock = str(storage / '.alation_backup.lock')
    for silent_for, said in ((5, 'a live run, never taken over'), (7200, 'that machine writes here')):
        other_machines_lease(lock, silent_for=silent_for)
        with pytest.raises(_locks.ForeignOwner) as e:
            _locks.check_owner(str(storage), None, lock)
        assert 'alation-neighbour' in str(e.value) and said in str(e.value)
        assert e.value.foreign['lease']['hostname'] == 'alation-neighbour' and 'token' not in e.value.foreign['lease']


def test_an_unreadable_marker_is_refused(storage):
    (storage / '.alation_backup_owner').write_text('garbage')
    with pytest.raises(_locks.ForeignOwner, match='cannot be read'):
        _locks.check_owner(str(storage))


def test_a_marker_that_appears_meanwhile_naming_another_machine_is_refused(storage):
    markers = _locks.check_owner(str(storage))
    (storage / '.alation_backup_owner').write_text(json.dumps(OTHER))
    with pytest.raises(_locks.ForeignOwner):
        _locks.claim_owner(markers)
