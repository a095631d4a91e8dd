# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""staging_dir through AnsibleModule (set_module_args harness), on real directories."""

import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from modrun import run_module as run_module_process
from .utils import run_module

from ansible_collections.alation.backup.plugins.modules.staging_dir import main


def run(args, check=False, diff=False):
    return run_module(main, dict(args, _ansible_check_mode=check, _ansible_diff=diff))


@pytest.fixture
def scratch():
    d = tempfile.mkdtemp(prefix='staging-dir-unit-', dir='/tmp')
    yield d
    subprocess.run(['chattr', '-R', '-i', d], stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(d, ignore_errors=True)


def fill(stage, n_top=3):
    """Top-level files t0.., a nested dir with a file, and a link to a sentinel outside."""
    os.makedirs(os.path.join(stage, 'nested', 'deeper'), exist_ok=True)
    for i in range(n_top):
        with open(os.path.join(stage, 't%03d' % i), 'w') as f:
            f.write('abc')
    with open(os.path.join(stage, 'nested', 'deeper', 'f'), 'w') as f:
        f.write('12345')


def tree(root):
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in dirs + files]
    return sorted(out)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_creates_with_parents_then_is_idempotent(scratch):
    stage = os.path.join(scratch, 'a', 'b', 'stage')
    failed, result = run(dict(path=stage, allowed_roots=[scratch]))
    assert not failed and result['changed']
    assert os.path.isdir(stage) and mode_of(stage) == 0o700
    umask = os.umask(0)
    os.umask(umask)
    assert mode_of(os.path.join(scratch, 'a')) == 0o777 & ~umask
    failed, result = run(dict(path=stage))
    assert not failed and not result['changed']
    assert (result['removed_files'], result['removed_dirs'], result['removed_bytes'], result['skipped_mounts']) == (0, 0, 0, [])


def test_create_in_check_mode_touches_nothing(scratch):
    stage = os.path.join(scratch, 'a', 'stage')
    failed, result = run(dict(path=stage), check=True, diff=True)
    assert not failed and result['changed']
    assert not os.path.exists(os.path.join(scratch, 'a'))
    assert result['diff']['before'] == dict(path=stage, state='absent')
    assert result['diff']['after'] == dict(path=stage, state='directory', mode='0700')


def test_empty_removes_contents_counts_and_diff(scratch):
    stage = os.path.join(scratch, 'stage')
    fill(stage)
    os.chmod(stage, 0o700)
    failed, result = run(dict(path=stage), diff=True)
    assert not failed and result['changed']
    assert os.listdir(stage) == []
    assert (result['removed_files'], result['removed_dirs'], result['removed_bytes']) == (4, 2, 14)
    assert result['diff']['before']['entries'] == ['nested', 't000', 't001', 't002']
    assert result['diff']['after']['entries'] == []
    assert result['path'] == stage and result['skipped_mounts'] == []
    failed, result = run(dict(path=stage), diff=True)
    assert not failed and not result['changed']
    assert result['diff']['before'] == result['diff']['after']


def test_check_mode_reports_would_remove_and_touches_nothing(scratch):
    stage = os.path.join(scratch, 'stage')
    fill(stage)
    before = tree(stage)
    mode = mode_of(stage)
    failed, dry = run(dict(path=stage, mode='0750'), check=True, diff=True)
    assert not failed and dry['changed']
    assert tree(stage) == before and mode_of(stage) == mode
    assert dry['diff']['after']['mode'] == '0750' and dry['diff']['after']['entries'] == []
    failed, real = run(dict(path=stage, mode='0750'), diff=True)
    keys = ('removed_files', 'removed_dirs', 'removed_bytes', 'skipped_mounts')
    assert [dry[k] for k in keys] == [real[k] for k in keys]
    assert dry['diff'] == real['diff']


def test_check_mode_on_a_clean_dir_is_not_changed(scratch):
    stage = os.path.join(scratch, 'stage')
    os.mkdir(stage, 0o700)
    os.chmod(stage, 0o700)
    failed, result = run(dict(path=stage), check=True)
    assert not failed and not result['changed']


def test_diff_lists_at_most_100_entries(scratch):
    stage = os.path.join(scratch, 'stage')
    fill(stage, n_top=130)
    failed, result = run(dict(path=stage), check=True, diff=True)
    entries = result['diff']['before']['entries']
    assert len(entries) == 101 and entries[-1] == '... and 31 more'
    assert result['removed_files'] == 131


