# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive core: plan (option rules, manifest, space), write, verify and publish, on real files."""

import datetime
import hashlib
import json
import os
import socket
import stat
import subprocess
import tarfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _archive as A
from ansible_collections.alation.backup.plugins.module_utils import _gzip as G
from ansible_collections.alation.backup.plugins.module_utils._tar import normalize_sources, write_tar

from .test_archive_names import at
from .test_gzip import sample_data
from .test_tar import TREE_BYTES, TREE_MEMBERS, make_tree


# -- option rules ----------------------------------------------------------------

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

def test_hashing_file(tmp_path):
    fd = os.open(str(tmp_path / 'f'), os.O_WRONLY | os.O_CREAT)
    h = A.HashingFile(fd)
    h.write(b'abc')
    h.write(memoryview(b'defg'))
    os.close(fd)
    assert h.size == 7
    assert h.sha256.hexdigest() == hashlib.sha256(b'abcdefg').hexdigest() == \
        hashlib.sha256((tmp_path / 'f').read_bytes()).hexdigest()


def compressors_here():
    return [n for n, ok in G.available_compressors().items() if ok]


@pytest.mark.parametrize('compressor', G.COMPRESSORS)
def test_each_compressor_hashed_as_written_and_verified_by_each_reader(tmp_path, compressor):
    if compressor not in compressors_here():
        pytest.skip('%s not available here: %s' % (compressor, G.INSTALL_HINTS[compressor]))
    src = str(tmp_path / 'src')
    make_tree(src)
    path = str(tmp_path / 'out.tar.gz')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    out = A.HashingFile(fd)
    c = G.open_compressor(compressor, G.native_level(compressor, 6), 2, out)
    members, nbytes = write_tar(c, b'{"a": 1}\n', normalize_sources([dict(path=src, arcname='tmp')]))
    c.close()
    os.close(fd)
    assert hashlib.sha256(open(path, 'rb').read()).hexdigest() == out.sha256.hexdigest()
    assert (members, nbytes) == (TREE_MEMBERS, TREE_BYTES)
    with tarfile.open(path, 'r:gz') as tar:
        assert tar.getnames()[0] == A.MANIFEST_NAME and len(tar.getnames()) == TREE_MEMBERS
    for verifier in ('isal', 'igzip', 'pigz', 'zlib'):
        if verifier in compressors_here():
            assert A.verify_archive(path, verifier) == (TREE_MEMBERS, nbytes, A.MANIFEST_NAME)


@pytest.mark.parametrize('verifier', ['isal', 'igzip', 'pigz', 'zlib'])
def test_verify_detects_corruption(tmp_path, verifier):
    if verifier not in compressors_here():
        pytest.skip('%s not available here' % verifier)
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'data').write_bytes(sample_data(300000))
    path = str(tmp_path / 'a.tar.gz')
    with open(path, 'wb') as f:
        c = G.ZlibBlockWriter(f, 6, 1)
        write_tar(c, b'{}', normalize_sources([dict(path=str(src))]))
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
    p = dict(sources=[dict(path=src, arcname='tmp')], storage_dir=dest, version_tag='5.17.0.116556',
             timestamp='202405011230', compressor='zlib', manifest_extra=dict(pg_backup_id='S1'))
    p.update(kw)
    return p


@pytest.mark.parametrize('alongside', [True, False])
def test_plan_and_create(tree, alongside):
    src, dest = tree
    plan = A.Plan(params(src, dest, mode='0640'))
    plan.verify_alongside = alongside  # read back while writing (4+ CPUs) or after
    preview = plan.preview()
    assert preview['path'] == os.path.join(dest, '202405011230_5-17-0-116556_alation_backup.tar.gz')
    assert preview['members'] == 13 and os.listdir(dest) == []
    result = A.create_archive(plan)
    assert sorted(os.listdir(dest)) == [os.path.basename(result['path']), os.path.basename(result['sha256_path'])]
    assert stat.S_IMODE(os.stat(result['path']).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(result['sha256_path']).st_mode) == 0o640
    assert open(result['sha256_path']).read() == '%s  %s\n# size %d\n' % (
        result['sha256'], os.path.basename(result['path']), result['size'])
    with tarfile.open(result['path']) as tar:
        manifest = json.load(tar.extractfile(A.MANIFEST_NAME))
    assert manifest == json.loads(json.dumps(result['manifest']))
    assert manifest['pg_backup_id'] == 'S1' and manifest['sources'][0]['files'] == 4
    assert result['members'] == 13 and result['compressor'] == 'zlib' and result['compression_level'] == 6
    with pytest.raises(A.ArchiveError, match='already exists and is never overwritten'):
        A.Plan(params(src, dest))


