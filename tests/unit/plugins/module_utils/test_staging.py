# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The staging dir path rules and the no-follow, one-filesystem tree remover, on real files."""

import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _staging

# The list of system dirs, each refused itself, inside the Alation shell, and one level down.
SYSTEM = ['/etc', '/usr', '/var', '/home', '/root', '/boot', '/opt', '/bin', '/sbin', '/lib', '/lib64',
          '/dev', '/proc', '/sys', '/run', '/srv', '/tmp', '/mnt', '/media', '/snap']

REFUSED = [
    ('', 'not an absolute path'),
    ('data2/tmp', 'not an absolute path'),
    ('./data2/tmp', 'not an absolute path'),
    ('/', 'root directory'),
    ('//', 'root directory'),
    ('/data2', 'fewer than two path components'),
    ('/data2/', 'fewer than two path components'),
    ('/data2/tmp/..', "'..' component"),
    ('/data2/../etc/x', "'..' component"),
    ('/data2/tmp/../../etc', "'..' component"),
    ('/opt/alation', 'system directory /opt/alation'),
    ('/opt/alation/alation', 'system directory /opt/alation/alation'),
    ('/opt/alation/alation/', 'system directory /opt/alation/alation'),
    ('/opt/alation/foo', 'directly inside the system directory /opt/alation'),
    ('/opt/alation/alation/data2', 'fewer than two path components of the Alation shell'),
    ('/opt/alation/alation/etc/foo', 'directly inside the system directory /opt/alation/alation/etc'),
    ('/etc/foo', 'directly inside the system directory /etc'),
    ('/home/user', 'directly inside the system directory /home'),
    ('/tmp/x', 'directly inside the system directory /tmp'),
    ('/usr/local', 'system directory /usr/local'),
    ('/usr/local/foo', 'directly inside the system directory /usr/local'),
    ('/var/lib/foo', 'directly inside the system directory /var/lib'),
    ('/var/tmp/x', 'directly inside the system directory /var/tmp'),
    ('/etc//foo/', 'directly inside the system directory /etc'),
    ('/etc/./foo', 'directly inside the system directory /etc'),
] + [(d, 'system directory %s' % d) for d in SYSTEM] \
  + [('/opt/alation/alation' + d, 'system directory /opt/alation/alation' + d) for d in SYSTEM] \
  + [(d + '/child', 'directly inside the system directory %s' % d) for d in SYSTEM] \
  + [('/opt/alation/alation%s/child' % d, 'directly inside the system directory /opt/alation/alation' + d) for d in SYSTEM]

ALLOWED = ['/data2/tmp', '/data2/backup/pgbackup', '/data1/a/b', '/opt/alation/alation/data2/tmp',
           '/opt/alation/alation/data2/backup/pgbackup', '/etc/foo/bar', '/tmp/x/y', '/data2/tmp/./x']


@pytest.mark.parametrize('path,rule', REFUSED)
def test_refused_by_default(path, rule):
    reason = _staging.refusal(path)
    assert reason is not None
    assert "'%s'" % path in reason and rule in reason


@pytest.mark.parametrize('path', ALLOWED)
def test_allowed_by_default(path):
    assert _staging.refusal(path) is None


@pytest.mark.parametrize('path,roots', [
    ('/tmp/x', ['/tmp']),
    ('/etc/foo', ['/etc']),
    ('/home/user', ['/home']),
    ('/opt/alation/alation/tmp/x', ['/opt/alation/alation/tmp']),
    ('/tmp/x', ['/data2', '/tmp/']),
])
def test_allowed_root_lifts_the_default_rules(path, roots):
    assert _staging.refusal(path) is not None
    assert _staging.refusal(path, roots) is None


@pytest.mark.parametrize('path,roots,rule', [
    ('/tmp/x', ['/tmp/x'], 'strictly below'),            # an allowed root itself is never cleared
    ('/tmp/x', ['/tmp/x/y'], 'directly inside the system directory /tmp'),
    ('/etc', ['/'], "allowed_roots entry '/'"),
    ('/etc/foo', ['/'], "allowed_roots entry '/'"),
    ('/etc/foo', ['etc'], "allowed_roots entry 'etc' is not an absolute path"),
    ('/etc/foo', ['/data2/../etc'], "allowed_roots entry '/data2/../etc'"),
    ('/etc', ['/etc'], 'system directory /etc'),      # system dirs themselves: never
    ('/usr/local', ['/usr'], 'system directory /usr/local'),
    ('/', ['/data2'], 'root directory'),
    ('/tmp/../etc/x', ['/tmp'], "'..' component"),
    ('tmp/x', ['/tmp'], 'not an absolute path'),
])
def test_allowed_roots_do_not_lift_the_hard_rules(path, roots, rule):
    reason = _staging.refusal(path, roots)
    assert reason is not None and rule in reason and "'%s'" % path in reason