def test_present_leaves_contents_and_fixes_mode(scratch):
    stage = os.path.join(scratch, 'stage')
    fill(stage)
    os.chmod(stage, 0o755)
    before = tree(stage)
    failed, result = run(dict(path=stage, state='present', mode='u=rwx,g=rx,o='))
    assert not failed and result['changed']
    assert tree(stage) == before and mode_of(stage) == 0o750
    failed, result = run(dict(path=stage, state='present', mode='0750'))
    assert not failed and not result['changed'] and result['removed_files'] == 0


def test_absent_removes_the_dir_then_is_idempotent(scratch):
    stage = os.path.join(scratch, 'stage')
    fill(stage)
    failed, dry = run(dict(path=stage, state='absent'), check=True, diff=True)
    assert not failed and dry['changed'] and os.path.isdir(stage)
    assert dry['diff']['after'] == dict(path=stage, state='absent')
    failed, result = run(dict(path=stage, state='absent'))
    assert not failed and result['changed'] and not os.path.lexists(stage)
    assert (result['removed_files'], result['removed_dirs']) == (dry['removed_files'], dry['removed_dirs']) == (4, 3)
    failed, result = run(dict(path=stage, state='absent'))
    assert not failed and not result['changed']


@pytest.mark.parametrize('owner,group', [('root', 'root'), ('0', '0'), ('nobody', 'nogroup'), ('65534', '65534')])
def test_owner_and_group_by_name_or_id(scratch, owner, group):
    if os.geteuid() != 0:
        pytest.skip('chown needs root')
    stage = os.path.join(scratch, 'stage')
    failed, result = run(dict(path=stage, owner=owner, group=group))
    assert not failed and result['changed']
    st = os.lstat(stage)
    expected = 0 if owner in ('root', '0') else 65534
    assert (st.st_uid, st.st_gid) == (expected, expected)
    failed, result = run(dict(path=stage, owner=owner, group=group))
    assert not failed and not result['changed']


@pytest.mark.parametrize('key,value,text', [('owner', 'no-such-user-x', "owner 'no-such-user-x'"),
                                            ('group', 'no-such-group-x', "group 'no-such-group-x'")])
def test_unknown_owner_or_group_fails_before_anything(scratch, key, value, text):
    stage = os.path.join(scratch, 'stage')
    fill(stage)
    failed, result = run({'path': stage, key: value})
    assert failed and text in result['msg']
    assert len(tree(stage)) == 6
    failed, result = run({'path': os.path.join(scratch, 'new'), key: value})
    assert failed and not os.path.exists(os.path.join(scratch, 'new'))


# The same refusals as the module_utils tests, through the module: it fails and touches nothing.
SYSTEM = ['/etc', '/usr', '/var', '/home', '/root', '/boot', '/opt', '/bin', '/sbin', '/lib', '/lib64',
          '/dev', '/proc', '/sys', '/run', '/srv', '/tmp', '/mnt', '/media', '/snap', '/opt/alation',
          '/opt/alation/alation']
REFUSED = (['/', '/data2', 'data2/tmp', '/data2/../etc/x', '/opt/alation/alation/data2', '/etc/foo', '/home/user',
            '/tmp/x', '/opt/alation/alation/etc/foo']
           + SYSTEM + ['/opt/alation/alation' + d for d in SYSTEM[:20]] + [d + '/child' for d in SYSTEM])


@pytest.mark.parametrize('path', REFUSED)
@pytest.mark.parametrize('state', ['empty', 'present', 'absent'])
def test_refused_paths_fail_and_touch_nothing(path, state):
    # Check mode: should the rules ever break, a test run still cannot touch the host.
    existed = os.path.lexists(path)
    failed, result = run(dict(path=path, state=state), check=True)
    assert failed and "'%s'" % path in result['msg'] and 'refusing staging dir' in result['msg']
    assert os.path.lexists(path) == existed


def sibling_sentinel(scratch):
    os.makedirs(os.path.join(scratch, 'sibling'))
    sentinel = os.path.join(scratch, 'sibling', 'sentinel')
    with open(sentinel, 'w') as f:
        f.write('keep')
    return sentinel


@pytest.mark.parametrize('state', ['empty', 'present', 'absent'])
def test_path_that_is_a_symlink_is_refused(scratch, state):
    sentinel = sibling_sentinel(scratch)
    link = os.path.join(scratch, 'stage')
    os.symlink(os.path.dirname(sentinel), link)
    failed, result = run(dict(path=link, state=state, allowed_roots=[scratch]))
    assert failed and 'is a symlink' in result['msg'] and link in result['msg']
    assert os.path.islink(link) and open(sentinel).read() == 'keep'


