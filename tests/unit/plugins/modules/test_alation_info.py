# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alation_info against a fake Alation shell tree and the alation_conf double (a real process)."""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from modrun import run_module as run_module_process
from .utils import run_module

from ansible_collections.alation.backup.plugins.module_utils._runner import current_user
from ansible_collections.alation.backup.plugins.modules import alation_info

DOUBLE = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'support', 'alation_conf_double')
VERSION = '''\
ALATION_MAJOR_VERSION = 5
ALATION_MINOR_VERSION = 17
ALATION_PATCH_VERSION = 0
ALATION_BUILD_VERSION = 116556
'''
STORE = {
    'alation.backup.data_temp_dir': '/data2/tmp',
    'alation.backup.scheduled_minute': '30',
    'alation.backup.scheduled_hour': '1',
    'alation.backup.scheduled_day': '*',
    'alation.cluster.replication_mode': 'standalone',
}
# Users the run_as test may use: the pg test user, or one the ansible-test target makes.
OTHER_USERS = ('alation_pg_test', 'alation_conf_test')


class FakeShell:
    """A plain directory laid out like the Alation shell, with the double as alation_conf."""

    def __init__(self, root):
        self.root = root
        self.conf = os.path.join(root, 'usr', 'local', 'bin', 'alation_conf')
        os.makedirs(os.path.dirname(self.conf))
        shutil.copy(DOUBLE, self.conf)
        os.chmod(self.conf, 0o755)
        self.write_store(STORE)
        self.version_file = os.path.join(root, 'opt', 'alation', 'django', 'main', 'alation_version.py')
        os.makedirs(os.path.dirname(self.version_file))
        self.write_version(VERSION)

    def write_store(self, data):
        # The double's store: the lines alation_conf prints.
        with open(self.conf + '.store', 'w') as f:
            f.writelines('%s = %s\n' % item for item in data.items())
        os.chmod(self.conf + '.store', 0o644)

    def write_version(self, text):
        with open(self.version_file, 'w') as f:
            f.write(text)

    def args(self, **kw):
        args = dict(root=self.root, alation_conf_command=self.conf, run_as=current_user())
        args.update(kw)
        return args


def snapshot(root):
    """Every path under root with its mtime and size."""
    found = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            found[os.path.join(top, name)] = (st.st_mtime_ns, st.st_size)
    return found


@pytest.fixture
def shell():
    # Not tmp_path: that is 0700, and the run_as test needs another user to get in.
    d = tempfile.mkdtemp(prefix='alation-info-test-')
    os.chmod(d, 0o755)
    yield FakeShell(os.path.join(d, 'alation'))
    shutil.rmtree(d)


def test_facts(shell):
    with open(os.path.join(shell.root, '.disk2_cache'), 'w') as f:
        f.write('/dev/vdc1\n')
    failed, result = run_module(alation_info.main, shell.args())
    assert not failed, result
    assert result['changed'] is False
    assert result['root'] == shell.root
    assert result['version'] == '5.17.0.116556'
    assert result['version_tag'] == '5-17-0-116556'
    assert result['conf'] == {k: v for k, v in STORE.items() if k.startswith('alation.backup.')}
    assert result['conf_errors'] == {}
    assert result['disk_caches'] == {'disk2': '/dev/vdc1'}
    shell_paths = {
        'staging_dir': '/data2/tmp', 'pg_staging_dir': '/data2/backup/pgbackup', 'backup_storage_dir': '/data2/backup',
        'pgdata': '/data1/pgsql/data', 'lock': '/data2/backup/.alation_backup.lock',
        'version_file': '/opt/alation/django/main/alation_version.py'}
    assert result['paths'] == dict((k, {'shell_path': v, 'host_path': shell.root + v, 'path': v})
                                   for k, v in shell_paths.items())
    assert result['paths']['version_file']['host_path'] == shell.version_file
    assert result['chroot'] == shell.root and result['extra_paths'] == []
    # The absolute host path ran outside the chroot, and as the current user without su.
    assert result['executed_commands'][0] == '%s alation.backup.data_temp_dir' % shell.conf
    assert len(result['executed_commands']) == 4


def test_check_mode_same_facts_and_nothing_changed(shell):
    before = snapshot(shell.root)
    normal = run_module_process('alation_info', shell.args())
    check = run_module_process('alation_info', shell.args(), check=True)
    assert not normal['failed'] and not check['failed'], (normal, check)
    for result in (normal, check):
        result.pop('invocation', None)
    assert check == normal
    assert check['changed'] is False
    assert snapshot(shell.root) == before


