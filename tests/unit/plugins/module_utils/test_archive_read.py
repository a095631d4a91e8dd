# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_archive_read: finding the archive, its head and checksum, unpacking it and checking what came out."""

import hashlib
import io
import json
import os
import tarfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _archive_read as ar
from ansible_collections.alation.backup.plugins.module_utils._archive import MANIFEST_NAME
from ansible_collections.alation.backup.plugins.module_utils._archive_names import ARCHIVE_RE, list_archives
from ansible_collections.alation.backup.plugins.module_utils._restore import RestoreError

from .runner_double import real, runner

NAME = '202405011230_5-17-0-1_alation_backup.tar.gz'


def make_archive(path, manifest, members=()):
    """A .tar.gz with the manifest first, then (name, bytes or None for a dir, mode) members."""
    with tarfile.open(str(path), 'w:gz') as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for member in members:
            name, content = member[:2]
            info = tarfile.TarInfo(name)
            info.mode = member[2] if len(member) > 2 else 0o700
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return str(path)


def write_sha256(path, digest=None):
    digest = digest or hashlib.sha256(open(path, 'rb').read()).hexdigest()
    with open(path + '.sha256', 'w') as f:
        f.write('%s  %s\n' % (digest, os.path.basename(path)))


# -- finding the archive --------------------------------------------------------------

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
        os.utime(str(tmp_path / name), (1000 - i, 1000 - i))  # mtimes disagree with the names on purpose
    os.mkdir(str(tmp_path / '202412310000_5-17-0-1_alation_backup.tar.gz'))  # a directory is no archive
    found = [os.path.basename(p) for p in list_archives(str(tmp_path))]
    assert found == ['202401010000_5-17-0-1_alation_backup.tar.gz', '202403010000_5-17-0-1_alation_backup.tar.gz',
                     '202405011230_5-17-0-1_alation_backup.tar.gz']


# -- head and checksum ------------------------------------------------------------------

def test_read_head_returns_the_manifest_and_the_next_members(tmp_path):
    path = make_archive(tmp_path / 'a.tar.gz', {'engine': 'pg_basebackup'}, [('tmp', None), ('tmp/x', b'1')])
    manifest, members = ar.read_head(path, count=2)
    assert manifest == {'engine': 'pg_basebackup'}
    assert [m.name for m in members] == ['tmp', 'tmp/x']


def test_read_head_refuses_an_archive_without_a_manifest_first(tmp_path):
    path = str(tmp_path / 'a.tar.gz')
    with tarfile.open(path, 'w:gz') as tar:
        tar.addfile(tarfile.TarInfo('other'), io.BytesIO(b''))
    with pytest.raises(RestoreError, match='not an alation.backup archive: its first member is other'):
        ar.read_head(path)


def test_read_head_of_a_file_that_is_no_gzip(tmp_path):
    path = tmp_path / 'a.tar.gz'
    path.write_bytes(b'not gzip at all' * 100)
    with pytest.raises(RestoreError, match='cannot read the manifest'):
        ar.read_head(str(path))


def test_read_head_refuses_a_manifest_that_is_no_object(tmp_path):
    path = make_archive(tmp_path / 'a.tar.gz', ['a list'])
    with pytest.raises(RestoreError, match='is not a JSON object'):
        ar.read_head(path)


@pytest.mark.parametrize('line, expected', [
    ('%s  a.tar.gz\n' % ('ab' * 32), 'ab' * 32),
    ('%s *a.tar.gz\n' % ('AB' * 32), 'ab' * 32),
    ('%s  /elsewhere/a.tar.gz\n' % ('cd' * 32), 'cd' * 32),
])
def test_read_sha256_file(tmp_path, line, expected):
    (tmp_path / 'a.tar.gz.sha256').write_text(line)
    assert ar.read_sha256_file(str(tmp_path / 'a.tar.gz.sha256'), 'a.tar.gz') == expected


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
        ar.read_sha256_file(str(path), 'a.tar.gz')


def test_sha256_of(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / 'f').write_bytes(data)
    assert ar.sha256_of(str(tmp_path / 'f')) == hashlib.sha256(data).hexdigest()