@pytest.fixture
def scratch():
    """A temp dir directly under /tmp, so its children fall under the /tmp rule."""
    d = tempfile.mkdtemp(prefix='staging-unit-', dir='/tmp')
    yield d
    subprocess.run(['chattr', '-R', '-i', d], stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(d, ignore_errors=True)


def test_symlinks_above_the_path_are_resolved(scratch):
    os.symlink('/etc', os.path.join(scratch, 'to-etc'))
    os.symlink('/tmp', os.path.join(scratch, 'to-tmp'))
    reason = _staging.refusal(os.path.join(scratch, 'to-etc', 'foo'))
    assert 'resolves to /etc/foo' in reason and 'system directory /etc' in reason
    # Lexically below the allowed root, really directly inside /tmp.
    reason = _staging.refusal(os.path.join(scratch, 'to-tmp', 'x'), [scratch])
    assert 'resolves to /tmp/x' in reason
    # A chain of links resolves too.
    os.symlink(os.path.join(scratch, 'to-etc'), os.path.join(scratch, 'chain'))
    reason = _staging.refusal(os.path.join(scratch, 'chain', 'foo'))
    assert 'resolves to /etc/foo' in reason
    # Grandchildren of /etc are fine by the rules, through a link or not.
    assert _staging.refusal(os.path.join(scratch, 'to-etc', 'ssh', 'x')) is None


def test_symlinked_allowed_root_and_path_inside_it(scratch):
    real = os.path.join(scratch, 'real')
    os.mkdir(real)
    os.symlink(real, os.path.join(scratch, 'link'))
    assert _staging.refusal(os.path.join(scratch, 'link', 'staging'), [os.path.join(scratch, 'link')]) is None
    assert _staging.refusal(os.path.join(scratch, 'link', 'staging'), [real]) is None
    assert _staging.refusal(os.path.join(scratch, 'staging'), [scratch]) is None


@pytest.mark.parametrize('kind,rule', [
    ('link-to-dir', 'is a symlink'),
    ('dangling-link', 'is a symlink'),
    ('file', 'not a directory'),
    ('fifo', 'not a directory'),
])
def test_the_path_itself(scratch, kind, rule):
    path = os.path.join(scratch, 'staging')
    target = os.path.join(scratch, 'target')
    os.mkdir(target)
    if kind == 'link-to-dir':
        os.symlink(target, path)
    elif kind == 'dangling-link':
        os.symlink(os.path.join(scratch, 'nowhere'), path)
    elif kind == 'file':
        open(path, 'w').close()
    else:
        os.mkfifo(path)
    reason = _staging.refusal(path, [scratch])
    assert reason and rule in reason and path in reason


def test_missing_and_existing_dirs_pass(scratch):
    assert _staging.refusal(os.path.join(scratch, 'new', 'staging'), [scratch]) is None
    assert _staging.refusal(scratch + '/', ['/tmp']) is None


# ---------------------------------------------------------------- clear_tree

def make_tree(root):
    """A staging dir with files, nested dirs, an empty dir, links out and a fifo. Returns its byte count.

    The links point at a sentinel dir next to ``root`` (never at /etc: a broken
    remover must not be able to harm the host running the tests).
    """
    outside = os.path.join(os.path.dirname(root), 'outside')
    os.makedirs(outside)
    with open(os.path.join(outside, 'sentinel'), 'w') as f:
        f.write('keep')
    os.makedirs(os.path.join(root, 'pg', 'base', '1'))
    os.makedirs(os.path.join(root, 'empty'))
    with open(os.path.join(root, 'pg', 'base', '1', 'data'), 'wb') as f:
        f.write(b'x' * 1000)
    with open(os.path.join(root, 'top.txt'), 'wb') as f:
        f.write(b'y' * 24)
    os.mkfifo(os.path.join(root, 'pg', 'fifo'))
    os.symlink(outside, os.path.join(root, 'dir-link'))
    os.symlink(os.path.join(outside, 'sentinel'), os.path.join(root, 'pg', 'file-link'))
    os.symlink('nowhere', os.path.join(root, 'dangling'))
    return 1024


def listing(root):
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in dirs + files]
    return sorted(out)


