# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive core: option rules (pure functions), the tar writer, compressors and verification on real files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import tarfile
import zlib

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _archive as A


# -- option rules ----------------------------------------------------------------

@pytest.mark.parametrize('value,expected', [
    ('5-17-0-116556', '5-17-0-116556'),
    ('5.17.0.116556', '5-17-0-116556'),
    ('2023.3.1.1', '2023-3-1-1'),
    ('10-0-0-0', '10-0-0-0'),
])
def test_version_tag_accepted(value, expected):
    assert A.normalize_version_tag(value) == expected


@pytest.mark.parametrize('value', ['', '5.17.0', '5-17-0', '5.17-0.116556', '5_17_0_116556', 'v5.17.0.116556',
                                   '5.17.0.116556 ', ' 5-17-0-116556', '5..17.0.1', '5-17-0-11a', '5-17-0-116556-1',
                                   None, '5/17/0/1'])
def test_version_tag_refused(value):
    with pytest.raises(A.ArchiveError, match=r'version_tag: version .* is not an Alation version'):
        A.normalize_version_tag(value)


@pytest.mark.parametrize('value', ['202405011230', '200001010000', '202402291159', '209912312359'])
def test_timestamp_accepted(value):
    assert A.validate_timestamp(value) == value


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
    with pytest.raises(A.ArchiveError, match=rule):
        A.validate_timestamp(value)


def test_default_timestamp_is_valid_utc_minute():
    assert A.validate_timestamp(A.default_timestamp())


@pytest.mark.parametrize('value,ok', [('alation_backup', True), ('eb-backup_2', True), ('a/b', False),
                                      ('', False), ('x.y', False), ('back up', False), ('..', False)])
def test_suffix(value, ok):
    if ok:
        assert A.validate_suffix(value) == value
    else:
        with pytest.raises(A.ArchiveError, match='may only contain'):
            A.validate_suffix(value)


@pytest.mark.parametrize('value,expected', [('0600', 0o600), ('600', 0o600), ('0640', 0o640), ('1777', 0o1777),
                                            (0o600, 0o600), (384, 0o600)])
def test_mode_accepted(value, expected):
    assert A.parse_mode(value) == expected


@pytest.mark.parametrize('value', ['rw-------', '0800', '12345', 'u=rw', '', True, 0o10000, -1, 6.0])
def test_mode_refused(value):
    with pytest.raises(A.ArchiveError, match='mode'):
        A.parse_mode(value)


def test_owner_group_resolution():
    assert A.resolve_owner(None, None) == (-1, -1)
    assert A.resolve_owner('root', 'root') == (0, 0)
    assert A.resolve_owner('0', '0') == (0, 0)
    with pytest.raises(A.ArchiveError, match="owner 'no-such-user-x' is not a user"):
        A.resolve_owner('no-such-user-x', None)
    with pytest.raises(A.ArchiveError, match="group 'no-such-group-x' is not a group"):
        A.resolve_owner(None, 'no-such-group-x')


def test_names():
    name = A.archive_name('202405011230', '5-17-0-116556')
    assert name == '202405011230_5-17-0-116556_alation_backup.tar.gz'
    assert A.tmp_name(name, pid=42, host='web1') == '.202405011230_5-17-0-116556_alation_backup.tar.gz.web1.42.tmp'
    assert '.' not in A.host_label()


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
    assert bool(A.tmp_pattern().match(name)) is match


def dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def test_find_stale_tmp_only_ours_and_dead(tmp_path):
    host = A.host_label()
    name = A.archive_name('202405011230', '5-17-0-116556')
    dead = dead_pid()
    stale = [A.tmp_name(name, dead), A.tmp_name(name + '.sha256', dead)]
    kept = [A.tmp_name(name, os.getpid()), A.tmp_name(name, 1),            # alive writers
            A.tmp_name(name, dead, host='otherhost'),                      # another host (shared dest_dir)
            '.%s.%s.%d.tmp' % (A.archive_name('202405011230', '5-17-0-1', 'other'), host, dead),
            name, 'unrelated.tmp', '.%s.%d.tmp' % (name, dead)]
    for n in stale + kept:
        (tmp_path / n).write_bytes(b'x')
    # A directory or a symlink with the exact pattern is not ours to remove.
    (tmp_path / A.tmp_name('202405011231_5-17-0-1_alation_backup.tar.gz', dead)).mkdir()
    os.symlink('/etc/passwd', str(tmp_path / A.tmp_name('202405011232_5-17-0-1_alation_backup.tar.gz', dead)))
    found = A.find_stale_tmp(str(tmp_path))
    assert sorted(found) == sorted(str(tmp_path / n) for n in stale)


