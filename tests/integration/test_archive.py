# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive module run for real (its own process, tests/support/modrun.py) on real trees.

Checked with the real readers: GNU tar extracts the archive to the same tree,
``sha256sum -c`` accepts the checksum file, Python's tarfile reads it. Kills,
a full disk (a small tmpfs, as root) and missing accelerators are real too.
"""

import datetime
import grp
import hashlib
import json
import os
import pwd
import random
import shlex
import shutil
import signal
import stat
import subprocess
import tarfile
import time

import pytest

import modrun
from modrun import result_of, run_module, spawn_module

from ansible_collections.alation.backup.plugins.module_utils import _gzip as G
from ansible_collections.alation.backup.plugins.module_utils._archive_names import MANIFEST_NAME, tmp_name
from ansible_collections.alation.backup.plugins.module_utils._runner import STANDARD_DIRS

TS = '202405011230'
NAME = '%s_5-17-0-116556_alation_backup.tar.gz' % TS
AVAILABLE = G.available_compressors()
IS_ROOT = os.geteuid() == 0


def need(compressor):
    if not AVAILABLE.get(compressor):
        pytest.skip('compressor %s is not available here (make deps installs igzip and pigz; the venv has '
                    'isal): %s' % (compressor, G.INSTALL_HINTS[compressor]))


def text(rng, size):
    words = ['catalog', 'steward', 'schema', 'table', 'lineage', 'query', 'trusted', 'the', 'of', 'and']
    out = []
    n = 0
    while n < size:
        w = rng.choice(words) if rng.random() < 0.85 else str(rng.getrandbits(24))
        out.append(w)
        n += len(w) + 1
    return ' '.join(out)[:size].encode()


def make_tree(root, rng=None):
    """A small staging dir: nested files, modes, owners, symlinks, a hard link, a sparse file, odd names."""
    rng = rng or random.Random(7)
    for d in ('catalog/part1', 'catalog/part2', 'uploads', 'empty'):
        os.makedirs(os.path.join(root, d))
    for i in range(60):
        with open(os.path.join(root, 'catalog', 'part%d' % (1 + i % 2), 'obj_%03d.json' % i), 'wb') as f:
            f.write(text(rng, rng.randint(1000, 20000)))
    with open(os.path.join(root, 'uploads', 'blob.gz'), 'wb') as f:
        f.write(rng.randbytes(300000))
    os.symlink('catalog/part1/obj_000.json', os.path.join(root, 'latest.json'))
    os.symlink('/nonexistent/target', os.path.join(root, 'dangling'))
    os.symlink('uploads', os.path.join(root, 'uploads-link'))  # a link to a dir: stored, not followed
    os.link(os.path.join(root, 'catalog', 'part2', 'obj_001.json'), os.path.join(root, 'hardlink.json'))
    with open(os.path.join(root, 'sparse.db'), 'wb') as f:
        f.truncate(8 * 1024 * 1024)
        f.seek(5 * 1024 * 1024)
        f.write(b'data in the middle of a hole')
    with open(os.path.join(root, '名前 with spaces.txt'), 'w') as f:
        f.write('unicode name')
    long_dir = os.path.join(root, 'x' * 90, 'y' * 90)
    os.makedirs(long_dir)
    with open(os.path.join(long_dir, 'z' * 120 + '.txt'), 'w') as f:
        f.write('long path')
    os.chmod(os.path.join(root, 'catalog', 'part1', 'obj_000.json'), 0o600)
    os.chmod(os.path.join(root, 'uploads'), 0o750)
    os.chmod(os.path.join(root, 'uploads', 'blob.gz'), 0o444)
    os.utime(os.path.join(root, 'uploads', 'blob.gz'), (1500000000, 1500000000))
    if IS_ROOT:
        os.chown(os.path.join(root, 'catalog', 'part2'), 65534, 65534)
        os.lchown(os.path.join(root, 'latest.json'), 65534, 65534)
        os.chown(os.path.join(root, 'uploads', 'blob.gz'), 1, 1)


def snapshot(root):
    """path -> (type, mode, uid, gid, mtime, content sha / link target), never following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [''] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root)
            if name == '' and rel != '.':
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = ('link', os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                what = ('dir', None)
            else:
                with open(p, 'rb') as f:
                    what = ('file', hashlib.sha256(f.read()).hexdigest())
            mtime = None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)  # dir mtimes move on extraction
            mode = None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
            out[rel] = (what, mode, st.st_uid, st.st_gid, mtime)
    return out