def test_clear_tree_removes_everything_inside(scratch):
    stage = os.path.join(scratch, 'stage')
    os.mkdir(stage)
    size = make_tree(stage)
    result = _staging.clear_tree(stage)
    assert os.listdir(stage) == []
    # files: data, top.txt, fifo, 3 links; dirs: pg, pg/base, pg/base/1, empty
    assert (result.files, result.dirs, result.bytes) == (6, 4, size)
    assert sorted(result.top_removed) == ['dangling', 'dir-link', 'empty', 'pg', 'top.txt']
    assert result.top_kept == [] and result.skipped_mounts == []
    assert listing(os.path.join(scratch, 'outside')) == ['sentinel']


def test_dry_run_reports_the_same_and_touches_nothing(scratch):
    stage = os.path.join(scratch, 'stage')
    os.mkdir(stage)
    make_tree(stage)
    before = listing(stage)
    dry = _staging.clear_tree(stage, remove_self=True, dry_run=True)
    assert listing(stage) == before
    real = _staging.clear_tree(stage, remove_self=True)
    assert not os.path.lexists(stage)
    assert dry.as_dict() == real.as_dict()
    assert (dry.removed_self, sorted(dry.top_removed)) == (real.removed_self, sorted(real.top_removed))
    assert real.dirs == 5  # the staging dir itself counts


def test_symlink_to_dir_outside_is_removed_not_followed(scratch):
    stage, outside = os.path.join(scratch, 'stage'), os.path.join(scratch, 'outside')
    os.makedirs(os.path.join(outside, 'sub'))
    for name in ('a', 'sub/b'):
        with open(os.path.join(outside, name), 'w') as f:
            f.write('keep')
    os.makedirs(os.path.join(stage, 'd'))
    os.symlink(outside, os.path.join(stage, 'link'))
    os.symlink(outside, os.path.join(stage, 'd', 'link'))
    os.symlink(os.path.join(outside, 'a'), os.path.join(stage, 'file-link'))
    result = _staging.clear_tree(stage)
    assert os.listdir(stage) == []
    assert listing(outside) == ['a', 'sub', 'sub/b']
    assert (result.files, result.dirs) == (3, 1)


def test_mount_points_listed_are_left_alone(scratch):
    # A bind mount keeps st_dev; clear_tree also skips what mountinfo lists.
    stage = os.path.join(scratch, 'stage')
    os.makedirs(os.path.join(stage, 'a', 'mnt', 'inner'))
    os.makedirs(os.path.join(stage, 'b'))
    for name in ('a/x', 'a/mnt/inner/keep', 'b/y', 'z', 'bound-file'):
        open(os.path.join(stage, name), 'w').close()
    mounts = {os.path.join(stage, 'a', 'mnt'), os.path.join(stage, 'bound-file')}
    result = _staging.clear_tree(stage, remove_self=True, mount_points=mounts)
    assert listing(stage) == ['a', 'a/mnt', 'a/mnt/inner', 'a/mnt/inner/keep', 'bound-file']
    assert sorted(result.skipped_mounts) == sorted(mounts)
    assert sorted(result.top_kept) == ['a', 'bound-file'] and sorted(result.top_removed) == ['b', 'z']
    assert (result.files, result.dirs, result.removed_self) == (3, 1, False)


def test_staging_dir_that_is_a_mount_point_is_kept_for_absent(scratch):
    stage = os.path.join(scratch, 'stage')
    os.makedirs(os.path.join(stage, 'd'))
    result = _staging.clear_tree(stage, remove_self=True, mount_points={stage})
    assert os.path.isdir(stage) and os.listdir(stage) == []
    assert result.skipped_mounts == [stage] and result.dirs == 1


def mount_tmpfs(where):
    if os.geteuid() != 0:
        pytest.skip('mounting a tmpfs needs root')
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', where], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode:
        pytest.skip('cannot mount a tmpfs here: %s' % proc.stderr.strip())