def test_paths_follow_data_temp_dir(shell):
    shell.write_store(dict(STORE, **{'alation.backup.data_temp_dir': '/data3/stage'}))
    failed, result = run_module(alation_info.main, shell.args())
    assert not failed, result
    assert result['paths']['staging_dir'] == {'shell_path': '/data3/stage', 'host_path': shell.root + '/data3/stage',
                                              'path': '/data3/stage'}


def test_paths_given_are_mapped_and_conf_is_not_asked(shell):
    args = dict(shell.args(), staging_dir='/data4/st', pgdata='/pg/data', use_chroot=False, alation_conf_keys=[],
                paths={'scratch': '/data2/drill'}, extra_paths=['/etc/site.conf'])
    failed, result = run_module(alation_info.main, args)
    assert not failed, result
    assert result['executed_commands'] == [] and result['chroot'] == ''
    assert result['paths']['staging_dir']['path'] == shell.root + '/data4/st'
    assert result['paths']['scratch'] == {'shell_path': '/data2/drill', 'host_path': shell.root + '/data2/drill',
                                          'path': shell.root + '/data2/drill'}
    assert result['extra_paths'] == [{'shell_path': '/etc/site.conf', 'host_path': shell.root + '/etc/site.conf',
                                      'path': shell.root + '/etc/site.conf'}]


@pytest.mark.parametrize('key, value, text', [
    ('pgdata', 'data1/pgsql', 'pgdata: shell path'),
    ('staging_dir', '/data2/../etc', 'staging_dir: shell path'),
    ('extra_paths', ['rel/file'], 'extra: shell path'),
])
def test_bad_paths_are_named(shell, key, value, text):
    failed, result = run_module(alation_info.main, dict(shell.args(), **{key: value}))
    assert failed and text in result['msg'], result


def test_plain_host_root(shell):
    # root / : shell paths are host paths. The version file is looked up at the real
    # /opt/alation/..., absent here: a clear error, with the facts read so far.
    failed, result = run_module(alation_info.main, dict(shell.args(), root='/'))
    assert failed
    assert result['msg'].startswith('version file /opt/alation/django/main/alation_version.py not found')
    assert result['paths']['staging_dir'] == {'shell_path': '/data2/tmp', 'host_path': '/data2/tmp', 'path': '/data2/tmp'}
    assert result['conf']['alation.backup.scheduled_hour'] == '1'


@pytest.mark.parametrize('stored, expected', [
    ('value with spaces', 'value with spaces'),
    ('a=b = c', 'a=b = c'),
    ('', ''),
])
def test_odd_values(shell, stored, expected):
    shell.write_store(dict(STORE, **{'alation.backup.scheduled_day': stored}))
    failed, result = run_module(alation_info.main, shell.args())
    assert not failed, result
    assert result['conf']['alation.backup.scheduled_day'] == expected
    assert result['conf_errors'] == {}


def test_missing_key_is_reported_not_fatal(shell):
    store = dict(STORE)
    del store['alation.backup.scheduled_minute']
    shell.write_store(store)
    result = run_module_process('alation_info', shell.args())
    assert not result['failed'], result
    assert result['conf']['alation.backup.scheduled_minute'] is None
    assert list(result['conf_errors']) == ['alation.backup.scheduled_minute']
    error = result['conf_errors']['alation.backup.scheduled_minute']
    assert error.startswith('not read: %s alation.backup.scheduled_minute exited with code 1: ' % shell.conf)
    assert error.endswith('key not found: alation.backup.scheduled_minute')
    # ansible-core 2.19 returns each warning as a structured event.
    warnings = [w['event']['msg'] if isinstance(w, dict) else w for w in result['warnings']]
    assert warnings == ['alation_conf key alation.backup.scheduled_minute: ' + error]
    assert result['version_tag'] == '5-17-0-116556'


def test_missing_data_temp_dir_means_default_staging_dir(shell):
    store = dict(STORE)
    del store['alation.backup.data_temp_dir']
    shell.write_store(store)
    failed, result = run_module(alation_info.main, shell.args(alation_conf_keys=['alation.backup.scheduled_hour']))
    assert not failed, result
    # data_temp_dir is read even when not asked: it locates the staging dir.
    assert result['conf'] == {'alation.backup.data_temp_dir': None, 'alation.backup.scheduled_hour': '1'}
    assert result['paths']['staging_dir']['shell_path'] == '/data2/tmp'