@pytest.mark.parametrize('state', ['empty', 'present', 'absent'])
def test_path_that_is_a_file_is_refused(scratch, state):
    path = os.path.join(scratch, 'stage')
    with open(path, 'w') as f:
        f.write('keep')
    failed, result = run(dict(path=path, state=state))
    assert failed and 'not a directory' in result['msg']
    assert open(path).read() == 'keep'


def test_parent_symlink_to_a_system_dir_is_refused(scratch):
    os.symlink('/etc', os.path.join(scratch, 'to-etc'))
    failed, result = run(dict(path=os.path.join(scratch, 'to-etc', 'ssh'), allowed_roots=[scratch]), check=True)
    assert failed and 'resolves to /etc/ssh' in result['msg']


def test_parent_symlink_resolving_to_a_child_of_tmp_is_refused(scratch):
    # Lexically below the allowed root; really the scratch dir itself, directly in /tmp.
    sentinel = sibling_sentinel(scratch)
    os.symlink('/tmp', os.path.join(scratch, 'to-tmp'))
    path = os.path.join(scratch, 'to-tmp', os.path.basename(scratch))
    failed, result = run(dict(path=path, allowed_roots=[scratch]))
    assert failed and 'resolves to %s' % scratch in result['msg']
    assert open(sentinel).read() == 'keep'


def test_path_directly_under_tmp_needs_an_allowed_root(scratch):
    failed, result = run(dict(path=scratch))
    assert failed and 'directly inside the system directory /tmp' in result['msg']
    failed, result = run(dict(path=scratch, allowed_roots=[scratch]))
    assert failed and 'strictly below' in result['msg']
    failed, result = run(dict(path=scratch, allowed_roots=['/tmp']))
    assert not failed


def test_symlink_inside_to_a_dir_outside_survives(scratch):
    sentinel = sibling_sentinel(scratch)
    stage = os.path.join(scratch, 'stage')
    os.makedirs(stage)
    os.symlink(os.path.dirname(sentinel), os.path.join(stage, 'link-out'))
    failed, result = run(dict(path=stage, allowed_roots=[scratch]))
    assert not failed and result['removed_files'] == 1
    assert os.listdir(stage) == [] and open(sentinel).read() == 'keep'


@pytest.mark.root
def test_immutable_file_fails_with_path_and_counts(scratch):
    if os.geteuid() != 0 or not shutil.which('chattr'):
        pytest.skip('chattr +i needs root and chattr')
    stage = os.path.join(scratch, 'stage')
    os.makedirs(os.path.join(stage, 'b'))
    for name in ('a', 'b/locked', 'c'):
        with open(os.path.join(stage, name), 'w') as f:
            f.write('1234')
    locked = os.path.join(stage, 'b', 'locked')
    if subprocess.run(['chattr', '+i', locked], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False).returncode:
        pytest.skip('chattr +i does not work on this filesystem')
    try:
        failed, result = run(dict(path=stage))
    finally:
        subprocess.run(['chattr', '-i', locked], check=True)
    assert failed and result['failed_path'] == locked
    assert locked in result['msg'] and 'Operation not permitted' in result['msg']
    assert (result['removed_files'], result['removed_dirs'], result['removed_bytes']) == (1, 0, 4)
    assert result['changed'] and sorted(os.listdir(stage)) == ['b', 'c']


@pytest.mark.root
def test_mount_inside_is_kept_and_warned_about(scratch):
    """In its own process, as Ansible runs it, so the warning reaches the result."""
    if os.geteuid() != 0:
        pytest.skip('mounting a tmpfs needs root')
    stage = os.path.join(scratch, 'stage')
    mnt = os.path.join(stage, 'm')
    os.makedirs(mnt)
    open(os.path.join(stage, 'gone'), 'w').close()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode:
        pytest.skip('cannot mount a tmpfs here: %s' % proc.stderr.strip())
    try:
        with open(os.path.join(mnt, 'kept'), 'w') as f:
            f.write('keep')
        dry = run_module_process('staging_dir', dict(path=stage, state='absent'), check=True)
        result = run_module_process('staging_dir', dict(path=stage, state='absent'), diff=True)
        assert not result['failed'] and result['changed']
        assert result['skipped_mounts'] == [mnt] == dry['skipped_mounts']
        assert (result['removed_files'], result['removed_dirs']) == (dry['removed_files'], dry['removed_dirs']) == (1, 0)
        # ansible-core 2.19 returns warnings as structured events, older ones as strings.
        assert mnt in json.dumps(result['warnings'])
        assert os.listdir(mnt) == ['kept'] and os.listdir(stage) == ['m']
        assert result['diff']['after']['entries'] == ['m']
    finally:
        subprocess.run(['umount', mnt], check=True)