# -- archive_info's core ----------------------------------------------------------------

def info(**params):
    p = dict(path=None, storage_dir=None, suffix='alation_backup', checksum=False, manifest=True)
    p.update(params)
    return ar.ArchiveInfo(p)


def test_archive_info_takes_the_newest_and_checks_it(tmp_path):
    older = make_archive(tmp_path / '202401010000_5-17-0-1_alation_backup.tar.gz', {'n': 1})
    newest = make_archive(tmp_path / NAME, {'n': 2})
    for path in (older, newest):
        write_sha256(path)
    result = info(storage_dir=str(tmp_path), checksum=True).run()
    assert result['path'] == newest and result['archives'] == 2 and result['manifest'] == {'n': 2}
    assert result['sha256'] == result['sha256_recorded'] and result['sha256_path'] == newest + '.sha256'
    assert result['changed'] is False and result['size'] == os.path.getsize(newest)


def test_archive_info_fails_on_a_sha256_mismatch_keeping_what_it_found(tmp_path):
    path = make_archive(tmp_path / NAME, {})
    write_sha256(path, 'ab' * 32)
    core = info(path=path, checksum=True)
    with pytest.raises(RestoreError, match='sha256 check failed for .* records abab.*restore from another archive'):
        core.run()
    assert core.result['sha256_recorded'] == 'ab' * 32 and core.result['sha256'] != 'ab' * 32


@pytest.mark.parametrize('where, match', [
    ('missing-dir', 'the backup storage dir .* does not exist'),
    ('empty-dir', r'no archive in .* \(looked for <YYYYMMDDHHMM>_<version>_alation_backup.tar.gz\[.gpg\]\)'),
    ('missing-file', 'does not exist or is not a file'),
])
def test_archive_info_refusals(tmp_path, where, match):
    (tmp_path / 'empty-dir').mkdir()
    params = dict(path=str(tmp_path / where)) if where == 'missing-file' else dict(storage_dir=str(tmp_path / where))
    with pytest.raises(RestoreError, match=match):
        info(**params).run()


