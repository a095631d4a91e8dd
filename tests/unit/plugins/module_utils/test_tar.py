# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sources of an archive (rules, scan, refusals) and the tar stream written from them, on real trees."""

import io
import os
import socket
import tarfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _tar as T
from ansible_collections.alation.backup.plugins.module_utils._archive_names import MANIFEST_NAME, ArchiveError
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts


def test_normalize_sources_defaults():
    got = T.normalize_sources([dict(path='/data2/tmp/'), dict(path='/data2/backup/pgbackup', arcname='pg/',
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
    ([dict(path='/a', arcname=MANIFEST_NAME)], 'must be a relative name'),
    ([dict(path='/a', arcname='x'), dict(path='/b', arcname='x')], 'clashes with'),
    ([dict(path='/a', arcname='x'), dict(path='/b', arcname='x/y')], 'clashes with'),
    ([dict(path='/a', arcname='x/y'), dict(path='/b', arcname='x')], 'clashes with'),
    ([dict(path='/a', exclude='*')], 'unknown keys exclude'),
])
def test_normalize_sources_refused(sources, rule):
    with pytest.raises(ArchiveError, match=rule):
        T.normalize_sources(sources)


def test_archive_outside_sources(tmp_path):
    backup = tmp_path / 'backup'
    pg = backup / 'pgbackup'
    pg.mkdir(parents=True)
    sources = T.normalize_sources([dict(path=str(pg), arcname='pgbackup')])
    # dest a parent of a source: the role's layout, fine.
    T.check_archive_outside_sources(str(backup / 'x.tar.gz'), sources)
    for inside in (pg, pg / 'deeper'):
        with pytest.raises(ArchiveError, match='would pack itself'):
            T.check_archive_outside_sources(str(inside / 'x.tar.gz'), sources)
    # Through a symlink that leads inside: still refused.
    os.symlink(str(pg), str(tmp_path / 'link'))
    with pytest.raises(ArchiveError, match='would pack itself'):
        T.check_archive_outside_sources(str(tmp_path / 'link' / 'x.tar.gz'), sources)
    # A sibling whose name starts like the source is not inside it.
    (backup / 'pgbackup2').mkdir()
    T.check_archive_outside_sources(str(backup / 'pgbackup2' / 'x.tar.gz'), sources)


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


TREE_MEMBERS, TREE_BYTES = 13, 600 + 70000 + 4 + 2


def test_scan_counts(tmp_path):
    make_tree(str(tmp_path / 'src'))
    summary, totals = T.scan_sources(T.normalize_sources([dict(path=str(tmp_path / 'src'), arcname='tmp')]))
    s = summary[0]
    assert (s['files'], s['dirs'], s['symlinks'], s['hardlinks']) == (4, 5, 2, 1)
    assert s['entries'] == 12 and s['present'] is True
    assert s['bytes'] == TREE_BYTES
    assert totals['members'] == TREE_MEMBERS and totals['bytes'] == s['bytes']
    assert totals['tar_bytes_max'] > s['bytes'] + 512 * 12


def test_scan_missing_sources(tmp_path):
    srcs = T.normalize_sources([dict(path=str(tmp_path / 'gone'), arcname='pgbackup', optional=True)])
    summary, totals = T.scan_sources(srcs)
    assert summary[0]['present'] is False and totals['members'] == 1
    srcs = T.normalize_sources([dict(path=str(tmp_path / 'gone'), arcname='pgbackup')])
    with pytest.raises(ArchiveError, match=r'source .*gone \(pgbackup\) does not exist.*optional: true'):
        T.scan_sources(srcs)


def test_scan_refuses_symlinked_source(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'link'))
    with pytest.raises(ArchiveError, match=r'is a symlink .*give the real path .*real'):
        T.scan_sources(T.normalize_sources([dict(path=str(tmp_path / 'link'))]))


