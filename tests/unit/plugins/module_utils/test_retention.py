# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention: exactly the archives both rules let go, never the newest verified one, nothing foreign."""

import calendar
import hashlib
import os
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _retention as R
from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name, sidecar_text, tmp_name
from ansible_collections.alation.backup.plugins.module_utils._host import HostError

DAY_S = 86400
NOW = calendar.timegm(time.strptime('202611301200', '%Y%m%d%H%M'))
TAG = '5-17-0-116556'


def archive(d, ts, data=None, sidecar=True, recorded=None):
    name = archive_name(ts, TAG)
    data = data or ('archive %s' % ts).encode()
    (d / name).write_bytes(data)
    if sidecar:
        digest = hashlib.sha256(recorded or data).hexdigest()
        (d / (name + '.sha256')).write_text(sidecar_text(digest, name, len(recorded or data)))
    return name


def kept_paths(planned):
    return [k['path'] for k in planned['kept']]


def names(entries):
    return [os.path.basename(e['path']) for e in entries]


@pytest.fixture
def storage(tmp_path):
    """Ten daily archives (Nov 21..30), a lone .sha256, foreign and temporary files."""
    for day in range(21, 31):
        archive(tmp_path, '202611%02d0102' % day)
    lone = archive_name('202611200102', TAG) + '.sha256'
    (tmp_path / lone).write_text(sidecar_text('0' * 64, lone[:-7], 1))
    (tmp_path / 'notes.txt').write_text('the admin keeps notes here')
    (tmp_path / archive_name('202611010102', TAG, 'other_suffix')).write_bytes(b'another tool')
    (tmp_path / tmp_name(archive_name('202611301201', TAG), pid=1)).write_bytes(b'a writer at work')
    (tmp_path / 'pgbackup').mkdir()
    (tmp_path / '.alation_backup.lock').write_text('{}')
    return tmp_path


def test_keep_count_removes_exactly_the_oldest_with_their_sha256_and_the_orphan(storage):
    planned = R.plan(str(storage), dict(keep_count=7), now=NOW)
    assert names(planned['remove']) == [
        '202611210102_5-17-0-116556_alation_backup.tar.gz', '202611210102_5-17-0-116556_alation_backup.tar.gz.sha256',
        '202611220102_5-17-0-116556_alation_backup.tar.gz', '202611220102_5-17-0-116556_alation_backup.tar.gz.sha256',
        '202611230102_5-17-0-116556_alation_backup.tar.gz', '202611230102_5-17-0-116556_alation_backup.tar.gz.sha256']
    assert names(planned['orphans']) == ['202611200102_5-17-0-116556_alation_backup.tar.gz.sha256']
    assert planned['refused'] is None and len(planned['kept']) == 7
    before = set(os.listdir(str(storage)))
    removed = R.apply(planned)
    assert names(removed) == names(planned['remove'] + planned['orphans']), 'check mode lists exactly what goes'
    assert set(os.listdir(str(storage))) == before - set(names(removed))
    # Foreign files, other suffixes, a writer's temporary file, dirs and the lock are all still there.
    for kept in ('notes.txt', 'pgbackup', '.alation_backup.lock', tmp_name(archive_name('202611301201', TAG), pid=1),
                 archive_name('202611010102', TAG, 'other_suffix')):
        assert kept in os.listdir(str(storage))
    assert R.plan(str(storage), dict(keep_count=7), now=NOW)['remove'] == [], 'a second run removes nothing'


def test_an_archive_goes_only_when_both_rules_allow_it(storage):
    # keep_count 3 lets Nov 21..27 go; keep_days 5 (now Nov 30 12:00) holds Nov 26 and 27 (4.5, 3.5 days old).
    planned = R.plan(str(storage), dict(keep_count=3, keep_days=5), now=NOW)
    gone = [n for n in names(planned['remove']) if n.endswith('.tar.gz')]
    assert gone == [archive_name('202611%02d0102' % d, TAG) for d in range(21, 26)]
    assert 'older than keep_days 5' in planned['remove'][0]['why']
    # keep_days alone holds everything young enough even with keep_count 1.
    planned = R.plan(str(storage), dict(keep_count=1, keep_days=30), now=NOW)
    assert planned['remove'] == []