@pytest.mark.root
def test_real_tmpfs_inside_is_left_alone(scratch):
    stage = os.path.join(scratch, 'stage')
    mnt = os.path.join(stage, 'deep', 'mnt')
    os.makedirs(mnt)
    mount_tmpfs(mnt)
    try:
        with open(os.path.join(mnt, 'on-tmpfs'), 'w') as f:
            f.write('keep')
        open(os.path.join(stage, 'deep', 'gone'), 'w').close()
        # st_dev alone must be enough, even without the mountinfo list.
        result = _staging.clear_tree(stage)
        assert os.listdir(mnt) == ['on-tmpfs']
        assert result.skipped_mounts == [mnt] and result.top_kept == ['deep']
        assert (result.files, result.dirs) == (1, 0)
        assert _staging.mount_points_below(stage) == {mnt}
    finally:
        subprocess.run(['umount', mnt], check=True)


def test_deep_tree_beyond_the_open_dir_limit(scratch):
    stage = os.path.join(scratch, 'stage')
    depth = _staging.MAX_OPEN_DIRS * 8
    os.mkdir(stage)
    fd = os.open(stage, os.O_RDONLY)
    try:
        # Build through fds: the full path would pass PATH_MAX.
        for i in range(depth):
            with open(os.open('f', os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), 'w') as f:
                f.write('12345')
            os.mkdir('d%d' % i, dir_fd=fd)
            nxt = os.open('d%d' % i, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    fds_before = len(os.listdir('/proc/self/fd'))
    dry = _staging.clear_tree(stage, dry_run=True)
    result = _staging.clear_tree(stage)
    assert len(os.listdir('/proc/self/fd')) == fds_before
    assert os.listdir(stage) == []
    assert (result.files, result.dirs, result.bytes) == (depth, depth, depth * 5)
    assert dry.as_dict() == result.as_dict()


def test_many_files(scratch):
    stage = os.path.join(scratch, 'stage')
    for d in range(50):
        sub = os.path.join(stage, 'dir%02d' % d)
        os.makedirs(sub)
        for n in range(200):
            with open(os.path.join(sub, 'f%03d' % n), 'wb') as f:
                f.write(b'z' * n)
    result = _staging.clear_tree(stage)
    assert os.listdir(stage) == []
    assert (result.files, result.dirs, result.bytes) == (10000, 50, 50 * sum(range(200)))
    assert len(result.top_removed) == 50


def test_dir_swapped_for_a_symlink_mid_walk_is_not_followed(scratch, monkeypatch):
    stage, outside = os.path.join(scratch, 'stage'), os.path.join(scratch, 'outside')
    os.makedirs(os.path.join(stage, 'victim'))
    os.makedirs(outside)
    open(os.path.join(outside, 'precious'), 'w').close()
    real_stat = os.stat

    def racing_stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if path == 'victim' and kwargs.get('dir_fd') is not None:
            # After the lstat said "directory", before it is opened.
            os.rename(os.path.join(stage, 'victim'), os.path.join(scratch, 'moved'))
            os.symlink(outside, os.path.join(stage, 'victim'))
        return st

    monkeypatch.setattr(_staging.os, 'stat', racing_stat)
    with pytest.raises(_staging.RemovalError) as err:
        _staging.clear_tree(stage)
    monkeypatch.undo()
    assert err.value.path == os.path.join(stage, 'victim')
    assert os.listdir(outside) == ['precious']


def test_dir_replaced_by_another_dir_is_detected(scratch):
    stage = os.path.join(scratch, 'stage')
    os.makedirs(os.path.join(stage, 'd'))
    st = os.lstat(os.path.join(stage, 'd'))
    os.rename(os.path.join(stage, 'd'), os.path.join(scratch, 'old'))
    os.mkdir(os.path.join(stage, 'd'))
    fd = os.open(stage, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match='replaced'):
            _staging._open_dir('d', fd, (st.st_dev, st.st_ino), 'd')
    finally:
        os.close(fd)


def chattr_immutable(path):
    if os.geteuid() != 0 or not shutil.which('chattr'):
        pytest.skip('chattr +i needs root and chattr')
    proc = subprocess.run(['chattr', '+i', path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode:
        pytest.skip('chattr +i does not work on this filesystem: %s' % proc.stderr.strip())


@pytest.mark.root
def test_error_mid_way_reports_the_path_and_what_was_removed(scratch):
    stage = os.path.join(scratch, 'stage')
    os.makedirs(os.path.join(stage, 'b'))
    for name in ('a1', 'a2', 'b/locked', 'c'):
        with open(os.path.join(stage, name), 'w') as f:
            f.write('12')
    chattr_immutable(os.path.join(stage, 'b', 'locked'))
    try:
        with pytest.raises(_staging.RemovalError) as err:
            _staging.clear_tree(stage)
    finally:
        subprocess.run(['chattr', '-i', os.path.join(stage, 'b', 'locked')], check=True)
    e = err.value
    assert e.path == os.path.join(stage, 'b', 'locked')
    assert (e.result.files, e.result.dirs, e.result.bytes) == (2, 0, 4)
    assert 'Operation not permitted' in str(e) and '2 files, 0 dirs, 4 bytes' in str(e)
    assert sorted(os.listdir(stage)) == ['b', 'c']


def test_not_a_directory_is_an_error(scratch):
    path = os.path.join(scratch, 'file')
    open(path, 'w').close()
    with pytest.raises(_staging.RemovalError):
        _staging.clear_tree(path)
    os.symlink(scratch, os.path.join(scratch, 'link'))
    with pytest.raises(_staging.RemovalError):
        _staging.clear_tree(os.path.join(scratch, 'link'))
    assert os.path.exists(path)


# ---------------------------------------------------------------- small helpers

def test_parse_mount_points_unescapes():
    text = ('27 1 254:0 / / rw - ext4 /dev/vda rw\n'
            '40 27 0:50 / /data2/tmp/with\\040space rw - tmpfs tmpfs rw\n'
            '41 27 0:51 / /data2/tmp/back\\134slash rw - tmpfs tmpfs rw\n')
    assert _staging.parse_mount_points(text) == {'/', '/data2/tmp/with space', '/data2/tmp/back\\slash'}


def test_mount_points_below_reads_mountinfo(tmp_path):
    info = tmp_path / 'mountinfo'
    info.write_text('1 0 0:1 / /data2/tmp rw - x x rw\n2 1 0:2 / /data2/tmp/m rw - x x rw\n'
                    '3 1 0:3 / /data2/tmpx rw - x x rw\n')
    assert _staging.mount_points_below('/data2/tmp', str(info)) == {'/data2/tmp/m'}
    assert _staging.mount_points_below('/data2/tmp', str(tmp_path / 'missing')) == frozenset()


@pytest.mark.parametrize('n,expected_len,last', [
    (0, 0, None), (100, 100, 'e099'), (101, 101, '... and 1 more'), (250, 101, '... and 150 more'),
])
def test_cut(n, expected_len, last):
    out = _staging.cut(['e%03d' % i for i in range(n)])
    assert len(out) == expected_len
    if last:
        assert out[-1] == last


def test_dir_state(tmp_path):
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'x').write_text('x')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'file').write_text('x')
    os.symlink('full', tmp_path / 'link')
    states = {n: _staging.dir_state(str(tmp_path / n)) for n in ('full', 'empty', 'file', 'link', 'none')}
    assert states == dict(full='not_empty', empty='empty', file='not_dir', link='symlink', none='absent')


@pytest.mark.parametrize('path, rule', [
    ('/srv/alation', 'it is the system directory /srv/alation'),
    ('/srv/alation/data2', 'it has fewer than two path components of the Alation shell /srv/alation'),
    ('/srv/alation/etc', 'it is the system directory /srv/alation/etc'),
    ('/srv/alation/etc/foo', 'it is directly inside the system directory /srv/alation/etc'),
    ('/srv/alation/', 'it is the system directory /srv/alation'),
])
def test_the_rules_hold_inside_a_shell_at_another_root(path, rule):
    why = _staging.refusal(path, shell_root='/srv/alation')
    assert why and rule in why, why
    assert _staging.refusal('/srv/alation/data2/tmp', shell_root='/srv/alation') is None


def test_without_the_shell_root_another_roots_top_level_dir_was_allowed():
    # What the rules said before they knew the configured shell: the typo went through.
    assert _staging.refusal('/srv/alation/data2') is None
