# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore helpers: choosing the archive, reading its head, checksums, places, tablespaces, server settings."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _restore
from ansible_collections.alation.backup.plugins.module_utils._archive_names import ARCHIVE_RE, list_archives
from ansible_collections.alation.backup.plugins.module_utils._restore import RestoreError


def make_archive(path, manifest, members=()):
    """A .tar.gz with the manifest first, then (name, bytes or None for a dir) members."""
    with tarfile.open(path, 'w:gz') as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo(_restore.MANIFEST_NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o700
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))


@pytest.mark.parametrize('name, matches', [
    ('202405011230_5-17-0-116556_alation_backup.tar.gz', True),
    ('202405011230_5.17.0.116556_alation_backup.tar.gz', True),
    ('.202405011230_5-17-0-116556_alation_backup.tar.gz.host.123.tmp', False),
    ('202405011230_5-17-0-116556_alation_backup.tar.gz.sha256', False),
    ('20240501123_5-17-0-116556_alation_backup.tar.gz', False),
    ('202405011230_5-17-0-116556_alation_eb_backup.tar.gz', True),
])
def test_archive_names(name, matches):
    assert bool(ARCHIVE_RE.match(name)) is matches


def test_list_archives_newest_last_by_name_time_then_mtime(tmp_path):
    names = ['202401010000_5-17-0-1_alation_backup.tar.gz', '202405011230_5-17-0-1_alation_backup.tar.gz',
             '202403010000_5-17-0-1_alation_backup.tar.gz', '202409010000_5-17-0-1_alation_eb_backup.tar.gz',
             '.202412010000_5-17-0-1_alation_backup.tar.gz.h.1.tmp', 'notes.txt']
    for i, name in enumerate(names):
        (tmp_path / name).write_text('x')
        os.utime(tmp_path / name, (1000 - i, 1000 - i))  # mtimes disagree with the names on purpose
    os.mkdir(tmp_path / '202412310000_5-17-0-1_alation_backup.tar.gz')  # a directory is no archive
    found = [os.path.basename(p) for p in list_archives(str(tmp_path))]
    assert found == ['202401010000_5-17-0-1_alation_backup.tar.gz', '202403010000_5-17-0-1_alation_backup.tar.gz',
                     '202405011230_5-17-0-1_alation_backup.tar.gz']


def test_read_head_returns_the_manifest_and_the_next_members(tmp_path):
    path = str(tmp_path / 'a.tar.gz')
    make_archive(path, {'engine': 'pg_basebackup'}, [('tmp', None), ('tmp/x', b'1')])
    manifest, members = _restore.read_head(path, count=2)
    assert manifest == {'engine': 'pg_basebackup'}
    assert [m.name for m in members] == ['tmp', 'tmp/x']


def test_read_head_refuses_an_archive_without_a_manifest_first(tmp_path):
    path = str(tmp_path / 'a.tar.gz')
    with tarfile.open(path, 'w:gz') as tar:
        info = tarfile.TarInfo('other')
        tar.addfile(info, io.BytesIO(b''))
    with pytest.raises(RestoreError, match='not an alation.backup archive: its first member is other'):
        _restore.read_head(path)


def test_read_head_of_a_file_that_is_no_gzip(tmp_path):
    path = tmp_path / 'a.tar.gz'
    path.write_bytes(b'not gzip at all' * 100)
    with pytest.raises(RestoreError, match='cannot read the manifest'):
        _restore.read_head(str(path))


@pytest.mark.parametrize('line, expected', [
    ('%s  a.tar.gz\n' % ('ab' * 32), 'ab' * 32),
    ('%s *a.tar.gz\n' % ('AB' * 32), 'ab' * 32),
    ('%s  /elsewhere/a.tar.gz\n' % ('cd' * 32), 'cd' * 32),
])
def test_read_sha256_file(tmp_path, line, expected):
    (tmp_path / 'a.tar.gz.sha256').write_text(line)
    assert _restore.read_sha256_file(str(tmp_path / 'a.tar.gz.sha256'), 'a.tar.gz') == expected


@pytest.mark.parametrize('text, match', [
    (None, 'is missing'),
    ('%s  b.tar.gz\n' % ('ab' * 32), 'no sha256sum line for a.tar.gz'),
    ('garbage\n', 'no sha256sum line'),
])
def test_read_sha256_file_refusals(tmp_path, text, match):
    path = tmp_path / 'a.tar.gz.sha256'
    if text is not None:
        path.write_text(text)
    with pytest.raises(RestoreError, match=match):
        _restore.read_sha256_file(str(path), 'a.tar.gz')


def test_sha256_of(tmp_path):
    data = os.urandom(3 * _restore.HASH_BLOCK + 17)
    (tmp_path / 'f').write_bytes(data)
    assert _restore.sha256_of(str(tmp_path / 'f')) == hashlib.sha256(data).hexdigest()