def test_the_newest_verified_archive_is_never_removed(storage):
    planned = R.plan(str(storage), dict(keep_count=1), now=NOW)
    assert kept_paths(planned) == [str(storage / archive_name('202611300102', TAG))]
    planned = R.plan(str(storage), dict(keep_count=1), make_room_for=3, now=NOW)
    assert kept_paths(planned) == [str(storage / archive_name('202611300102', TAG))], 'room for more, newest stays'


def test_make_room_for_counts_the_coming_archive(storage):
    planned = R.plan(str(storage), dict(keep_count=7), make_room_for=1, now=NOW)
    assert len(planned['kept']) == 6
    assert sum(e['bytes'] for e in planned['remove']) > 0


@pytest.mark.parametrize('damage', ['bytes', 'size', 'sidecar'])
def test_a_damaged_newest_archive_removes_nothing_older(storage, damage):
    newest = storage / archive_name('202611300102', TAG)
    if damage == 'bytes':
        newest.write_bytes(b'archive 20261130010X')  # same size, other hash
    elif damage == 'size':
        newest.write_bytes(b'cut')
    else:
        os.unlink(str(newest) + '.sha256')
    planned = R.plan(str(storage), dict(keep_count=1), now=NOW)
    assert planned['remove'] == [] and 'does not match its .sha256' in planned['refused']
    assert str(newest) in planned['refused'] and 'nothing older is removed' in planned['refused']
    assert names(planned['orphans']) == ['202611200102_5-17-0-116556_alation_backup.tar.gz.sha256']


def test_an_empty_dir_and_bad_rules(tmp_path):
    assert R.plan(str(tmp_path), dict(keep_count=1))['remove'] == []
    with pytest.raises(HostError, match='keep_count=0: keep at least 1 archive'):
        R.plan(str(tmp_path), dict(keep_count=0))
    with pytest.raises(HostError, match='keep_days=-1 must be 0'):
        R.plan(str(tmp_path), dict(keep_count=1, keep_days=-1))


def test_a_file_that_cannot_be_removed_names_what_was_removed(storage, monkeypatch):
    planned = R.plan(str(storage), dict(keep_count=7), now=NOW)
    real_unlink = os.unlink

    def unlink(path):
        if path.endswith('202611220102_5-17-0-116556_alation_backup.tar.gz'):
            raise PermissionError(13, 'Permission denied')
        real_unlink(path)
    monkeypatch.setattr(os, 'unlink', unlink)
    with pytest.raises(HostError, match=r'could not remove .*202611220102.*Removed so far: .*202611210102'):
        R.apply(planned)


# -- the same decision over a listing taken elsewhere (a backup host, over ssh) ------------

def remote_listing():
    """What a backup host's per-host dir lists: seven daily archives, a lone .sha256, a temp file, a foreign file."""
    files = {}
    for day in range(24, 31):
        name = archive_name('202611%02d0102' % day, TAG)
        files[name] = dict(size=100 + day)
        files[name + '.sha256'] = dict(size=90)
    files[archive_name('202611200102', TAG) + '.sha256'] = dict(size=90)
    files[tmp_name(archive_name('202611301201', TAG), pid=7)] = dict(size=5)
    files['README'] = dict(size=3)
    files[archive_name('202611010102', TAG, 'other_suffix')] = dict(size=9)
    files[archive_name('202611230102', TAG)] = None  # not a regular file: never a candidate
    return files


def test_plan_listing_takes_the_same_decision_over_a_remote_listing():
    verified = []

    def verify(path):
        verified.append(path)
        return None
    planned = R.plan_listing('/srv/backups/alation-1', remote_listing(), dict(keep_count=5), now=NOW, verify_newest=verify)
    assert verified == ['/srv/backups/alation-1/' + archive_name('202611300102', TAG)], 'only the newest is verified'
    assert [e['path'] for e in planned['remove']] == [
        '/srv/backups/alation-1/202611240102_5-17-0-116556_alation_backup.tar.gz',
        '/srv/backups/alation-1/202611240102_5-17-0-116556_alation_backup.tar.gz.sha256',
        '/srv/backups/alation-1/202611250102_5-17-0-116556_alation_backup.tar.gz',
        '/srv/backups/alation-1/202611250102_5-17-0-116556_alation_backup.tar.gz.sha256']
    assert [e['bytes'] for e in planned['remove']] == [124, 90, 125, 90]
    assert names(planned['orphans']) == ['202611200102_5-17-0-116556_alation_backup.tar.gz.sha256']
    assert len(planned['kept']) == 5 and planned['refused'] is None