def test_owner_resolves_in_the_alation_shell_with_its_primary_group(tmp_path):
    shell = tmp_path / 'shell'
    (shell / 'etc').mkdir(parents=True)
    (shell / 'etc' / 'passwd').write_text('alationadmin:x:4502:4503::/home/alationadmin:/bin/bash\n')
    (shell / 'etc' / 'group').write_text('alationadmin:x:4503:\n')
    stage = shell / 'data2' / 'tmp'
    failed, result = run({'path': str(stage), 'owner': 'alationadmin', 'chroot': str(shell)})
    assert not failed, result
    st = os.stat(str(stage))
    assert (st.st_uid, st.st_gid) == (4502, 4503)
    # The host has no alationadmin: without the shell the same name is refused, nothing made.
    failed, result = run({'path': str(tmp_path / 'other' / 'tmp'), 'owner': 'alationadmin'})
    assert failed and "owner 'alationadmin' is not a user on this host" in result['msg']
    assert not (tmp_path / 'other').exists()


# -- extra_paths: the site files staged by the same call (issue 19) -------------------------------------------

def extra_sources(tmp_path):
    """An Alation shell with a site file and a site dir (with a link inside)."""
    shell = tmp_path / 'shell'
    (shell / 'etc' / 'site').mkdir(parents=True)
    conf = shell / 'etc' / 'site.conf'
    conf.write_text('setting = 1\n')
    os.chmod(str(conf), 0o640)
    (shell / 'etc' / 'site' / 'a.yaml').write_text('a: 1\n')
    os.chmod(str(shell / 'etc' / 'site' / 'a.yaml'), 0o600)
    (shell / 'etc' / 'site' / 'passwd').symlink_to('/etc/passwd')
    return shell, [dict(host_path=str(conf), shell_path='/etc/site.conf', path='/etc/site.conf'),
                   dict(host_path=str(shell / 'etc' / 'site'), shell_path='/etc/site', path='/etc/site')]


def test_extra_paths_are_copied_after_emptying_modes_kept(tmp_path):
    shell, extra = extra_sources(tmp_path)
    staging = tmp_path / 'data2' / 'tmp'
    (staging / 'extra_paths' / 'etc').mkdir(parents=True)
    (staging / 'extra_paths' / 'etc' / 'stale.conf').write_text('from the run before')
    failed, result = run_module(main, dict(path=str(staging), extra_paths=extra))
    assert not failed, result
    base = staging / 'extra_paths' / 'etc'
    assert sorted(os.listdir(str(base))) == ['site', 'site.conf']
    assert (base / 'site.conf').read_text() == 'setting = 1\n' and stat.S_IMODE(os.lstat(str(base / 'site.conf')).st_mode) == 0o640
    assert stat.S_IMODE(os.lstat(str(base / 'site' / 'a.yaml')).st_mode) == 0o600
    # A link inside is staged as the link, never followed.
    assert os.readlink(str(base / 'site' / 'passwd')) == '/etc/passwd'
    assert [(e['shell_path'], e['dest'], e['files']) for e in result['extra_paths_staged']] == [
        ('/etc/site.conf', str(base / 'site.conf'), 1), ('/etc/site', str(base / 'site'), 2)]
    assert result['changed'] and result['removed_files'] == 1


def test_extra_paths_in_check_mode_copy_nothing(tmp_path):
    shell, extra = extra_sources(tmp_path)
    staging = tmp_path / 'data2' / 'tmp'
    staging.mkdir(parents=True)
    failed, result = run_module(main, dict(path=str(staging), extra_paths=extra, _ansible_check_mode=True))
    assert not failed and result['changed'] and os.listdir(str(staging)) == []
    assert [e['files'] for e in result['extra_paths_staged']] == [1, 2]


@pytest.mark.parametrize('entry, words', [
    (dict(host_path='/nonexistent/site.conf', shell_path='/etc/site.conf'), 'extra path /nonexistent/site.conf'),
    (dict(host_path='relative', shell_path='/etc/x'), 'needs an absolute host_path and shell_path'),
    (dict(shell_path='/etc/x'), 'needs an absolute host_path and shell_path'),
])
def test_extra_paths_bad_entries_are_named(tmp_path, entry, words):
    staging = tmp_path / 'data2' / 'tmp'
    failed, result = run_module(main, dict(path=str(staging), extra_paths=[entry]))
    assert failed and words in result['msg']


def test_extra_paths_need_state_empty(tmp_path):
    shell, extra = extra_sources(tmp_path)
    failed, result = run_module(main, dict(path=str(tmp_path / 'data2' / 'tmp'), state='present', extra_paths=extra))
    assert failed and 'give state=empty' in result['msg']