@pytest.fixture
def layout(scratch):
    """The role's layout: staging dir, and the pg staging dir INSIDE the backup storage dir."""
    staging = os.path.join(scratch, 'data2', 'tmp')
    backup = os.path.join(scratch, 'data2', 'backup')
    pg = os.path.join(backup, 'pgbackup')
    make_tree(staging)
    os.makedirs(os.path.join(pg, 'backups', 'alation', 'S1', 'database'))
    with open(os.path.join(pg, 'backups', 'alation', 'S1', 'database', 'base_1'), 'wb') as f:
        f.write(text(random.Random(3), 500000))
    return dict(staging=staging, backup=backup, pg=pg, scratch=scratch)


def module_args(layout, **kw):
    args = dict(sources=[dict(path=layout['staging'], arcname='tmp'), dict(path=layout['pg'], arcname='pgbackup')],
                dest=layout['backup'], version_tag='5.17.0.116556', timestamp=TS,
                manifest_extra=dict(pg_backup_id='SABC12', pg_backup_mode='FULL'))
    args.update(kw)
    return args


@pytest.mark.parametrize('compressor', ('auto',) + G.COMPRESSORS)
def test_gnu_tar_extracts_the_same_tree(layout, compressor):
    if compressor != 'auto':
        need(compressor)
    before = dict(tmp=snapshot(layout['staging']), pgbackup=snapshot(layout['pg']))
    result = run_module('archive', module_args(layout, compressor=compressor))
    assert not result['failed'], result['msg']
    assert result['changed'] and result['path'] == os.path.join(layout['backup'], NAME)
    if compressor != 'auto':
        assert result['compressor'] == compressor
    else:
        assert result['compressor'] == next(c for c in G.COMPRESSORS if AVAILABLE[c])
    # Only the archive and its checksum appeared; no temporary file is left.
    assert sorted(os.listdir(layout['backup'])) == sorted([NAME, NAME + '.sha256', 'pgbackup'])
    assert stat.S_IMODE(os.stat(result['path']).st_mode) == 0o600

    subprocess.run(['sha256sum', '-c', NAME + '.sha256'], cwd=layout['backup'], check=True, capture_output=True)
    subprocess.run(['gzip', '-t', result['path']], check=True)
    listing = subprocess.run(['tar', '-tzf', result['path']], check=True, capture_output=True, text=True).stdout
    assert listing.splitlines()[0] == MANIFEST_NAME
    assert len(listing.splitlines()) == result['members']

    out = os.path.join(layout['scratch'], 'extracted')
    os.mkdir(out)
    subprocess.run(['tar', '-xzf', result['path'], '-C', out], check=True)
    assert snapshot(os.path.join(out, 'tmp')) == before['tmp']
    assert snapshot(os.path.join(out, 'pgbackup')) == before['pgbackup']
    assert sorted(os.listdir(out)) == [MANIFEST_NAME, 'pgbackup', 'tmp']
    assert os.lstat(os.path.join(out, 'tmp', 'hardlink.json')).st_ino == \
        os.lstat(os.path.join(out, 'tmp', 'catalog', 'part2', 'obj_001.json')).st_ino

    with open(os.path.join(out, MANIFEST_NAME)) as f:
        manifest = json.load(f)
    assert manifest == result['manifest']
    assert manifest['version_tag'] == '5-17-0-116556' and manifest['timestamp'] == TS
    assert manifest['pg_backup_id'] == 'SABC12' and manifest['pg_backup_mode'] == 'FULL'
    assert [s['arcname'] for s in manifest['sources']] == ['tmp', 'pgbackup']
    staged = manifest['sources'][0]
    assert (staged['symlinks'], staged['hardlinks']) == (3, 1)
    assert result['source_bytes'] == sum(s['bytes'] for s in manifest['sources'])

    # Python's tarfile reads it too ('tar' filter: the 'data' one refuses absolute link targets).
    py_out = os.path.join(layout['scratch'], 'py-extracted')
    with tarfile.open(result['path']) as tar:
        tar.extractall(py_out, filter='tar')
    with open(os.path.join(py_out, 'tmp', 'sparse.db'), 'rb') as f:
        assert f.read() == open(os.path.join(layout['staging'], 'sparse.db'), 'rb').read()


