# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alation_info through a real chroot, the way it runs on an Alation host.

The Alation shell is stood in for by a tree whose /usr and /etc are read-only
bind mounts of the host's, with the alation_conf double mounted over
/usr/local/bin. The module then runs its default command line,
``chroot <root> /bin/su - <user> -c 'alation_conf <key>'``, unchanged. The
mounts are made in a private mount namespace (unshare) that the module runs
in, so they vanish with it and never show on the host: removing the tree
afterwards cannot reach the host's /usr.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from modrun import _argv_env, result_of

DOUBLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'support', 'alation_conf_double')
VERSION = '''\
ALATION_MAJOR_VERSION = 5
ALATION_MINOR_VERSION = 17
ALATION_PATCH_VERSION = 0
ALATION_BUILD_VERSION = 116556
'''
USER = 'alation_pg_test'
# Mounts the shell needs, made inside the namespace; $1 is the root, $2 the double's dir.
# All read-only (device nodes still work), so nothing through them can be removed.
MOUNTS = '''
set -e
mount --bind -o ro /usr "$1/usr"
mount --bind -o ro /etc "$1/etc"
mount --bind -o ro /dev "$1/dev"
mount --bind -o ro "$2" "$1/usr/local/bin"
shift 2
exec "$@"
'''

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason='chroot and mounts need root'),
    pytest.mark.skipif(shutil.which('unshare') is None, reason='unshare (util-linux) not installed'),
]


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _can_unshare_mounts():
    probe = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'mount', '--make-rprivate', '/'],
                           capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture
def alation_shell():
    """(root, bin_dir): a tree to chroot into, and the dir holding the double and its store."""
    if not _can_unshare_mounts():
        pytest.skip('cannot make a private mount namespace here (unshare --mount failed)')
    scratch = tempfile.mkdtemp(prefix='alation-info-chroot-')
    os.chmod(scratch, 0o755)
    root = os.path.join(scratch, 'alation')
    for d in ('usr', 'etc', 'dev', 'opt/alation/django/main', 'data2/tmp'):
        os.makedirs(os.path.join(root, d))
    # Debian's merged /usr: the top-level dirs are links into it.
    for name in ('bin', 'sbin', 'lib', 'lib64'):
        if os.path.islink('/' + name):
            os.symlink(os.readlink('/' + name), os.path.join(root, name))
    with open(os.path.join(root, 'opt/alation/django/main/alation_version.py'), 'w') as f:
        f.write(VERSION)
    bin_dir = os.path.join(scratch, 'bin')
    os.mkdir(bin_dir)
    os.chmod(bin_dir, 0o755)
    shutil.copy(DOUBLE, os.path.join(bin_dir, 'alation_conf'))
    os.chmod(os.path.join(bin_dir, 'alation_conf'), 0o755)
    with open(os.path.join(bin_dir, 'alation_conf.store'), 'w') as f:
        f.write('alation.backup.data_temp_dir = /data2/tmp\n'
                'alation.backup.scheduled_hour = 1\n'
                'alation.backup.scheduled_day = mon = 1, tue\n')
    os.chmod(os.path.join(bin_dir, 'alation_conf.store'), 0o644)
    yield root, bin_dir
    with open('/proc/self/mountinfo') as f:
        leaked = [line for line in f if scratch in line]
    # Never remove a tree with the host's dirs mounted in it.
    assert not leaked, 'mounts leaked into the host namespace, %s left in place: %s' % (scratch, leaked)
    shutil.rmtree(scratch)


def run_in_shell(root, bin_dir, args, check=False):
    argv, env, path = _argv_env('alation_info', args, check=check)
    argv = ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', MOUNTS, 'sh', root, bin_dir] + argv
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return result_of(proc, path, timeout=120)


@pytest.mark.skipif(not _user_exists(USER), reason='test user %s not on this host' % USER)
@pytest.mark.parametrize('check', [False, True])
def test_reads_keys_through_chroot_and_su(alation_shell, check):
    root, bin_dir = alation_shell
    result = run_in_shell(root, bin_dir, dict(root=root, run_as=USER), check=check)
    assert not result['failed'], result
    assert result['changed'] is False
    # Alation's admin scripts' own form, unchanged.
    assert result['executed_commands'][0] == (
        "chroot %s /bin/su - %s -c 'alation_conf alation.backup.data_temp_dir'" % (root, USER))
    assert result['conf'] == {
        'alation.backup.data_temp_dir': '/data2/tmp',
        'alation.backup.scheduled_minute': None,
        'alation.backup.scheduled_hour': '1',
        'alation.backup.scheduled_day': 'mon = 1, tue',
    }
    assert list(result['conf_errors']) == ['alation.backup.scheduled_minute']
    assert 'key not found: alation.backup.scheduled_minute' in result['conf_errors']['alation.backup.scheduled_minute']
    assert result['version_tag'] == '5-17-0-116556'
    assert result['paths']['staging_dir'] == {'shell_path': '/data2/tmp', 'host_path': root + '/data2/tmp'}


@pytest.mark.skipif(not _user_exists(USER), reason='test user %s not on this host' % USER)
def test_command_missing_in_chroot_is_reported(alation_shell):
    root, bin_dir = alation_shell
    os.rename(os.path.join(bin_dir, 'alation_conf'), os.path.join(bin_dir, 'not_alation_conf'))
    result = run_in_shell(root, bin_dir, dict(root=root, run_as=USER, required=[]))
    assert not result['failed'], result
    assert set(result['conf'].values()) == {None}
    assert result['conf_errors']['alation.backup.data_temp_dir'].startswith(
        "cannot run alation_conf command 'alation_conf' (exit code 127")
    # The shell said it could not find it; one try, not one per key.
    assert len(result['executed_commands']) == 1


def test_as_root_inside_chroot(alation_shell):
    """run_as the current user: chroot without su, the module's PATH inside the shell."""
    root, bin_dir = alation_shell
    result = run_in_shell(root, bin_dir, dict(root=root, run_as='root'))
    assert not result['failed'], result
    assert result['executed_commands'][0] == 'chroot %s alation_conf alation.backup.data_temp_dir' % root
    assert result['conf']['alation.backup.scheduled_day'] == 'mon = 1, tue'