@pytest.mark.parametrize('alongside', [True, False])
def test_create_removes_tmp_on_failure(tree, alongside):
    src, dest = tree
    plan = A.Plan(params(src, dest))
    plan.verify_alongside = alongside
    os.mkfifo(os.path.join(src, 'late-fifo'))  # appears after the scan
    with pytest.raises(A.ArchiveError, match='late-fifo is a FIFO'):
        A.create_archive(plan)
    assert os.listdir(dest) == []


def test_create_detects_sources_changed(tree):
    src, dest = tree
    plan = A.Plan(params(src, dest))
    with open(os.path.join(src, 'new-file'), 'w') as f:
        f.write('late')
    with pytest.raises(A.ArchiveError, match='the sources changed while they were archived'):
        A.create_archive(plan)
    assert os.listdir(dest) == []


def test_plan_refusals(tree):
    src, dest = tree
    with pytest.raises(A.ArchiveError, match='storage_dir .*/missing is not an existing directory'):
        A.Plan(params(src, os.path.join(dest, 'missing')))
    with pytest.raises(A.ArchiveError, match='would pack itself'):
        A.Plan(params(src, os.path.join(src, 'sub')))
    with pytest.raises(A.ArchiveError, match='threads 0 must be at least 1'):
        A.Plan(params(src, dest, threads=0))


@pytest.mark.parametrize('timestamp', [None, 'auto'])
def test_plan_auto_timestamp_takes_the_next_minute_when_this_one_is_taken(tree, timestamp):
    src, dest = tree
    now = at('2024-05-01 12:30:15')
    plan = A.Plan(params(src, dest, timestamp=timestamp), now=now)
    assert plan.auto_timestamp and plan.preview()['timestamp'] == '202405011230'
    open(plan.path, 'w').close()  # an archive of this minute exists
    plan = A.Plan(params(src, dest, timestamp=timestamp), now=now)
    preview = plan.preview()
    assert preview['timestamp'] == plan.manifest['timestamp'] == '202405011231'
    assert preview['path'] == os.path.join(dest, '202405011231_5-17-0-116556_alation_backup.tar.gz')


def test_given_timestamp_is_used_as_it_is(tree):
    src, dest = tree
    plan = A.Plan(params(src, dest, timestamp='202001010000'), now=at('2024-05-01 12:30:15'))
    assert not plan.auto_timestamp and plan.timestamp == '202001010000'


def test_create_waits_for_the_minute_it_took(tree):
    """A run right after another in the same minute: the next minute is taken, and waited for, then written."""
    src, dest = tree
    now = datetime.datetime.now(datetime.timezone.utc)
    first = A.create_archive(A.Plan(params(src, dest, timestamp='auto'), now=now))
    plan = A.Plan(params(src, dest, timestamp='auto'), now=now)
    assert plan.timestamp != first['timestamp']
    slept = []
    result = A.create_archive(plan, sleep=slept.append)
    assert result['timestamp'] == plan.timestamp and os.path.basename(result['path']).startswith(plan.timestamp)
    # From where `now` was in its minute to the start of the next (less if the clock moved on meanwhile).
    assert slept == ([pytest.approx(result['waited_s'], abs=0.001)] if result['waited_s'] else [])
    assert 0 <= result['waited_s'] <= 60 - now.second
    assert first['waited_s'] == 0


@pytest.mark.parametrize('timestamp,now,seconds', [
    ('202405011231', '2024-05-01 12:30:15', 45.0),
    ('202405011230', '2024-05-01 12:30:15', 0),
    ('209912312359', '2024-05-01 12:30:15', A.MAX_WAIT_S),  # never longer than a minute
])
def test_wait_for_minute(timestamp, now, seconds):
    slept = []
    assert A.wait_for_minute(timestamp, at(now), slept.append) == seconds
    assert slept == ([seconds] if seconds else [])


def test_orphaned_checksum_is_replaced(tree):
    src, dest = tree
    plan = A.Plan(params(src, dest))
    with open(plan.sha256_path, 'w') as f:
        f.write('left by an interrupted run\n')
    result = A.create_archive(plan)
    with open(result['sha256_path']) as f:
        assert f.readline() == '%s  %s\n' % (result['sha256'], os.path.basename(result['path']))