def test_required_missing_key_fails(shell):
    store = dict(STORE)
    del store['alation.backup.scheduled_minute']
    shell.write_store(store)
    failed, result = run_module(alation_info.main, shell.args(
        required=['alation.backup.scheduled_minute', 'alation.backup.scheduled_hour']))
    assert failed
    assert result['msg'].startswith('required alation_conf keys not set: alation.backup.scheduled_minute. ')
    assert 'alation_conf <key> -s <value>' in result['msg']
    assert result['conf']['alation.backup.scheduled_hour'] == '1'
    assert 'alation.backup.scheduled_minute' in result['conf_errors']


def test_required_key_not_in_keys_is_read(shell):
    failed, result = run_module(alation_info.main, shell.args(required=['alation.cluster.replication_mode']))
    assert not failed, result
    assert result['conf']['alation.cluster.replication_mode'] == 'standalone'


def test_required_empty_value_fails(shell):
    shell.write_store(dict(STORE, **{'alation.backup.scheduled_day': ''}))
    failed, result = run_module(alation_info.main, shell.args(required=['alation.backup.scheduled_day']))
    assert failed
    assert 'not set: alation.backup.scheduled_day.' in result['msg']


def test_missing_host_command_reported_not_fatal(shell):
    missing = os.path.join(shell.root, 'no', 'alation_conf')
    failed, result = run_module(alation_info.main, shell.args(alation_conf_command=missing))
    assert not failed, result
    assert set(result['conf'].values()) == {None}
    assert set(result['conf_errors']) == set(result['conf'])
    assert result['conf_errors']['alation.backup.data_temp_dir'].startswith(
        "cannot run alation_conf command '%s': not found" % missing)
    assert result['executed_commands'] == []  # looked for, not run
    assert result['version_tag'] == '5-17-0-116556'


def test_missing_command_on_plain_host(shell):
    failed, result = run_module(alation_info.main, dict(shell.args(), root='/', alation_conf_command='no_such_alation_conf'))
    assert failed  # by the absent version file, after reading what it could
    assert result['conf_errors']['alation.backup.data_temp_dir'].startswith(
        "cannot run alation_conf command 'no_such_alation_conf': not found")


def test_command_inside_chroot_argv(shell):
    """The default: alation_conf inside the shell through su -, as Alation's scripts do.

    A plain tree has no /bin/su, so chroot exits 127: reported once per key, not fatal.
    """
    failed, result = run_module(alation_info.main, shell.args(alation_conf_command='alation_conf', run_as='alationadmin'))
    assert not failed, result
    assert result['executed_commands'] == [
        "chroot %s /bin/su - alationadmin -c 'env LC_ALL=C alation_conf alation.backup.data_temp_dir'" % shell.root]
    error = result['conf_errors']['alation.backup.scheduled_day']
    assert error.startswith("cannot run alation_conf command 'alation_conf' (exit code 127: chroot: failed to run command")
    assert set(result['conf_errors']) == set(result['conf'])
    assert result['version_tag'] == '5-17-0-116556'


def test_missing_version_file(shell):
    os.unlink(shell.version_file)
    failed, result = run_module(alation_info.main, shell.args())
    assert failed
    assert result['msg'] == ('version file %s not found: root must be the Alation shell (default /opt/alation/alation, '
                             'or / on a plain host) with Alation installed' % shell.version_file)
    assert result['changed'] is False


def test_malformed_version_file(shell):
    shell.write_version(VERSION.replace('= 17', '= MINOR'))
    failed, result = run_module(alation_info.main, shell.args())
    assert failed
    assert result['msg'].startswith("%s line 2 is malformed: 'ALATION_MINOR_VERSION = MINOR'" % shell.version_file)


def test_version_constant_missing(shell):
    shell.write_version(VERSION.replace('ALATION_PATCH_VERSION = 0\n', ''))
    failed, result = run_module(alation_info.main, shell.args())
    assert failed
    assert result['msg'].startswith('%s does not set ALATION_PATCH_VERSION:' % shell.version_file)


def test_relative_data_temp_dir_fails(shell):
    shell.write_store(dict(STORE, **{'alation.backup.data_temp_dir': 'data2/tmp'}))
    failed, result = run_module(alation_info.main, shell.args())
    assert failed
    assert result['msg'].startswith("alation.backup.data_temp_dir is 'data2/tmp': shell path 'data2/tmp' is not absolute")