@pytest.mark.parametrize('compressor,level,expected', [
    ('isal', 1, 1), ('isal', 3, 1), ('isal', 4, 2), ('isal', 6, 2), ('isal', 7, 3), ('isal', 9, 3),
    ('igzip', 6, 2), ('zlib', 6, 6), ('zlib-ng', 1, 1), ('pigz', 9, 9),
])
def test_native_level(compressor, level, expected):
    assert A.native_level(compressor, level) == expected


@pytest.mark.parametrize('level', [0, 10, -1])
def test_level_out_of_range(level):
    with pytest.raises(A.ArchiveError, match='compression_level .* must be 1 to 9'):
        A.native_level('zlib', level)


ALL = dict(isal=True, igzip=True, **{'zlib-ng': True}, pigz=True, zlib=True)
NONE = dict(isal=False, igzip=False, **{'zlib-ng': False}, pigz=False, zlib=True)


@pytest.mark.parametrize('available,expected', [
    (ALL, 'isal'),
    (dict(ALL, isal=False), 'igzip'),
    (dict(NONE, **{'zlib-ng': True, 'pigz': True}), 'zlib-ng'),
    (dict(NONE, pigz=True), 'pigz'),
    (NONE, 'zlib'),
])
def test_auto_picks_fastest_present(available, expected):
    assert A.choose_compressor('auto', available) == expected


@pytest.mark.parametrize('name,hint', [('isal', 'pip install isal'), ('igzip', 'package isal'),
                                       ('zlib-ng', 'pip install zlib-ng'), ('pigz', 'apt-get install pigz')])
def test_forced_absent_compressor_says_how_to_install(name, hint):
    with pytest.raises(A.ArchiveError, match='compressor %s was asked for but is not available.*%s' % (name, hint)):
        A.choose_compressor(name, NONE)
    assert A.choose_compressor(name, ALL) == name


def test_unknown_compressor():
    with pytest.raises(A.ArchiveError, match="compressor 'bzip2' is unknown"):
        A.choose_compressor('bzip2', ALL)


def test_available_compressors_probes():
    found = A.available_compressors(which=lambda name: None, importable=lambda module: False)
    assert found == NONE
    assert A.available_compressors()['zlib'] is True


# -- sources ---------------------------------------------------------------------

def test_normalize_sources_defaults():
    got = A.normalize_sources([dict(path='/data2/tmp/'), dict(path='/data2/backup/pgbackup', arcname='pg/',
                                                              optional=True)])
    assert got == [dict(path='/data2/tmp', arcname='tmp', optional=False),
                   dict(path='/data2/backup/pgbackup', arcname='pg', optional=True)]


@pytest.mark.parametrize('sources,rule', [
    ([], 'sources is empty'),
    (['/data2/tmp'], 'must be a dict with a path'),
    ([dict(arcname='tmp')], 'must be a dict with a path'),
    ([dict(path='/a', arcname='/abs')], 'must be a relative name'),
    ([dict(path='/a', arcname='../up')], 'must be a relative name'),
    ([dict(path='/a', arcname='.')], 'must be a relative name'),
    ([dict(path='/a', arcname=A.MANIFEST_NAME)], 'must be a relative name'),
    ([dict(path='/a', arcname='x'), dict(path='/b', arcname='x')], 'clashes with'),
    ([dict(path='/a', arcname='x'), dict(path='/b', arcname='x/y')], 'clashes with'),
    ([dict(path='/a', arcname='x/y'), dict(path='/b', arcname='x')], 'clashes with'),
    ([dict(path='/a', exclude='*')], 'unknown keys exclude'),
])
def test_normalize_sources_refused(sources, rule):
    with pytest.raises(A.ArchiveError, match=rule):
        A.normalize_sources(sources)