MANIFEST = {'sources': [
    {'arcname': 'tmp', 'present': True, 'entries': 3, 'files': 2, 'dirs': 1, 'symlinks': 0, 'hardlinks': 0, 'bytes': 10},
    {'arcname': 'pgbackup', 'present': True, 'entries': 5, 'files': 4, 'dirs': 1, 'symlinks': 0, 'hardlinks': 0,
     'bytes': 1000},
    {'arcname': 'gone', 'present': False, 'entries': 0, 'files': 0, 'dirs': 0, 'symlinks': 0, 'hardlinks': 0, 'bytes': 0},
]}


@pytest.mark.parametrize('members, expected', [
    ([], ['tmp', 'pgbackup']),
    (['pgbackup'], ['pgbackup']),
    (['pgbackup', 'tmp'], ['pgbackup', 'tmp']),
])
def test_members_to_extract(members, expected):
    assert [s['arcname'] for s in _restore.members_to_extract(MANIFEST, members)] == expected


def test_members_to_extract_refuses_unknown_and_absent_sources():
    with pytest.raises(RestoreError, match='holds no source gone, nope; it holds pgbackup, tmp'):
        _restore.members_to_extract(MANIFEST, ['gone', 'nope'])


def test_space_needed_counts_bytes_a_block_per_entry_and_the_extra():
    sources = _restore.members_to_extract(MANIFEST, [])
    assert _restore.space_needed(sources, extra=500) == 10 + 1000 + 4096 * 8 + 500


def test_check_space_refuses_naming_both_numbers(tmp_path):
    # A path not made yet is measured on its nearest existing parent.
    with pytest.raises(RestoreError, match=r'not enough free space for x in .* free, %d bytes' % (1 << 60)):
        _restore.check_space(str(tmp_path / 'not' / 'yet'), 1 << 60, 'x')
    assert _restore.check_space(str(tmp_path), 1, 'x') > 0


@pytest.mark.parametrize('found, problems', [
    ({'entries': 3, 'files': 2, 'dirs': 1, 'symlinks': 0, 'hardlinks': 0, 'bytes': 10}, []),
    ({'entries': 2, 'files': 1, 'dirs': 1, 'symlinks': 0, 'hardlinks': 0, 'bytes': 4},
     ['tmp entries: archive recorded 3, extracted 2', 'tmp files: archive recorded 2, extracted 1',
      'tmp bytes: archive recorded 10, extracted 4']),
])
def test_count_mismatches(found, problems):
    assert _restore.count_mismatches(MANIFEST['sources'][0], found) == problems


def test_scan_extracted_counts_as_the_archive_module_does(tmp_path):
    root = tmp_path / 'tmp'
    root.mkdir()
    (root / 'a').write_bytes(b'12345')
    os.link(root / 'a', root / 'b')
    os.symlink('a', root / 'c')
    found = _restore.scan_extracted(str(root), 'tmp')
    assert {k: found[k] for k in _restore.COUNTED} == dict(entries=4, files=1, dirs=1, symlinks=1, hardlinks=1, bytes=5)


# -- places ----------------------------------------------------------------------------

def test_prepare_target_accepts_empty_and_absent(tmp_path):
    (tmp_path / 'empty').mkdir()
    assert _restore.prepare_target(str(tmp_path / 'empty'), False, 'pgdata') is None
    assert _restore.prepare_target(str(tmp_path / 'none'), False, 'pgdata') is None


def test_prepare_target_refuses_a_non_empty_dir_without_force(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'x').write_text('x')
    with pytest.raises(RestoreError, match='pgdata .*/d is not empty.*set force'):
        _restore.prepare_target(str(tmp_path / 'd'), False, 'pgdata')
    assert os.listdir(tmp_path / 'd') == ['x']


def test_prepare_target_with_force_moves_aside_never_deletes(tmp_path):
    import datetime
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'x').write_text('x')
    now = datetime.datetime(2024, 5, 1, 12, 30, 5, tzinfo=datetime.timezone.utc)
    assert _restore.prepare_target(str(tmp_path / 'd'), True, 'pgdata', now=now, dry_run=True) == \
        str(tmp_path / 'd.before-restore-20240501T123005Z')
    assert os.listdir(tmp_path / 'd') == ['x']
    aside = _restore.prepare_target(str(tmp_path / 'd'), True, 'pgdata', now=now)
    assert os.listdir(aside) == ['x'] and not os.path.exists(tmp_path / 'd')


@pytest.mark.parametrize('kind', ['file', 'link'])
def test_prepare_target_refuses_what_is_no_directory(tmp_path, kind):
    path = tmp_path / 'p'
    if kind == 'file':
        path.write_text('x')
    else:
        os.symlink(str(tmp_path), path)
    with pytest.raises(RestoreError, match='give a directory'):
        _restore.prepare_target(str(path), True, 'pgdata')


def test_running_postmaster(tmp_path):
    assert _restore.running_postmaster(str(tmp_path)) is None
    (tmp_path / 'postmaster.pid').write_text('%d\n/x\n' % os.getpid())
    assert _restore.running_postmaster(str(tmp_path)) == os.getpid()
    (tmp_path / 'postmaster.pid').write_text('999999999\n')
    assert _restore.running_postmaster(str(tmp_path)) is None
    (tmp_path / 'postmaster.pid').write_text('garbage\n')
    assert _restore.running_postmaster(str(tmp_path)) is None