def test_check_mode_writes_nothing(layout):
    dead = subprocess.Popen(['true'])
    dead.wait()
    stale = os.path.join(layout['backup'], tmp_name(NAME, dead.pid))
    with open(stale, 'wb') as f:
        f.write(b'partial')
    before = sorted(os.listdir(layout['backup']))
    result = run_module('archive', module_args(layout), check=True)
    assert not result['failed'], result['msg']
    assert result['changed'] and result['path'] == os.path.join(layout['backup'], NAME)
    assert result['removed_stale_tmp'] == [stale]  # would be removed
    assert result['members'] > 70 and result['source_bytes'] > 8 * 1024 * 1024
    assert sorted(os.listdir(layout['backup'])) == before


def test_timestamp_auto_gives_a_second_run_in_the_same_minute_the_next_one(layout):
    """Two backups within a minute: the second takes the next minute, waits for it to start, and is written then."""
    args = module_args(layout)
    del args['timestamp']  # auto, the default
    first = run_module('archive', args)
    assert not first['failed'], first['msg']
    assert first['waited_s'] == 0 and first['manifest']['timestamp'] == first['timestamp']
    second = run_module('archive', args)
    done = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d%H%M')
    assert not second['failed'], second['msg']
    assert second['timestamp'] > first['timestamp'] and second['timestamp'] <= done
    if second['timestamp'] == next_minute(first['timestamp']):
        assert 0 <= second['waited_s'] <= 61  # 0 only when the first run ended in the next minute already
    else:
        assert second['waited_s'] == 0
    names = [os.path.basename(r['path']) for r in (first, second)]
    assert sorted(os.listdir(layout['backup'])) == sorted(names + [n + '.sha256' for n in names] + ['pgbackup'])
    subprocess.run(['sha256sum', '-c', names[1] + '.sha256'], cwd=layout['backup'], check=True, capture_output=True)


def next_minute(timestamp):
    t = datetime.datetime.strptime(timestamp, '%Y%m%d%H%M') + datetime.timedelta(minutes=1)
    return t.strftime('%Y%m%d%H%M')


def test_existing_archive_is_never_overwritten(layout):
    first = run_module('archive', module_args(layout, compressor='zlib'))
    assert not first['failed'], first['msg']
    digests = {p: hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in (first['path'], first['sha256_path'])}
    for check in (False, True):
        again = run_module('archive', module_args(layout), check=check)
        assert again['failed']
        assert again['msg'] == ('archive %s already exists and is never overwritten: use another timestamp or '
                                'suffix, or move the existing archive away' % first['path'])
    assert {p: hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in digests} == digests
    assert not [n for n in os.listdir(layout['backup']) if n.endswith('.tmp')]


def test_archive_inside_a_source_is_refused(layout):
    result = run_module('archive', module_args(layout, dest=layout['pg']))
    assert result['failed'] and 'would pack itself' in result['msg'] and layout['pg'] in result['msg']


def test_fifo_in_source_is_refused(layout):
    fifo = os.path.join(layout['staging'], 'catalog', 'part1', 'pipe')
    os.mkfifo(fifo)
    result = run_module('archive', module_args(layout))
    assert result['failed']
    assert result['msg'].startswith('%s is a FIFO: a backup archive holds only files' % fifo)
    assert sorted(os.listdir(layout['backup'])) == ['pgbackup']


def test_optional_missing_source_and_owner(layout):
    args = module_args(layout, sources=[dict(path=layout['staging'], arcname='tmp'),
                                        dict(path=os.path.join(layout['backup'], 'gone'), arcname='eb',
                                             optional=True)],
                       mode='0640')
    if IS_ROOT:
        args.update(owner='nobody', group=grp.getgrgid(65534).gr_name)
    result = run_module('archive', args)
    assert not result['failed'], result['msg']
    assert result['manifest']['sources'][1]['present'] is False
    for p in (result['path'], result['sha256_path']):
        st = os.stat(p)
        assert stat.S_IMODE(st.st_mode) == 0o640
        if IS_ROOT:
            assert (st.st_uid, st.st_gid) == (pwd.getpwnam('nobody').pw_uid, 65534)