def test_archive_outside_sources(tmp_path):
    backup = tmp_path / 'backup'
    pg = backup / 'pgbackup'
    pg.mkdir(parents=True)
    sources = A.normalize_sources([dict(path=str(pg), arcname='pgbackup')])
    # dest_dir a parent of a source: the role's layout, fine.
    A.check_archive_outside_sources(str(backup / 'x.tar.gz'), sources)
    for inside in (pg, pg / 'deeper'):
        with pytest.raises(A.ArchiveError, match='would pack itself'):
            A.check_archive_outside_sources(str(inside / 'x.tar.gz'), sources)
    # Through a symlink that leads inside: still refused.
    os.symlink(str(pg), str(tmp_path / 'link'))
    with pytest.raises(A.ArchiveError, match='would pack itself'):
        A.check_archive_outside_sources(str(tmp_path / 'link' / 'x.tar.gz'), sources)
    # A sibling whose name starts like the source is not inside it.
    (backup / 'pgbackup2').mkdir()
    A.check_archive_outside_sources(str(backup / 'pgbackup2' / 'x.tar.gz'), sources)


def make_tree(root):
    """Files, an empty dir, a symlink (dangling on purpose), a hard link, a long and a non-ASCII name."""
    os.makedirs(os.path.join(root, 'sub', 'empty'))
    with open(os.path.join(root, 'a.txt'), 'w') as f:
        f.write('hello\n' * 100)
    with open(os.path.join(root, 'sub', 'b.bin'), 'wb') as f:
        f.write(os.urandom(70000))
    os.link(os.path.join(root, 'a.txt'), os.path.join(root, 'sub', 'a-hardlink.txt'))
    os.symlink('../nowhere', os.path.join(root, 'sub', 'dangling'))
    os.symlink('a.txt', os.path.join(root, 'link-to-a'))
    long_dir = os.path.join(root, 'd' * 60, 'e' * 60)
    os.makedirs(long_dir)
    with open(os.path.join(long_dir, 'f' * 80), 'w') as f:
        f.write('long')
    with open(os.path.join(root, 'café ü.json'), 'w') as f:
        f.write('{}')
    os.chmod(os.path.join(root, 'a.txt'), 0o640)
    os.utime(os.path.join(root, 'sub', 'b.bin'), (1000000000, 1000000000))


def test_scan_counts(tmp_path):
    make_tree(str(tmp_path / 'src'))
    summary, totals = A.scan_sources(A.normalize_sources([dict(path=str(tmp_path / 'src'), arcname='tmp')]))
    s = summary[0]
    assert (s['files'], s['dirs'], s['symlinks'], s['hardlinks']) == (4, 5, 2, 1)
    assert s['entries'] == 12 and s['present'] is True
    assert s['bytes'] == 600 + 70000 + 4 + 2
    assert totals['members'] == 13 and totals['bytes'] == s['bytes']
    assert totals['tar_bytes_max'] > s['bytes'] + 512 * 12


def test_scan_missing_sources(tmp_path):
    srcs = A.normalize_sources([dict(path=str(tmp_path / 'gone'), arcname='pgbackup', optional=True)])
    summary, totals = A.scan_sources(srcs)
    assert summary[0]['present'] is False and totals['members'] == 1
    srcs = A.normalize_sources([dict(path=str(tmp_path / 'gone'), arcname='pgbackup')])
    with pytest.raises(A.ArchiveError, match=r'source .*gone \(pgbackup\) does not exist.*optional: true'):
        A.scan_sources(srcs)


def test_scan_refuses_symlinked_source(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'link'))
    with pytest.raises(A.ArchiveError, match=r'is a symlink .*give the real path .*real'):
        A.scan_sources(A.normalize_sources([dict(path=str(tmp_path / 'link'))]))


def test_scan_refuses_fifo_and_socket(tmp_path):
    src = tmp_path / 'src'
    (src / 'deep').mkdir(parents=True)
    os.mkfifo(str(src / 'deep' / 'pipe'))
    srcs = A.normalize_sources([dict(path=str(src))])
    with pytest.raises(A.ArchiveError, match=r'%s is a FIFO' % (src / 'deep' / 'pipe')):
        A.scan_sources(srcs)
    os.unlink(str(src / 'deep' / 'pipe'))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(src / 'sock'))
        with pytest.raises(A.ArchiveError, match=r'%s is a socket' % (src / 'sock')):
            A.scan_sources(srcs)
    finally:
        sock.close()