def test_root_not_a_directory(shell):
    failed, result = run_module(alation_info.main, shell.args(root=shell.root + '/nope'))
    assert failed
    assert result['msg'].startswith('root %s/nope is not a directory' % shell.root)


def _other_user():
    for name in OTHER_USERS:
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            pass
    return None


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason='running as another user needs root')
@pytest.mark.skipif(_other_user() is None, reason='no test user (%s) on this host' % ', '.join(OTHER_USERS))
def test_run_as_other_user(shell):
    """su - drops the environment; the double still finds its store beside itself."""
    user = _other_user()
    failed, result = run_module(alation_info.main, shell.args(run_as=user))
    assert not failed, result
    assert result['conf_errors'] == {}
    assert result['conf']['alation.backup.scheduled_minute'] == '30'
    assert result['executed_commands'][0] == "/bin/su - %s -c 'env LC_ALL=C %s alation.backup.data_temp_dir'" % (user, shell.conf)


def conf(shell, *args):
    """Run the double as alation_conf; return (rc, stdout, stderr)."""
    proc = subprocess.run([shell.conf] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env={}, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_double_behaves_as_documented(shell):
    """alation_conf <key> prints "key = value"; <key> -s <value> sets it; the store is beside it."""
    assert conf(shell, 'alation.cluster.replication_mode') == (0, 'alation.cluster.replication_mode = standalone\n', '')
    assert conf(shell, 'alation.backup.chef_timeout') == (1, '', 'key not found: alation.backup.chef_timeout\n')
    assert conf(shell, 'alation.backup.chef_timeout', '-s', '21600') == (0, '', '')
    assert conf(shell, 'alation.backup.chef_timeout') == (0, 'alation.backup.chef_timeout = 21600\n', '')
    assert conf(shell, 'alation.backup.scheduled_day', '-s', 'a = b c') == (0, '', '')
    assert conf(shell, 'alation.backup.scheduled_day') == (0, 'alation.backup.scheduled_day = a = b c\n', '')
    assert conf(shell, 'alation.backup.scheduled_day', '-s', '') == (0, '', '')
    assert conf(shell, 'alation.backup.scheduled_day') == (0, 'alation.backup.scheduled_day = \n', '')
    # A key is not a pattern, and a longer key is another key.
    assert conf(shell, 'alation.backup.*')[0] == 1
    assert conf(shell, 'alation.backup')[0] == 1
    with open(shell.conf + '.store') as f:
        assert f.read().count('alation.backup.scheduled_day = ') == 1


@pytest.mark.parametrize('args', [(), ('a', 'b'), ('a', '-x', 'b'), ('-s', 'a'), ('a', '-s', 'b', 'c'), ('',)])
def test_double_usage(shell, args):
    rc, out, err = conf(shell, *args)
    assert (rc, out) == (2, '')
    assert err.startswith('usage: alation_conf <key>')


def test_users_resolve_in_the_shell_and_a_missing_one_is_named(shell):
    os.makedirs(os.path.join(shell.root, 'etc'))
    with open(os.path.join(shell.root, 'etc', 'passwd'), 'w') as f:
        f.write('alationadmin:x:4502:4503::/home/alationadmin:/bin/sh\n')
    args = dict(shell.args(), users=['alationadmin', '4502', ''])
    failed, result = run_module(alation_info.main, args)
    assert not failed, result
    assert result['users'] == {'alationadmin': dict(uid=4502, gid=4503, name='alationadmin'),
                               '4502': dict(uid=4502, gid=4503, name='alationadmin')}
    failed, result = run_module(alation_info.main, dict(shell.args(), users=['alation']))
    assert failed
    assert result['msg'] == ("user 'alation' is not a user in %s/etc/passwd (the Alation shell's users): create the "
                             "user first or give a numeric uid" % shell.root)


def test_a_command_that_cannot_run_refuses_the_backup_when_the_staging_dir_depends_on_it(shell):
    args = shell.args(alation_conf_command='/nonexistent/alation_cnof', check_paths=True)
    failed, result = run_module(alation_info.main, args)
    assert failed and result['msg'].startswith('refusing the run, nothing was touched: the staging dir comes from '
                                               'alation_conf key alation.backup.data_temp_dir, and cannot run')
    assert 'alation_backup_alation_conf_command' in result['msg'] and 'alation_backup_staging_dir' in result['msg']
    # Given the staging dir itself, the command is not needed for it: a warning at most.
    failed, result = run_module(alation_info.main, dict(args, staging_dir='/data2/tmp'))
    assert 'the staging dir comes from' not in result.get('msg', '')
