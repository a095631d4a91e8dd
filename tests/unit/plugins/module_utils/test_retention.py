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
    planned = R.plan(str(storage), keep_count=7, now=NOW)
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
    assert R.plan(str(storage), keep_count=7, now=NOW)['remove'] == [], 'a second run removes nothing'


def test_an_archive_goes_only_when_both_rules_allow_it(storage):
    # keep_count 3 lets Nov 21..27 go; keep_days 5 (now Nov 30 12:00) holds Nov 26 and 27 (4.5, 3.5 days old).
    planned = R.plan(str(storage), keep_count=3, keep_days=5, now=NOW)
    gone = [n for n in names(planned['remove']) if n.endswith('.tar.gz')]
    assert gone == [archive_name('202611%02d0102' % d, TAG) for d in range(21, 26)]
    assert 'older than keep_days 5' in planned['remove'][0]['why']
    # keep_days alone holds everything young enough even with keep_count 1.
    planned = R.plan(str(storage), keep_count=1, keep_days=30, now=NOW)
    assert planned['remove'] == []


def test_the_newest_verified_archive_is_never_removed(storage):
    planned = R.plan(str(storage), keep_count=1, now=NOW)
    assert planned['kept'] == [str(storage / archive_name('202611300102', TAG))]
    planned = R.plan(str(storage), keep_count=1, make_room_for=3, now=NOW)
    assert planned['kept'] == [str(storage / archive_name('202611300102', TAG))], 'room for more, newest stays'


def test_make_room_for_counts_the_coming_archive(storage):
    planned = R.plan(str(storage), keep_count=7, make_room_for=1, now=NOW)
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
    planned = R.plan(str(storage), keep_count=1, now=NOW)
    assert planned['remove'] == [] and 'does not match its .sha256' in planned['refused']
    assert str(newest) in planned['refused'] and 'nothing older is removed' in planned['refused']
    assert names(planned['orphans']) == ['202611200102_5-17-0-116556_alation_backup.tar.gz.sha256']


def test_an_empty_dir_and_bad_rules(tmp_path):
    assert R.plan(str(tmp_path), keep_count=1)['remove'] == []
    with pytest.raises(HostError, match='keep_count=0: keep at least 1 archive'):
        R.plan(str(tmp_path), keep_count=0)
    with pytest.raises(HostError, match='keep_days=-1 must be 0'):
        R.plan(str(tmp_path), keep_count=1, keep_days=-1)


def test_a_file_that_cannot_be_removed_names_what_was_removed(storage, monkeypatch):
    planned = R.plan(str(storage), keep_count=7, now=NOW)
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
    planned = R.plan_listing('/srv/backups/alation-1', remote_listing(), keep_count=5, now=NOW, verify_newest=verify)
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
    planned = R.plan_listing('/srv/b', remote_listing(), keep_count=1, now=NOW,
                             verify_newest=lambda path: 'it hashes to 00ff, its .sha256 records abcd')
    assert planned['remove'] == [] and 'hashes to 00ff' in planned['refused']
    planned = R.plan_listing('/srv/b', remote_listing(), keep_count=1, now=NOW)
    assert planned['remove'] == [] and planned['refused']


def test_plan_listing_keep_days_and_keep_count_both_hold():
    planned = R.plan_listing('/srv/b', remote_listing(), keep_count=2, keep_days=4, now=NOW,
                             verify_newest=lambda path: None)
    # Nov 24 and 25 are older than 4 days (now Nov 30 12:00); Nov 26 is 4.5 days old, 27.. are younger.
    assert [n for n in names(planned['remove']) if n.endswith('.tar.gz')] == [
        archive_name('202611240102', TAG), archive_name('202611250102', TAG), archive_name('202611260102', TAG)]
