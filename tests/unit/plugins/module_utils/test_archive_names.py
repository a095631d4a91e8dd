# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An archive's names: version tag, timestamp, suffix, the temporary names and the stale ones."""

import calendar
import datetime
import hashlib
import os
import subprocess
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _archive_names as N


@pytest.mark.parametrize('value, expected', [
    ('5-17-0-116556', '5-17-0-116556'),
    ('5.17.0.116556', '5-17-0-116556'),
    ('2023-1-4-2', '2023-1-4-2'),
    ('2023.1.4.2', '2023-1-4-2'),
])
def test_version_tag(value, expected):
    assert N.version_tag(value) == expected


@pytest.mark.parametrize('value', [
    '5-17-0', '5.17.0', '5-17-0-116556-1', '5.17-0.116556', '5_17_0_116556', 'v5-17-0-116556',
    '5-17-0-116556\n', ' 5-17-0-116556', '5-17-x-116556', '5-17-0-１１６５５６', '', '---', None, 5170116556,
])
def test_version_tag_refuses(value):
    with pytest.raises(ValueError, match='is not an Alation version: expected four numbers joined by "-" or "."'):
        N.version_tag(value)


def test_version_tag_is_an_archive_error_for_the_archive_module():
    assert N.normalize_version_tag('5.17.0.116556') == '5-17-0-116556'
    with pytest.raises(N.ArchiveError, match=r"^version_tag: version '5.17' is not an Alation version.*"
                                             r"\(major-minor-patch-build; alation_info reports it\)$"):
        N.normalize_version_tag('5.17')


@pytest.mark.parametrize('value', ['202405011230', '200001010000', '202402291159', '209912312359'])
def test_timestamp_accepted(value):
    assert N.validate_timestamp(value) == value


@pytest.mark.parametrize('value,rule', [
    ('20240501123', 'must be 12 digits'),
    ('2024050112300', 'must be 12 digits'),
    ('2024-05-01 12:30', 'must be 12 digits'),
    ('20240501123a', 'must be 12 digits'),
    ('', 'must be 12 digits'),
    ('202413011200', 'not a real date'),
    ('202302291200', 'not a real date'),
    ('202405321200', 'not a real date'),
    ('202405012400', 'not a real date'),
    ('202405011260', 'not a real date'),
])
def test_timestamp_refused(value, rule):
    with pytest.raises(N.ArchiveError, match=rule):
        N.validate_timestamp(value)


def test_default_timestamp_is_valid_utc_minute():
    assert N.validate_timestamp(N.default_timestamp())


@pytest.mark.parametrize('value,ok', [('alation_backup', True), ('eb-backup_2', True), ('a/b', False),
                                      ('', False), ('x.y', False), ('back up', False), ('..', False)])
def test_suffix(value, ok):
    if ok:
        assert N.validate_suffix(value) == value
    else:
        with pytest.raises(N.ArchiveError, match='may only contain'):
            N.validate_suffix(value)


def test_names():
    name = N.archive_name('202405011230', '5-17-0-116556')
    assert name == '202405011230_5-17-0-116556_alation_backup.tar.gz'
    assert N.tmp_name(name, pid=42, host='web1') == '.202405011230_5-17-0-116556_alation_backup.tar.gz.web1.42.tmp'
    assert '.' not in N.host_label()


@pytest.mark.parametrize('name,match', [
    ('.202405011230_5-17-0-116556_alation_backup.tar.gz.web1.42.tmp', True),
    ('.202405011230_5-17-0-116556_alation_backup.tar.gz.sha256.web1.42.tmp', True),
    ('202405011230_5-17-0-116556_alation_backup.tar.gz.web1.42.tmp', False),
    ('.202405011230_5-17-0-116556_alation_backup.tar.gz.web1.tmp', False),
    ('.202405011230_5-17-0-116556_other.tar.gz.web1.42.tmp', False),
    ('.202405011230_5-17-0-116556_alation_backup.tar.gz.web1.42.tmp.x', False),
    ('.2024050112_5-17-0-116556_alation_backup.tar.gz.web1.42.tmp', False),
    ('.x_alation_backup.tar.gz.web1.42.tmp', False),
    ('.202405011230_5-17-0-116556_alation_backup.tar.gz.web.1.42.tmp', False),
])
def test_tmp_pattern(name, match):
    assert bool(N.tmp_pattern().match(name)) is match


def dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def test_find_stale_tmp_only_ours_and_dead(tmp_path):
    host = N.host_label()
    name = N.archive_name('202405011230', '5-17-0-116556')
    dead = dead_pid()
    stale = [N.tmp_name(name, dead), N.tmp_name(name + '.sha256', dead)]
    kept = [N.tmp_name(name, os.getpid()), N.tmp_name(name, 1),            # alive writers
            N.tmp_name(name, dead, host='otherhost'),                      # another host (shared dest)
            '.%s.%s.%d.tmp' % (N.archive_name('202405011230', '5-17-0-1', 'other'), host, dead),
            name, 'unrelated.tmp', '.%s.%d.tmp' % (name, dead)]
    for n in stale + kept:
        (tmp_path / n).write_bytes(b'x')
    # A directory or a symlink with the exact pattern is not ours to remove.
    (tmp_path / N.tmp_name('202405011231_5-17-0-1_alation_backup.tar.gz', dead)).mkdir()
    os.symlink('/etc/passwd', str(tmp_path / N.tmp_name('202405011232_5-17-0-1_alation_backup.tar.gz', dead)))
    found = N.find_stale_tmp(str(tmp_path))
    assert sorted(found) == sorted(str(tmp_path / n) for n in stale)


# -- timestamp=auto ----------------------------------------------------------------

def at(text):
    """An aware UTC datetime from 'YYYY-mm-dd HH:MM:SS'."""
    return datetime.datetime.strptime(text, '%Y-%m-%d %H:%M:%S').replace(tzinfo=datetime.timezone.utc)


def touch(dest, timestamp, version='5-17-0-116556', suffix='alation_backup', extra=''):
    (dest / (N.archive_name(timestamp, version, suffix) + extra)).write_bytes(b'')


@pytest.mark.parametrize('taken,now,expected', [
    ([], '2024-05-01 12:30:00', '202405011230'),
    ([], '2024-05-01 12:30:59', '202405011230'),
    (['202405011230'], '2024-05-01 12:30:15', '202405011231'),
    (['202405011229'], '2024-05-01 12:30:15', '202405011230'),               # an earlier minute: free
    (['202405011230', '202405011231'], '2024-05-01 12:30:15', '202405011231'),  # refused later, not skipped
    (['202412312359'], '2024-12-31 23:59:30', '202501010000'),
    (['202402282359'], '2024-02-28 23:59:01', '202402290000'),
])
def test_free_timestamp(tmp_path, taken, now, expected):
    for ts in taken:
        touch(tmp_path, ts)
    assert N.free_timestamp(str(tmp_path), '5-17-0-116556', 'alation_backup', at(now)) == expected


def test_free_timestamp_looks_only_at_this_archive_name(tmp_path):
    now = at('2024-05-01 12:30:15')
    touch(tmp_path, '202405011230', version='5-17-0-1')      # another version
    touch(tmp_path, '202405011230', suffix='other')         # another suffix
    touch(tmp_path, '202405011230', extra='.sha256')        # a checksum left without its archive
    assert N.free_timestamp(str(tmp_path), '5-17-0-116556', 'alation_backup', now) == '202405011230'
    os.symlink('nowhere', str(tmp_path / N.archive_name('202405011230', '5-17-0-116556')))  # taken, even dangling
    assert N.free_timestamp(str(tmp_path), '5-17-0-116556', 'alation_backup', now) == '202405011231'


def test_free_timestamp_defaults_to_now(tmp_path):
    before = N.default_timestamp()
    got = N.free_timestamp(str(tmp_path), '5-17-0-116556')
    assert before <= got <= N.default_timestamp()


@pytest.mark.parametrize('timestamp,now,seconds', [
    ('202405011231', '2024-05-01 12:30:15', 45.0),
    ('202405011231', '2024-05-01 12:30:59', 1.0),
    ('202405011230', '2024-05-01 12:30:15', 0.0),
    ('202405011229', '2024-05-01 12:30:15', 0.0),
    ('202501010000', '2024-12-31 23:59:30', 30.0),
])
def test_seconds_until(timestamp, now, seconds):
    assert N.seconds_until(timestamp, at(now)) == seconds


def publish(directory, name, data=b'archive bytes', size=None, sidecar=True):
    path = os.path.join(str(directory), name)
    with open(path, 'wb') as f:
        f.write(data)
    if sidecar:
        with open(path + '.sha256', 'w') as f:
            f.write(N.sidecar_text(hashlib.sha256(data).hexdigest(), name, len(data) if size is None else size))
    return path