def test_scan_refuses_fifo_and_socket(tmp_path):
    src = tmp_path / 'src'
    (src / 'deep').mkdir(parents=True)
    os.mkfifo(str(src / 'deep' / 'pipe'))
    srcs = T.normalize_sources([dict(path=str(src))])
    with pytest.raises(ArchiveError, match=r'%s is a FIFO' % (src / 'deep' / 'pipe')):
        T.scan_sources(srcs)
    os.unlink(str(src / 'deep' / 'pipe'))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(src / 'sock'))
        with pytest.raises(ArchiveError, match=r'%s is a socket' % (src / 'sock')):
            T.scan_sources(srcs)
    finally:
        sock.close()


def write(tmp_path, accounts=None):
    """The tar of make_tree (as 'tmp') behind a small manifest, uncompressed, as bytes."""
    src = str(tmp_path / 'src')
    make_tree(src)
    out = io.BytesIO()
    members, nbytes = T.write_tar(out, b'{"a": 1}\n', T.normalize_sources([dict(path=src, arcname='tmp')]), accounts)
    assert (members, nbytes) == (TREE_MEMBERS, TREE_BYTES)
    return out.getvalue()


def test_write_tar_round_trip(tmp_path):
    raw = write(tmp_path)
    assert len(raw) % tarfile.RECORDSIZE == 0  # padded like GNU tar
    assert raw[257:265] == tarfile.GNU_MAGIC  # GNU format, no PAX headers
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
        assert names[0] == MANIFEST_NAME
        assert tar.extractfile(MANIFEST_NAME).read() == b'{"a": 1}\n'
        by = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile('tmp/a.txt').read() == b'hello\n' * 100
    assert len(names) == TREE_MEMBERS
    assert by['tmp/link-to-a'].issym() and by['tmp/link-to-a'].linkname == 'a.txt'
    assert by['tmp/sub/dangling'].issym() and by['tmp/sub/dangling'].linkname == '../nowhere'
    hard = [m for m in by.values() if m.islnk()]
    assert len(hard) == 1 and {hard[0].name, hard[0].linkname} == {'tmp/a.txt', 'tmp/sub/a-hardlink.txt'}
    assert by['tmp/a.txt'].mode == 0o640 or by['tmp/sub/a-hardlink.txt'].mode == 0o640
    assert by['tmp/sub/b.bin'].mtime == 1000000000
    assert by['tmp/café ü.json'].isreg()
    assert ('tmp/%s/%s/%s' % ('d' * 60, 'e' * 60, 'f' * 80)) in by
    host = Accounts()
    assert by['tmp/sub/b.bin'].uname == host.user_name(os.geteuid())
    assert by[MANIFEST_NAME].gname == host.group_name(os.getegid())


def shell_accounts(tmp_path, passwd, group):
    """Accounts of an Alation shell (a root with its own etc/passwd and etc/group) under tmp_path."""
    etc = tmp_path / 'shell' / 'etc'
    etc.mkdir(parents=True)
    (etc / 'passwd').write_text(passwd)
    (etc / 'group').write_text(group)
    return Accounts(str(tmp_path / 'shell'))


def test_header_names_come_from_the_accounts_given(tmp_path):
    """With the Alation shell's accounts, its names go into the headers, whatever the host calls those ids."""
    uid, gid = os.geteuid(), os.getegid()
    accounts = shell_accounts(tmp_path, 'alation:x:%d:%d::/home/alation:/bin/bash\n' % (uid, gid),
                              'alationgrp:x:%d:\n' % gid)
    with tarfile.open(fileobj=io.BytesIO(write(tmp_path, accounts))) as tar:
        assert {(m.uname, m.gname) for m in tar.getmembers()} == {('alation', 'alationgrp')}


def test_header_names_empty_for_unknown_ids(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(write(tmp_path, shell_accounts(tmp_path, '', '')))) as tar:
        assert {(m.uname, m.gname) for m in tar.getmembers()} == {('', '')}


def test_file_replaced_by_special_file_after_the_scan_is_refused(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    os.mkfifo(str(src / 'late-fifo'))
    st = os.lstat(str(src / 'late-fifo'))
    with pytest.raises(ArchiveError, match='late-fifo is a FIFO'):
        T.TarWriter(io.BytesIO()).tarinfo(str(src / 'late-fifo'), 'tmp/late-fifo', st)