# -- tablespaces -----------------------------------------------------------------------

def test_tablespace_map_round_trip():
    entries = _restore.parse_tablespace_map('16410 /srv/ts one\n\n16500 /data3/ts\n')
    assert entries == [('16410', '/srv/ts one'), ('16500', '/data3/ts')]
    relocated = _restore.relocated_tablespaces(entries, '/scratch/pgdata.tablespaces')
    assert relocated == {'16410': ('/srv/ts one', '/scratch/pgdata.tablespaces/16410'),
                         '16500': ('/data3/ts', '/scratch/pgdata.tablespaces/16500')}
    assert _restore.tablespace_map_text(relocated) == ('16410 /scratch/pgdata.tablespaces/16410\n'
                                                       '16500 /scratch/pgdata.tablespaces/16500\n')


@pytest.mark.parametrize('text', ['16410\n', 'x /srv/ts\n', '16410 relative/path\n'])
def test_tablespace_map_refuses_odd_lines(text):
    with pytest.raises(RestoreError, match='is not "<oid> <absolute path>"'):
        _restore.parse_tablespace_map(text)


def test_tar_member_text(tmp_path):
    path = str(tmp_path / 'base.tar')
    with tarfile.open(path, 'w') as tar:
        for name, data in (('./PG_VERSION', b'15\n'), ('tablespace_map', b'16410 /srv/ts\n')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert _restore.tar_member_text(path, 'tablespace_map') == '16410 /srv/ts\n'
    assert _restore.tar_member_text(path, 'PG_VERSION') == '15\n'
    assert _restore.tar_member_text(path, 'backup_label') is None


# -- the temporary server --------------------------------------------------------------

def settings(major=None, extra=None):
    return dict(_restore.server_settings('/s/pgdata', 5999, '/s/socket', '/s/socket/pg_hba.conf', major, extra))


def test_server_settings_keep_the_server_away_from_the_live_one():
    s = settings('15')
    assert s['data_directory'] == '/s/pgdata' and s['external_pid_file'] == ''
    assert s['listen_addresses'] == '127.0.0.1' and s['port'] == '5999'
    assert s['unix_socket_directories'] == '/s/socket' and s['hba_file'] == '/s/socket/pg_hba.conf'
    assert s['archive_mode'] == 'off' and s['restore_command'] == '' and s['primary_conninfo'] == ''
    assert 'stats_temp_directory' not in s


@pytest.mark.parametrize('major, recovery_gucs, stats_temp', [
    ('15', True, False), ('14', True, True), ('12', True, True), ('11', False, True), ('9.6', False, True),
])
def test_server_settings_by_major_version(major, recovery_gucs, stats_temp):
    s = settings(major)
    assert ('restore_command' in s) is recovery_gucs
    assert ('stats_temp_directory' in s) is stats_temp


def test_server_settings_extra_overrides_and_adds():
    s = _restore.server_settings('/p', 1, '/s', '/s/h', '15', {'shared_buffers': '1GB', 'work_mem': '4MB'})
    assert ('shared_buffers', '1GB') in s and s[-1] == ('work_mem', '4MB')
    assert [k for k, v in s].count('shared_buffers') == 1


def test_postgres_options_quotes_for_the_shell():
    assert _restore.postgres_options([('unix_socket_directories', '/a b'), ('archive_mode', 'off')]) == \
        "-c 'unix_socket_directories=/a b' -c archive_mode=off"


def test_log_findings():
    log = ('LOG:  starting PostgreSQL 15\n'
           'LOG:  consistent recovery state reached at 0/3000168\n'
           'FATAL:  the database system is starting up\n'
           'LOG:  database system is ready to accept connections\n')
    consistent, errors = _restore.log_findings(log)
    assert consistent == ['LOG:  consistent recovery state reached at 0/3000168',
                          'LOG:  database system is ready to accept connections']
    assert errors == ['FATAL:  the database system is starting up']


def test_free_port_is_bindable():
    import socket
    port = _restore.free_port()
    with socket.socket() as s:
        s.bind(('127.0.0.1', port))


def test_user_ids_from_the_shells_passwd(tmp_path):
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc' / 'passwd').write_text('root:x:0:0::/root:/bin/sh\nalation:x:1234:1235::/home:/bin/sh\n')
    assert _restore.user_ids('alation', str(tmp_path)) == (1234, 1235)
    assert _restore.user_ids('4321', str(tmp_path)) == (4321, -1)  # no such uid in the shell: group left alone
    assert _restore.user_ids('1234', str(tmp_path)) == (1234, 1235)
    with pytest.raises(RestoreError, match="is not a user in .*/etc/passwd"):
        _restore.user_ids('nobody_here', str(tmp_path))
    assert _restore.user_ids('root') == (0, 0)
    assert _restore.user_ids(None) == (os.geteuid(), os.getegid())