def test_newest_good_trusts_an_archive_its_sha256_vouches_for_not_a_name(tmp_path):
    old = publish(tmp_path, '202401010000_5-17-0-1_alation_backup.tar.gz')
    damaged = publish(tmp_path, '202402010000_5-17-0-1_alation_backup.tar.gz', size=999)
    unsealed = publish(tmp_path, '202403010000_5-17-0-1_alation_backup.tar.gz', sidecar=False)
    (tmp_path / '202404010000_5-17-0-1_alation_backup.tar.gz.sha256').write_text('0' * 64 + '  lone\n')
    (tmp_path / '.202405010000_5-17-0-1_alation_backup.tar.gz.host.1.tmp').write_bytes(b'x')
    path, ignored = N.newest_good(str(tmp_path))
    assert path == old
    whys = dict((os.path.basename(i['path']), i['why']) for i in ignored)
    assert whys == {
        '202404010000_5-17-0-1_alation_backup.tar.gz.sha256': 'a .sha256 without its archive',
        os.path.basename(unsealed): '%s.sha256 is missing' % unsealed,
        os.path.basename(damaged): 'it has 13 bytes, its .sha256 recorded 999 at publish',
    }


def test_newest_good_with_rehash_catches_a_same_size_change(tmp_path):
    path = publish(tmp_path, '202401010000_5-17-0-1_alation_backup.tar.gz')
    with open(path, 'r+b') as f:
        f.write(b'X')
    assert N.newest_good(str(tmp_path))[0] == path  # the size still matches
    found, ignored = N.newest_good(str(tmp_path), rehash=True)
    assert found is None and ignored[0]['why'] == 'it does not hash to the sha256 its .sha256 records'


def test_a_sidecar_without_a_size_line_still_counts(tmp_path):
    path = publish(tmp_path, '202401010000_5-17-0-1_alation_backup.tar.gz', sidecar=False)
    with open(path + '.sha256', 'w') as f:
        f.write('%s  %s\n' % (hashlib.sha256(b'archive bytes').hexdigest(), os.path.basename(path)))
    assert N.read_sidecar(path + '.sha256', os.path.basename(path))[1] is None
    assert N.newest_good(str(tmp_path))[0] == path


def test_hosts_of_one_short_name_in_two_domains_have_their_own_temp_files(tmp_path, monkeypatch):
    """On a shared storage dir, alation-1.dc1 must never remove a file alation-1.dc2 is writing."""
    machine_id = tmp_path / 'machine-id'
    machine_id.write_text('0123456789abcdef0123456789abcdef\n')
    monkeypatch.setattr(N, 'MACHINE_ID_FILE', str(machine_id))
    monkeypatch.setattr(N.socket, 'gethostname', lambda: 'alation-1.dc2.example.com')
    theirs = N.tmp_name(N.archive_name('202405011230', '5-17-0-116556'), dead_pid())
    monkeypatch.setattr(N.socket, 'gethostname', lambda: 'alation-1.dc1.example.com')
    machine_id.write_text('fedcba9876543210fedcba9876543210\n')
    assert N.host_label() == 'alation-1-dc1-example-com-fedcba98'
    dest = tmp_path / 'backup'
    dest.mkdir()
    (dest / theirs).write_bytes(b'another host at work')
    assert N.find_stale_tmp(str(dest)) == [], 'a dead pid here says nothing about a writer on another host'
    # Without a machine id the full name still tells the two domains apart.
    monkeypatch.setattr(N, 'MACHINE_ID_FILE', str(tmp_path / 'none'))
    assert N.host_label() == 'alation-1-dc1-example-com'


# -- the clock: names in the future ---------------------------------------------------------

def epoch(text):
    return calendar.timegm(time.strptime(text, '%Y%m%d%H%M'))


@pytest.mark.parametrize('ts, future', [
    ('202611301200', False), ('202611301300', False), ('202611301301', True), ('203101010000', True),
    ('202001010000', False)])
def test_is_future_is_more_than_an_hour_ahead(ts, future):
    name = '%s_5-17-0-1_alation_backup.tar.gz' % ts
    assert N.is_future(name, now=epoch('202611301200')) is future
    assert N.is_future('/data2/backup/' + name, now=epoch('202611301200')) is future


def test_newest_good_never_takes_a_name_in_the_future(tmp_path):
    """A clock that ran ahead named three archives 2031: the freshness guard must not take them for fresh."""
    good = publish(tmp_path, '202611301100_5-17-0-1_alation_backup.tar.gz')
    future = [publish(tmp_path, '2031010%d0000_5-17-0-1_alation_backup.tar.gz' % d) for d in (1, 2, 3)]
    now = epoch('202611301200')
    path, ignored = N.newest_good(str(tmp_path), now=now)
    assert path == good
    assert [i['path'] for i in ignored] == future[::-1]
    assert ignored[0]['why'].startswith('named 2031-01-03 00:00 UTC, ') and 'never the newest' in ignored[0]['why']
    assert N.future_archives(str(tmp_path), now=now) == future
    # Only future ones: none counts.
    os.unlink(good)
    assert N.newest_good(str(tmp_path), now=now)[0] is None
    # Once the clock has caught up, they count again.
    assert N.newest_good(str(tmp_path), now=epoch('203101030000'))[0] == future[-1]