@pytest.fixture
def slow_layout(scratch):
    """About 48 MB that zlib level 9 on one thread takes several seconds to pack."""
    src = os.path.join(scratch, 'staging')
    os.makedirs(src)
    rng = random.Random(11)
    chunk = text(rng, 4 * 1024 * 1024)
    for i in range(12):
        with open(os.path.join(src, 'big%02d.txt' % i), 'wb') as f:
            f.write(chunk[i:] + chunk[:i])
    dest = os.path.join(scratch, 'backup')
    os.mkdir(dest)
    return dict(src=src, dest=dest)


def slow_args(sl):
    return dict(sources=[dict(path=sl['src'], arcname='tmp')], dest=sl['dest'], version_tag='5-17-0-116556',
                timestamp=TS, compressor='zlib', compression_level=9, threads=1)


def wait_for_tmp(proc, dest, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        tmps = [n for n in os.listdir(dest) if n.endswith('.tmp')]
        if tmps and os.path.getsize(os.path.join(dest, tmps[0])) > 64 * 1024:
            return os.path.join(dest, tmps[0])
        assert proc.poll() is None, 'the module ended before it could be killed'
        time.sleep(0.05)
    raise AssertionError('no temporary file appeared in %s' % dest)


def test_killed_mid_write_leaves_no_archive_and_next_run_cleans(slow_layout):
    proc, args_file = spawn_module('archive', slow_args(slow_layout))
    try:
        tmp = wait_for_tmp(proc, slow_layout['dest'])
        assert os.path.basename(tmp) == tmp_name(NAME, proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(args_file)
    assert os.listdir(slow_layout['dest']) == [os.path.basename(tmp)]  # no final name, just the leftover

    result = run_module('archive', dict(slow_args(slow_layout), compression_level=1, threads=2))
    assert not result['failed'], result['msg']
    assert result['removed_stale_tmp'] == [tmp]
    assert sorted(os.listdir(slow_layout['dest'])) == [NAME, NAME + '.sha256']


def test_sigterm_mid_write_removes_the_temporary_file(slow_layout):
    proc, args_file = spawn_module('archive', slow_args(slow_layout))
    wait_for_tmp(proc, slow_layout['dest'])
    proc.send_signal(signal.SIGTERM)
    result = result_of(proc, args_file, timeout=60)
    assert result['failed'] and 'terminated by signal 15' in result['msg']
    assert os.listdir(slow_layout['dest']) == []


@pytest.fixture
def small_fs(scratch):
    """A 4 MiB tmpfs as the backup storage dir (needs root), and 8 MiB of incompressible sources."""
    if not IS_ROOT:
        pytest.skip('mounting a small tmpfs needs root')
    dest = os.path.join(scratch, 'full')
    os.mkdir(dest)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m,mode=0755', 'tmpfs', dest], check=True)
    src = os.path.join(scratch, 'staging')
    os.mkdir(src)
    for i in range(4):
        with open(os.path.join(src, 'random%d.bin' % i), 'wb') as f:
            f.write(os.urandom(2 * 1024 * 1024))
    try:
        yield dict(src=src, dest=dest)
    finally:
        subprocess.run(['umount', dest], check=True)


def test_dest_full_refused_before_writing(small_fs):
    result = run_module('archive', dict(sources=[dict(path=small_fs['src'], arcname='tmp')],
                                        dest=small_fs['dest'], version_tag='5-17-0-116556', timestamp=TS))
    assert result['failed']
    assert result['msg'].startswith('not enough free space for the archive (at worst the uncompressed size of the '
                                    'sources) in %s: 4194304 bytes (4.0 MiB) free, ' % small_fs['dest'])
    assert 'set space_check: false' in result['msg']
    assert os.listdir(small_fs['dest']) == []


@pytest.mark.parametrize('compressor', ['auto', 'zlib', 'pigz', 'igzip'])
def test_dest_full_mid_write_fails_cleanly(small_fs, compressor):
    if compressor != 'auto':
        need(compressor)
    result = run_module('archive', dict(sources=[dict(path=small_fs['src'], arcname='tmp')],
                                        dest=small_fs['dest'], version_tag='5-17-0-116556', timestamp=TS,
                                        space_check=False, compressor=compressor))
    assert result['failed']
    assert result['msg'].startswith('no space left in %s while writing the archive' % small_fs['dest']), result['msg']
    assert 'the temporary file was removed' in result['msg']
    assert os.listdir(small_fs['dest']) == []


def no_accelerators_env(scratch):
    """PATH without igzip/pigz, and isal shadowed by a package that fails to import."""
    shadow = os.path.join(scratch, 'shadow')
    os.makedirs(os.path.join(shadow, 'isal'))
    with open(os.path.join(shadow, 'isal', '__init__.py'), 'w') as f:
        f.write('raise ImportError("isal hidden by the test")\n')
    empty_bin = os.path.join(scratch, 'bin')
    os.mkdir(empty_bin)
    return dict(PATH=empty_bin, PYTHONPATH=os.pathsep.join([shadow, modrun.COLLECTIONS]))


def run_without_programs(args, env):
    """The module on a host without igzip and pigz in the standard dirs.

    find_program searches the standard dirs after PATH, so an empty PATH does
    not hide them: in a private mount namespace /dev/null is bound over each
    (needs root and unshare); what the test put on ``env``'s PATH still runs.
    """
    unshare, mount = shutil.which('unshare'), shutil.which('mount')
    if not IS_ROOT or not unshare or not mount:
        pytest.skip('hiding igzip and pigz needs root, unshare and mount')
    hide = sorted({os.path.realpath(os.path.join(d, prog)) for d in STANDARD_DIRS for prog in ('igzip', 'pigz')
                   if os.path.isfile(os.path.join(d, prog))})
    argv, full_env, args_file = modrun._argv_env('archive', args, env=env)
    script = ''.join('%s --bind /dev/null %s && ' % (mount, shlex.quote(p)) for p in hide) + 'exec "$@"'
    proc = subprocess.Popen([unshare, '--mount', '--', '/bin/sh', '-c', script, 'sh'] + argv, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return result_of(proc, args_file)


def test_auto_falls_back_to_stdlib_zlib(layout):
    env = no_accelerators_env(layout['scratch'])
    result = run_without_programs(module_args(layout), env)
    assert not result['failed'], result['msg']
    assert (result['compressor'], result['compression_level'], result['verified_with']) == ('zlib', 6, 'zlib')
    subprocess.run(['sha256sum', '-c', NAME + '.sha256'], cwd=layout['backup'], check=True, capture_output=True)
    subprocess.run(['tar', '-tzf', result['path']], check=True, capture_output=True)


@pytest.mark.parametrize('compressor,hint', [('isal', 'pip install isal'), ('igzip', 'package isal'),
                                             ('pigz', 'apt-get install pigz')])
def test_forcing_an_absent_compressor_says_how_to_install(layout, compressor, hint):
    env = no_accelerators_env(layout['scratch'])
    result = run_without_programs(module_args(layout, compressor=compressor), env)
    assert result['failed']
    assert result['msg'].startswith('compressor %s was asked for but is not available on this host' % compressor)
    assert hint in result['msg']
    assert sorted(os.listdir(layout['backup'])) == ['pgbackup']


@pytest.mark.parametrize('programs,verifier', [(('igzip', 'pigz'), 'igzip'), (('pigz',), 'pigz')])
def test_without_isal_a_program_reads_the_archive_back(layout, programs, verifier):
    for prog in programs:
        need(prog)
    env = no_accelerators_env(layout['scratch'])
    for prog in programs:  # a copy: the originals are hidden
        shutil.copy2(shutil.which(prog), os.path.join(env['PATH'], prog))
    result = run_without_programs(module_args(layout), env)
    assert not result['failed'], result['msg']
    assert (result['compressor'], result['verified_with']) == (programs[0], verifier)
    assert result['executed_commands'][0].startswith('%s -c ' % os.path.join(env['PATH'], programs[0]))
    assert result['executed_commands'][1] == '%s -dc' % os.path.join(env['PATH'], verifier)
    subprocess.run(['sha256sum', '-c', NAME + '.sha256'], cwd=layout['backup'], check=True, capture_output=True)
