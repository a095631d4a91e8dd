# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""alation_info inside a real Alation shell, the way it runs on an Alation host.

The shell is tests/support/alation_shell.py's Debian 12 chroot: alationadmin
exists only in its own /etc/passwd, and alation_conf (the double) sits on its
login PATH. The module runs its default command line,
``chroot <root> /bin/su - alationadmin -c 'env LC_ALL=C alation_conf <key>'``,
unchanged.
"""

import os

import pytest

from modrun import run_module

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason='chroot needs root'),
]


def write_store(host, text):
    with open(host.path('/usr/local/bin/alation_conf.store'), 'w') as f:
        f.write(text)


@pytest.mark.parametrize('check', [False, True])
def test_reads_keys_through_chroot_and_su_as_the_shells_own_user(alation_host, check):
    host = alation_host
    write_store(host, 'alation.backup.data_temp_dir = /data2/tmp\nalation.backup.scheduled_hour = 1\n'
                      'alation.backup.scheduled_day = mon = 1, tue\n')
    result = run_module('alation_info', dict(root=host.root, users=['alationadmin', 'alation']), check=check)
    assert not result['failed'], result
    assert result['changed'] is False
    # Alation's admin scripts' own form, with the C locale the module's parsing needs.
    assert result['executed_commands'][0] == (
        "chroot %s /bin/su - alationadmin -c 'env LC_ALL=C alation_conf alation.backup.data_temp_dir'" % host.root)
    assert result['conf'] == {
        'alation.backup.data_temp_dir': '/data2/tmp',
        'alation.backup.scheduled_minute': None,
        'alation.backup.scheduled_hour': '1',
        'alation.backup.scheduled_day': 'mon = 1, tue',
    }
    assert list(result['conf_errors']) == ['alation.backup.scheduled_minute']
    assert 'key not found: alation.backup.scheduled_minute' in result['conf_errors']['alation.backup.scheduled_minute']
    assert result['version_tag'] == '5-17-0-116556'
    assert result['paths']['staging_dir'] == {'shell_path': '/data2/tmp', 'host_path': host.root + '/data2/tmp',
                                              'path': '/data2/tmp'}
    assert result['users'] == {'alationadmin': dict(uid=4502, gid=4502, name='alationadmin'),
                               'alation': dict(uid=4501, gid=4501, name='alation')}


def test_a_staging_dir_moved_by_alation_conf_moves_the_paths(alation_host):
    host = alation_host
    write_store(host, 'alation.backup.data_temp_dir = /data2/stage\n')
    result = run_module('alation_info', dict(root=host.root))
    assert not result['failed'], result
    assert result['paths']['staging_dir']['host_path'] == host.path('/data2/stage')


def test_command_missing_in_the_shell_is_reported_once(alation_host):
    host = alation_host
    os.rename(host.path('/usr/local/bin/alation_conf'), host.path('/usr/local/bin/not_alation_conf'))
    result = run_module('alation_info', dict(root=host.root, required=[]))
    assert not result['failed'], result
    assert set(result['conf'].values()) == {None}
    assert result['conf_errors']['alation.backup.data_temp_dir'].startswith(
        "cannot run alation_conf command 'alation_conf' (exit code 127")
    # The shell said it could not find it; one try, not one per key.
    assert len(result['executed_commands']) == 1


def test_as_root_inside_the_shell(alation_host):
    """run_as the current user: chroot without su, the module's PATH inside the shell."""
    host = alation_host
    write_store(host, 'alation.backup.scheduled_day = mon = 1, tue\n')
    result = run_module('alation_info', dict(root=host.root, run_as='root'))
    assert not result['failed'], result
    assert result['executed_commands'][0] == 'chroot %s alation_conf alation.backup.data_temp_dir' % host.root
    assert result['conf']['alation.backup.scheduled_day'] == 'mon = 1, tue'