def test_plan_listing_removes_nothing_when_the_newest_does_not_verify_or_cannot_be():
    planned = R.plan_listing('/srv/b', remote_listing(), dict(keep_count=1), now=NOW,
                             verify_newest=lambda path: 'it hashes to 00ff, its .sha256 records abcd')
    assert planned['remove'] == [] and 'hashes to 00ff' in planned['refused']
    planned = R.plan_listing('/srv/b', remote_listing(), dict(keep_count=1), now=NOW)
    assert planned['remove'] == [] and planned['refused']


def test_plan_listing_keep_days_and_keep_count_both_hold():
    planned = R.plan_listing('/srv/b', remote_listing(), dict(keep_count=2, keep_days=4), now=NOW,
                             verify_newest=lambda path: None)
    # Nov 24 and 25 are older than 4 days (now Nov 30 12:00); Nov 26 is 4.5 days old, 27.. are younger.
    assert [n for n in names(planned['remove']) if n.endswith('.tar.gz')] == [
        archive_name('202611240102', TAG), archive_name('202611250102', TAG), archive_name('202611260102', TAG)]


# -- the clock: a name is only what some clock said -------------------------------------------------

FUTURE = ['203101010000', '203101020000', '203101030000']


def clock_ran_ahead(d, own='202611301200'):
    """Three older archives, three named in 2031 by a clock that ran ahead, and the run's own (named ``own``)."""
    older = [archive(d, ts) for ts in ('202611270102', '202611280102', '202611290102')]
    future = [archive(d, ts) for ts in FUTURE]
    return older, future, archive(d, own)


def test_archives_named_in_the_future_are_left_alone_and_not_counted(tmp_path):
    older, future, own = clock_ran_ahead(tmp_path)
    planned = R.plan(str(tmp_path), dict(keep_count=3), now=NOW, protect=[str(tmp_path / own)])
    # The future ones count neither as the newest nor toward keep_count: the 3 newest are own and two older.
    assert names(planned['remove']) == [older[0], older[0] + '.sha256']
    assert [os.path.basename(p) for p in kept_paths(planned)] == older[1:] + [own]
    assert planned['newest'] == str(tmp_path / own) and planned['refused'] is None
    assert names(planned['future']) == future
    assert all('hours ahead of this host\'s clock (2026-11-30 12:00 UTC)' in f['why'] for f in planned['future'])
    assert planned['future'][0]['why'].startswith('named 2031-01-01 00:00 UTC, ')
    R.apply(planned)
    assert set(future + [f + '.sha256' for f in future] + [own]) <= set(os.listdir(str(tmp_path)))


def test_without_the_rule_the_run_s_own_archive_would_go(tmp_path):
    """What the hole was: three 2031 archives and keep_count 3 ranked the run's own archive out. Not any more,
    even without protect (the future ones are not ranked), and not with keep_count 1 either."""
    older, future, own = clock_ran_ahead(tmp_path)
    for keep in (1, 3):
        planned = R.plan(str(tmp_path), dict(keep_count=keep), now=NOW)
        assert own not in names(planned['remove']) and not set(future) & set(names(planned['remove']))
        assert planned['newest'] == str(tmp_path / own)


@pytest.mark.parametrize('ahead, future', [(0, False), (3600, False), (3660, True), (86400, True)])
def test_future_means_more_than_an_hour_ahead(tmp_path, ahead, future):
    ts = time.strftime('%Y%m%d%H%M', time.gmtime(NOW + ahead))
    archive(tmp_path, '202611290102')
    name = archive(tmp_path, ts)
    planned = R.plan(str(tmp_path), dict(keep_count=1), now=NOW)
    assert [os.path.basename(f['path']) for f in planned['future']] == ([name] if future else [])
    assert names(planned['remove']) == ([] if future else [archive_name('202611290102', TAG),
                                                           archive_name('202611290102', TAG) + '.sha256'])