def test_archive_info_reads_no_manifest_when_told_not_to(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(b'not an archive')
    assert 'manifest' not in info(path=str(path), manifest=False).run()


# -- what to unpack and how it compares ------------------------------------------------

MANIFEST = {'sources': [
    dict(arcname='tmp', present=True, entries=3, files=2, dirs=1, symlinks=0, hardlinks=0, bytes=10),
    dict(arcname='pgbackup', present=True, entries=5, files=4, dirs=1, symlinks=0, hardlinks=0, bytes=1000),
    dict(arcname='gone', present=False, entries=0, files=0, dirs=0, symlinks=0, hardlinks=0, bytes=0),
]}


@pytest.mark.parametrize('members, expected', [
    ([], ['tmp', 'pgbackup']),
    (['pgbackup'], ['pgbackup']),
    (['pgbackup', 'tmp'], ['pgbackup', 'tmp']),
])
def test_members_to_extract(members, expected):
    assert [s['arcname'] for s in ar.members_to_extract(MANIFEST, members)] == expected


def test_members_to_extract_refuses_unknown_and_absent_sources():
    with pytest.raises(RestoreError, match='holds no source gone, nope; it holds pgbackup, tmp'):
        ar.members_to_extract(MANIFEST, ['gone', 'nope'])


def test_space_needed_counts_bytes_a_block_per_entry_and_the_extra():
    sources = ar.members_to_extract(MANIFEST, [])
    assert ar.space_needed(sources, extra=500) == 10 + 1000 + 4096 * 8 + 500


@pytest.mark.parametrize('found, problems', [
    ({'entries': 3, 'files': 2, 'dirs': 1, 'symlinks': 0, 'hardlinks': 0, 'bytes': 10}, []),
    ({'entries': 2, 'files': 1, 'dirs': 1, 'symlinks': 0, 'hardlinks': 0, 'bytes': 4},
     ['tmp entries: archive recorded 3, extracted 2', 'tmp files: archive recorded 2, extracted 1',
      'tmp bytes: archive recorded 10, extracted 4']),
])
def test_count_mismatches(found, problems):
    assert ar.count_mismatches(MANIFEST['sources'][0], found) == problems


def test_scan_extracted_counts_as_the_archive_module_does(tmp_path):
    root = tmp_path / 'tmp'
    root.mkdir()
    (root / 'a').write_bytes(b'12345')
    os.link(str(root / 'a'), str(root / 'b'))
    os.symlink('a', str(root / 'c'))
    found = ar.scan_extracted(str(root), 'tmp')
    assert {k: found[k] for k in ar.COUNTED} == dict(entries=4, files=1, dirs=1, symlinks=1, hardlinks=1, bytes=5)


@pytest.mark.parametrize('stderr, message', [
    ('gzip: stdin: not in gzip format\ntar: Child returned status 1\ntar: Error is not recoverable: exiting now\n',
     'tar unpacking a failed with exit code 2: gzip: stdin: not in gzip format'),
    ('tar: x: Cannot open: Permission denied\ntar: Exiting with failure status due to previous errors\n',
     'tar unpacking a failed with exit code 2: tar: x: Cannot open: Permission denied'),
    ('tar: Error is not recoverable: exiting now\n',
     'tar unpacking a failed with exit code 2: tar: Error is not recoverable: exiting now'),
    ('', 'tar unpacking a failed with exit code 2: no error output'),
])
def test_tar_failure_names_the_cause_not_that_tar_gave_up(stderr, message):
    assert ar.tar_failure('tar unpacking a', dict(rc=2, stderr=stderr)) == message


def test_decompressor_is_pigz_when_found(monkeypatch, tmp_path):
    monkeypatch.setattr(ar, 'find_program', lambda runner, name: (str(tmp_path / 'pigz'), []))
    assert ar.decompressor() == ('pigz', str(tmp_path / 'pigz'))
    monkeypatch.setattr(ar, 'find_program', lambda runner, name: (None, ['/usr/bin']))
    assert ar.decompressor() == ('gzip', 'gzip')


# -- archive_extract's core ---------------------------------------------------------------

COUNTS = dict(present=True, entries=2, files=1, dirs=1, symlinks=0, hardlinks=0, bytes=5)


@pytest.fixture
def archive(tmp_path):
    manifest = dict(sources=[dict(COUNTS, arcname='tmp'), dict(COUNTS, arcname='pgbackup')])
    return make_archive(tmp_path / NAME, manifest, [('tmp', None, 0o750), ('tmp/site.conf', b'12345', 0o640),
                                                    ('pgbackup', None), ('pgbackup/f', b'abcde', 0o600)])


def extract(path, dest, check_mode=False, programs=None, **params):
    p = dict(path=path, dest=dest, members=[], strip=False, force=False, space_check=True, extra_space=0,
             mode='0700', owner=None)
    p.update(params)
    return ar.Extract(p, runner(programs or {'tar': real}), check_mode=check_mode,
                      set_mode=lambda path: os.chmod(path, int(p['mode'], 8)))


def test_extract_in_check_mode_plans_and_writes_nothing(archive, tmp_path):
    dest = tmp_path / 'out'
    dest.mkdir()
    (dest / 'old').write_text('x')
    core = extract(archive, str(dest) + '/', check_mode=True, force=True)
    result = core.run()
    assert result['changed'] and result['dest'] == str(dest)
    assert result['moved_aside'].startswith(str(dest) + '.before-restore-')
    assert [s['arcname'] for s in result['sources']] == ['tmp', 'pgbackup'] and result['bytes'] == 10
    assert result['space_needed'] == 10 + 4 * 4096 and result['decompressor'] in ('pigz', 'gzip')
    [cmd] = result['executed_commands']
    assert cmd.startswith('tar --extract --file %s --use-compress-program=' % archive)
    assert cmd.endswith('--directory %s --  (check mode: not run)' % dest)
    assert core.runner.module.calls == [] and os.listdir(dest) == ['old']
    assert sorted(os.listdir(tmp_path)) == sorted([NAME, 'out'])


def test_extract_unpacks_everything_and_counts_it(archive, tmp_path):
    dest = str(tmp_path / 'out')
    result = extract(archive, dest, mode='0750').run()
    assert sorted(os.listdir(dest)) == [MANIFEST_NAME, 'pgbackup', 'tmp']
    assert oct(os.stat(dest).st_mode & 0o777) == '0o750'
    assert [s['found'] for s in result['sources']] == [dict((k, COUNTS[k]) for k in ar.COUNTED)] * 2
    assert result['moved_aside'] is None and result['duration_s'] >= 0
    assert result['executed_commands'][0].endswith('--directory %s --' % dest)


def test_extract_with_strip_makes_the_source_dest(archive, tmp_path):
    dest = tmp_path / 'files'
    dest.mkdir()  # empty: fine
    extract(archive, str(dest), members=['tmp'], strip=True).run()
    assert os.listdir(dest) == ['site.conf'] and oct(os.stat(dest).st_mode & 0o777) == '0o750'
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.files.extract')]
    with pytest.raises(RestoreError, match='is not empty'):
        extract(archive, str(dest), members=['tmp'], strip=True).run()


def test_extract_with_strip_needs_one_source(archive, tmp_path):
    core = extract(archive, str(tmp_path / 'out'), members=['tmp', 'pgbackup'], strip=True)
    with pytest.raises(RestoreError, match='strip needs exactly one source in members'):
        core.run()
    assert core.result['changed'] is False


def test_extract_fails_when_the_contents_differ_from_the_manifest(tmp_path):
    manifest = dict(sources=[dict(COUNTS, arcname='tmp', files=2, entries=3, bytes=9)])
    path = make_archive(tmp_path / 'a.tar.gz', manifest, [('tmp', None), ('tmp/only-one', b'12345')])
    with pytest.raises(RestoreError, match='does not match its manifest: tmp entries: archive recorded 3, extracted 2'):
        extract(path, str(tmp_path / 'out')).run()


def test_extract_reports_a_tar_failure_and_cleans_up_after_strip(archive, tmp_path):
    def truncated(argv):
        return 2, '', 'gzip: stdin: unexpected end of file\ntar: Error is not recoverable: exiting now\n'
    core = extract(archive, str(tmp_path / 'files'), members=['tmp'], strip=True, programs={'tar': truncated})
    with pytest.raises(RestoreError, match='tar unpacking .* failed with exit code 2: gzip: stdin: unexpected end'):
        core.run()
    assert core.result['changed'] and sorted(os.listdir(tmp_path)) == [NAME]


def test_extract_refuses_before_writing_without_the_space(archive, tmp_path):
    core = extract(archive, str(tmp_path / 'out'), extra_space=1 << 60)
    with pytest.raises(RestoreError, match='not enough free space for unpacking %s' % NAME):
        core.run()
    assert core.result['space_needed'] > 1 << 60 and core.runner.module.calls == []
    # The caller (the scheduled drill) tells a short filesystem from a broken archive by these two.
    assert 0 <= core.result['space_free'] < core.result['space_needed']
    assert not (tmp_path / 'out').exists()


def test_extract_refuses_an_unknown_owner(archive, tmp_path):
    with pytest.raises(ValueError, match="owner 'no_such_user_here' is not a user"):
        extract(archive, str(tmp_path / 'out'), owner='no_such_user_here').run()


def test_archive_info_newest_good_passes_over_names_in_the_future(tmp_path):
    good = make_archive(tmp_path / NAME, {'n': 1})
    future = make_archive(tmp_path / '203101010000_5-17-0-1_alation_backup.tar.gz', {'n': 2})
    for path in (good, future):
        write_sha256(path)
    result = info(storage_dir=str(tmp_path), newest_good=True).run()
    assert result['path'] == good and result['future_archives'] == [future]
    assert [i['path'] for i in result['ignored']] == [future] and 'hours ahead' in result['ignored'][0]['why']
    assert 0 <= result['age_s'] < 60