def test_the_archive_is_published_before_its_sha256(tree, monkeypatch):
    """A crash between the two renames leaves an archive without its .sha256, never the other way round."""
    src, dest = tree
    plan = A.Plan(params(src, dest))
    renames = []
    real_rename = os.rename

    def crash_on_the_sha256(a, b):
        renames.append(b)
        if b.endswith('.sha256'):
            raise KeyboardInterrupt('killed between the two renames')
        return real_rename(a, b)
    monkeypatch.setattr(os, 'rename', crash_on_the_sha256)
    with pytest.raises(KeyboardInterrupt):
        A.create_archive(plan)
    monkeypatch.setattr(os, 'rename', real_rename)
    assert os.path.exists(plan.path) and not os.path.exists(plan.sha256_path)
    # The next run reads it back and completes it, then writes its own.
    second = A.Plan(params(src, dest, timestamp='202405011231'))
    assert second.unsealed == [plan.path] and second.preview()['completed_sha256'] == [plan.path]
    result = A.create_archive(second)
    assert result['completed_sha256'] == [plan.path]
    subprocess.run(['sha256sum', '-c', '--strict', os.path.basename(plan.sha256_path)], cwd=dest, check=True)
    assert A.unsealed_archives(dest) == []


def test_a_damaged_archive_without_its_sha256_is_not_sealed(tree):
    src, dest = tree
    first = A.create_archive(A.Plan(params(src, dest)))
    os.unlink(first['sha256_path'])
    with open(first['path'], 'r+b') as f:
        f.seek(first['size'] // 2)
        f.write(b'\0' * 64)
    result = A.create_archive(A.Plan(params(src, dest, timestamp='202405011231')))
    assert result['completed_sha256'] == []
    assert not os.path.exists(first['sha256_path'])


def test_archive_appearing_meanwhile_is_not_overwritten(tree):
    src, dest = tree
    plan = A.Plan(params(src, dest))
    with open(plan.path, 'w') as f:
        f.write('another run won')  # after the plan's check, before the publish
    with pytest.raises(A.ArchiveError, match='appeared while this one was written'):
        A.create_archive(plan)
    assert open(plan.path).read() == 'another run won'
    assert sorted(os.listdir(dest)) == [os.path.basename(plan.path)]


@pytest.mark.parametrize('compressor', G.COMPRESSORS)
@pytest.mark.parametrize('verifier', ['isal', 'igzip', 'pigz', 'zlib'])
def test_read_back_while_writing(tree, compressor, verifier):
    """Every compressor with every reader, the reader following the file as it is written."""
    for name in (compressor, verifier):
        if name not in compressors_here():
            pytest.skip('%s not available here' % name)
    src, dest = tree
    with open(os.path.join(src, 'big.bin'), 'wb') as f:
        f.write(sample_data(5 * G.BLOCK_SIZE))
    plan = A.Plan(params(src, dest, compressor=compressor, threads=2))
    plan.verify_alongside = True
    plan.verifier = verifier
    result = A.create_archive(plan)
    assert result['verified_with'] == verifier
    assert hashlib.sha256(open(result['path'], 'rb').read()).hexdigest() == result['sha256']


def test_owner_and_tar_names_come_from_the_alation_shell(tree, tmp_path):
    src, dest = tree
    shell = tmp_path / 'shell'
    (shell / 'etc').mkdir(parents=True)
    uid, gid = os.geteuid(), os.getegid()
    # The shell names our ids otherwise than the host does; alationadmin exists only there.
    (shell / 'etc' / 'passwd').write_text('shelluser:x:%d:%d::/:/bin/sh\nalationadmin:x:4502:4503::/:/bin/sh\n'
                                          % (uid, gid))
    (shell / 'etc' / 'group').write_text('shellgroup:x:%d:\nalationadmin:x:4503:\n' % gid)
    plan = A.Plan(params(src, dest, owner='alationadmin', chroot=str(shell)))
    assert (plan.uid, plan.gid) == (4502, 4503)
    result = A.create_archive(plan)
    st = os.stat(result['path'])
    assert (st.st_uid, st.st_gid) == (4502, 4503)
    with tarfile.open(result['path']) as tar:
        assert {(m.uname, m.gname) for m in tar.getmembers()} == {('shelluser', 'shellgroup')}
    with pytest.raises(A.ArchiveError, match="owner 'alationadmin' is not a user on this host"):
        A.Plan(params(src, dest, owner='alationadmin', timestamp='202405011231'))