def test_check_space(tmp_path):
    assert A.check_space(str(tmp_path), 1) > 0
    with pytest.raises(A.ArchiveError, match=r'not enough free space for the archive .* in .*: \d+ bytes .* free, '
                                             r'1125899906842624 bytes \(1024.0 TiB\) needed'):
        A.check_space(str(tmp_path), 2 ** 50)


def test_manifest_extra_cannot_override():
    summary, totals = [], dict(members=1, bytes=0)
    m = A.build_manifest('202405011230', '5-17-0-1', 'x.tar.gz', summary, totals, 'zlib', 6,
                         dict(pg_backup_id='S1', pg_backup_mode='FULL'))
    assert m['pg_backup_id'] == 'S1' and m['format_version'] == A.MANIFEST_FORMAT_VERSION
    assert m['host'] == socket.gethostname()
    with pytest.raises(A.ArchiveError, match="manifest_extra key 'version_tag' is reserved"):
        A.build_manifest('202405011230', '5-17-0-1', 'x.tar.gz', summary, totals, 'zlib', 6, dict(version_tag='x'))


# -- writing and reading back ----------------------------------------------------------

def sample_data(n):
    rng = random.Random(n)
    words = [b'alpha', b'beta', b'catalog', b'schema', b'1234', b'\n']
    text = b' '.join(rng.choice(words) for i in range(n // 5))[:n // 2]
    return text + rng.randbytes(n - len(text))


@pytest.mark.parametrize('threads', [1, 3])
@pytest.mark.parametrize('size', [0, 1, A.BLOCK_SIZE - 1, A.BLOCK_SIZE, 3 * A.BLOCK_SIZE + 12345])
def test_zlib_block_writer_is_one_gzip_stream(threads, size):
    data = sample_data(size)
    out = io.BytesIO()
    w = A.ZlibBlockWriter(out, 6, threads)
    for i in range(0, len(data), 100000):
        w.write(data[i:i + 100000])
    w.close()
    raw = out.getvalue()
    d = zlib.decompressobj(31)
    assert d.decompress(raw) == data
    assert d.eof and d.unused_data == b''  # exactly one gzip member
    assert gzip.decompress(raw) == data


def test_zlib_block_writer_ratio_like_gzip():
    data = b''.join(b'row %d of the catalog table, steward alice, flag trusted\n' % i for i in range(200000))
    out = io.BytesIO()
    w = A.ZlibBlockWriter(out, 6, 2)
    w.write(data)
    w.close()
    assert len(out.getvalue()) < 1.05 * len(gzip.compress(data, 6))


def test_hashing_file(tmp_path):
    fd = os.open(str(tmp_path / 'f'), os.O_WRONLY | os.O_CREAT)
    h = A.HashingFile(fd)
    h.write(b'abc')
    h.write(memoryview(b'defg'))
    os.close(fd)
    assert h.size == 7
    assert h.sha256.hexdigest() == hashlib.sha256(b'abcdefg').hexdigest() == \
        hashlib.sha256((tmp_path / 'f').read_bytes()).hexdigest()


def test_pipe_compressor_failure_is_reported(tmp_path):
    fd = os.open(str(tmp_path / 'f'), os.O_WRONLY | os.O_CREAT)
    try:
        c = A.PipeCompressor([shutil.which('sh'), '-c', 'echo broken >&2; exit 3'], A.HashingFile(fd))
        with pytest.raises(A.ArchiveError, match=r'exit code 3\): broken'):
            for i in range(100):
                c.write(b'x' * 65536)
            c.close()
    finally:
        os.close(fd)


def compressors_here():
    return [n for n, ok in A.available_compressors().items() if ok]


@pytest.mark.parametrize('compressor', A.COMPRESSORS)
def test_write_tar_round_trip(tmp_path, compressor):
    if compressor not in compressors_here():
        pytest.skip('%s not available here: %s' % (compressor, A.INSTALL_HINTS[compressor]))
    src = str(tmp_path / 'src')
    make_tree(src)
    srcs = A.normalize_sources([dict(path=src, arcname='tmp')])
    path = str(tmp_path / 'out.tar.gz')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    out = A.HashingFile(fd)
    c = A.open_compressor(compressor, A.native_level(compressor, 6), 2, out)
    members, nbytes = A.write_tar(c, b'{"a": 1}\n', srcs)
    c.close()
    os.close(fd)
    assert hashlib.sha256(open(path, 'rb').read()).hexdigest() == out.sha256.hexdigest()
    assert (members, nbytes) == (13, 600 + 70000 + 4 + 2)
    with tarfile.open(path, 'r:gz') as tar:
        names = tar.getnames()
        assert names[0] == A.MANIFEST_NAME
        assert tar.extractfile(A.MANIFEST_NAME).read() == b'{"a": 1}\n'
        by = {m.name: m for m in tar.getmembers()}
    assert len(names) == 13
    assert gzip.decompress(open(path, 'rb').read())[257:265] == tarfile.GNU_MAGIC  # GNU format, no PAX headers
    assert by['tmp/link-to-a'].issym() and by['tmp/link-to-a'].linkname == 'a.txt'
    assert by['tmp/sub/dangling'].issym() and by['tmp/sub/dangling'].linkname == '../nowhere'
    hard = [m for m in by.values() if m.islnk()]
    assert len(hard) == 1 and {hard[0].name, hard[0].linkname} == {'tmp/a.txt', 'tmp/sub/a-hardlink.txt'}
    assert by['tmp/a.txt'].mode == 0o640 or by['tmp/sub/a-hardlink.txt'].mode == 0o640
    assert by['tmp/sub/b.bin'].mtime == 1000000000
    assert by['tmp/café ü.json'].isreg()
    assert ('tmp/%s/%s/%s' % ('d' * 60, 'e' * 60, 'f' * 80)) in by
    assert by['tmp/sub/b.bin'].uname == 'root' or os.geteuid() != 0
    for verifier in ('isal', 'igzip', 'pigz', 'zlib'):
        if verifier in compressors_here():
            assert A.verify_archive(path, verifier) == (13, nbytes, A.MANIFEST_NAME)


@pytest.mark.parametrize('verifier', ['isal', 'igzip', 'pigz', 'zlib'])
def test_verify_detects_corruption(tmp_path, verifier):
    if verifier not in compressors_here():
        pytest.skip('%s not available here' % verifier)
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'data').write_bytes(sample_data(300000))
    path = str(tmp_path / 'a.tar.gz')
    with open(path, 'wb') as f:
        c = A.ZlibBlockWriter(f, 6, 1)
        A.write_tar(c, b'{}', A.normalize_sources([dict(path=str(src))]))
        c.close()
    good = A.verify_archive(path, verifier)
    assert good[0] == 3
    raw = bytearray(open(path, 'rb').read())
    raw[len(raw) // 2] ^= 0xFF
    with open(path, 'wb') as f:
        f.write(raw)
    with pytest.raises(A.ArchiveError, match='verification of .* failed'):
        A.verify_archive(path, verifier)
    with open(path, 'wb') as f:
        f.write(bytes(raw[:len(raw) // 3]))  # truncated
    with pytest.raises(A.ArchiveError, match='verification of .* failed'):
        A.verify_archive(path, verifier)


# -- the whole operation ----------------------------------------------------------------

def params(src, dest, **kw):
    p = dict(sources=[dict(path=src, arcname='tmp')], dest_dir=dest, version_tag='5.17.0.116556',
             timestamp='202405011230', compressor='zlib', manifest_extra=dict(pg_backup_id='S1'))
    p.update(kw)
    return p


@pytest.mark.parametrize('alongside', [True, False])
def test_plan_and_create(tmp_path, alongside):
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    os.mkdir(dest)
    plan = A.Plan(params(src, dest, mode='0640'))
    plan.verify_alongside = alongside  # read back while writing (4+ CPUs) or after
    preview = plan.preview()
    assert preview['path'] == os.path.join(dest, '202405011230_5-17-0-116556_alation_backup.tar.gz')
    assert preview['members'] == 13 and os.listdir(dest) == []
    result = A.create_archive(plan)
    assert sorted(os.listdir(dest)) == [os.path.basename(result['path']), os.path.basename(result['sha256_path'])]
    assert stat.S_IMODE(os.stat(result['path']).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(result['sha256_path']).st_mode) == 0o640
    assert open(result['sha256_path']).read() == '%s  %s\n' % (result['sha256'], os.path.basename(result['path']))
    with tarfile.open(result['path']) as tar:
        manifest = json.load(tar.extractfile(A.MANIFEST_NAME))
    assert manifest == json.loads(json.dumps(result['manifest']))
    assert manifest['pg_backup_id'] == 'S1' and manifest['sources'][0]['files'] == 4
    assert result['members'] == 13 and result['compressor'] == 'zlib' and result['compression_level'] == 6
    with pytest.raises(A.ArchiveError, match='already exists and is never overwritten'):
        A.Plan(params(src, dest))


@pytest.mark.parametrize('alongside', [True, False])
def test_create_removes_tmp_on_failure(tmp_path, alongside):
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    os.mkdir(dest)
    plan = A.Plan(params(src, dest))
    plan.verify_alongside = alongside
    os.mkfifo(os.path.join(src, 'late-fifo'))  # appears after the scan
    with pytest.raises(A.ArchiveError, match='late-fifo is a FIFO'):
        A.create_archive(plan)
    assert os.listdir(dest) == []


def test_create_detects_sources_changed(tmp_path):
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    os.mkdir(dest)
    plan = A.Plan(params(src, dest))
    with open(os.path.join(src, 'new-file'), 'w') as f:
        f.write('late')
    with pytest.raises(A.ArchiveError, match='the sources changed while they were archived'):
        A.create_archive(plan)
    assert os.listdir(dest) == []


def test_plan_refusals(tmp_path):
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    with pytest.raises(A.ArchiveError, match='dest_dir .* is not an existing directory'):
        A.Plan(params(src, dest))
    with pytest.raises(A.ArchiveError, match='would pack itself'):
        A.Plan(params(src, os.path.join(src, 'sub')))
    os.mkdir(dest)
    with pytest.raises(A.ArchiveError, match='threads 0 must be at least 1'):
        A.Plan(params(src, dest, threads=0))


def test_orphaned_checksum_is_replaced(tmp_path):
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    os.mkdir(dest)
    plan = A.Plan(params(src, dest))
    with open(plan.sha256_path, 'w') as f:
        f.write('left by an interrupted run\n')
    result = A.create_archive(plan)
    with open(result['sha256_path']) as f:
        assert f.read() == '%s  %s\n' % (result['sha256'], os.path.basename(result['path']))


def test_archive_appearing_meanwhile_is_not_overwritten(tmp_path):
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    os.mkdir(dest)
    plan = A.Plan(params(src, dest))
    with open(plan.path, 'w') as f:
        f.write('another run won')  # after the plan's check, before the publish
    with pytest.raises(A.ArchiveError, match='appeared while this one was written'):
        A.create_archive(plan)
    assert open(plan.path).read() == 'another run won'
    assert sorted(os.listdir(dest)) == [os.path.basename(plan.path)]


@pytest.mark.parametrize('compressor', A.COMPRESSORS)
@pytest.mark.parametrize('verifier', ['isal', 'igzip', 'pigz', 'zlib'])
def test_read_back_while_writing(tmp_path, compressor, verifier):
    """Every compressor with every reader, the reader following the file as it is written."""
    for name in (compressor, verifier):
        if name not in compressors_here():
            pytest.skip('%s not available here' % name)
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    with open(os.path.join(src, 'big.bin'), 'wb') as f:
        f.write(sample_data(5 * A.BLOCK_SIZE))
    os.mkdir(dest)
    plan = A.Plan(params(src, dest, compressor=compressor, threads=2))
    plan.verify_alongside = True
    plan.verifier = verifier
    result = A.create_archive(plan)
    assert result['verified_with'] == verifier
    assert hashlib.sha256(open(result['path'], 'rb').read()).hexdigest() == result['sha256']