def test_a_damaged_archive_named_in_the_future_blocks_nothing_and_is_left_alone(tmp_path):
    older, future, own = clock_ran_ahead(tmp_path)
    (tmp_path / future[-1]).write_bytes(b'damaged')
    os.unlink(str(tmp_path / (future[0] + '.sha256')))  # a future archive without its .sha256
    planned = R.plan(str(tmp_path), dict(keep_count=2), now=NOW)
    assert planned['refused'] is None and names(planned['future']) == future
    assert [n for n in names(planned['remove']) if n.endswith('.tar.gz')] == older[:2]


def test_a_lone_sha256_named_in_the_future_is_left_alone(tmp_path):
    name = archive(tmp_path, FUTURE[0])
    os.unlink(str(tmp_path / name))
    archive(tmp_path, '202611290102')
    assert R.plan(str(tmp_path), dict(keep_count=1), now=NOW)['orphans'] == []


def test_a_clock_that_jumped_back_never_removes_the_run_s_own_archive(tmp_path):
    """The run's own archive is named before three older ones (the clock went back 40 minutes, under the hour):
    it is kept, counts toward keep_count, and the oldest other goes in its place."""
    older = [archive(tmp_path, ts) for ts in ('202611301130', '202611301140', '202611301150')]
    own = archive(tmp_path, '202611301120')
    now = NOW - 40 * 60
    planned = R.plan(str(tmp_path), dict(keep_count=3), now=now, protect=[str(tmp_path / own)])
    assert planned['future'] == [] and planned['refused'] is None
    assert names(planned['remove']) == [older[0], older[0] + '.sha256']
    assert sorted(os.path.basename(p) for p in kept_paths(planned)) == sorted([own] + older[1:])
    # Without protect it would rank last and go.
    assert own in names(R.plan(str(tmp_path), dict(keep_count=3), now=now)['remove'])
    # keep_count 1: only the newest by name and the protected one are left.
    planned = R.plan(str(tmp_path), dict(keep_count=1), now=now, protect=[own])
    assert [n for n in names(planned['remove']) if n.endswith('.tar.gz')] == older[:2]


def test_a_clock_that_jumped_back_more_than_an_hour_leaves_every_older_archive_alone(tmp_path):
    older = [archive(tmp_path, ts) for ts in ('202611300102', '202611300202', '202611300302')]
    own = archive(tmp_path, '202611291200')
    planned = R.plan(str(tmp_path), dict(keep_count=1), now=NOW - DAY_S, protect=[own])
    assert planned['remove'] == [] and names(planned['future']) == older
    assert planned['newest'] == str(tmp_path / own)


def test_protect_over_a_remote_listing_by_name_and_make_room_for():
    files = remote_listing()
    own = archive_name('202611240102', TAG)  # the far side's oldest name, but what was just copied
    planned = R.plan_listing('/srv/b', files, dict(keep_count=2), now=NOW, verify_newest=lambda path: None, protect=(own,))
    gone = [n for n in names(planned['remove']) if n.endswith('.tar.gz')]
    assert own not in gone and gone == [archive_name('2026112%d0102' % d, TAG) for d in range(5, 10)]
    # Room for one more: only the newest and the protected one stay.
    planned = R.plan_listing('/srv/b', files, dict(keep_count=2), now=NOW, make_room_for=1,
                             verify_newest=lambda path: None, protect=('/srv/b/' + own,))
    assert sorted(os.path.basename(p) for p in kept_paths(planned)) == [own, archive_name('202611300102', TAG)]


def test_future_warning_names_each_archive_and_what_to_do(tmp_path):
    older, future, own = clock_ran_ahead(tmp_path)
    planned = R.plan(str(tmp_path), dict(keep_count=3), now=NOW)
    text = R.future_warning(planned)
    assert text.startswith('3 archive(s) named more than an hour ahead of this host\'s clock are left alone')
    assert all(str(tmp_path / f) in text for f in future) and 'NTP' in text
    assert R.future_warning(R.plan(str(tmp_path), dict(keep_count=3), now=NOW + 600)) == text, 'no clock reading in it'
    assert R.future_warning(dict(future=[])) is None
