# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_runner: how commands are wrapped for the Alation shell and run (for real)."""

import subprocess
import tempfile

import pytest

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._runner import (
    CommandError,
    Runner,
    current_user,
    open_pipe,
    wrap_argv,
)

from ..modules.utils import set_module_args

ME = current_user()


@pytest.mark.parametrize('kwargs, expected', [
    ({}, ['pg_probackup', 'show']),
    ({'chroot': '/'}, ['pg_probackup', 'show']),
    ({'run_as': ME}, ['pg_probackup', 'show']),
    ({'run_as': 'alation'}, ['runuser', '-u', 'alation', '--', 'pg_probackup', 'show']),
    ({'chroot': '/opt/alation/alation'}, ['chroot', '/opt/alation/alation', 'pg_probackup', 'show']),
    ({'chroot': '/opt/alation/alation', 'run_as': 'alation'},
     ['chroot', '--userspec=alation', '/opt/alation/alation', 'pg_probackup', 'show']),
    ({'run_as': 'alation', 'login': True}, ['/bin/su', '-', 'alation', '-c', 'env LC_ALL=C pg_probackup show']),
    ({'chroot': '/opt/alation/alation', 'run_as': 'alation', 'login': True},
     ['chroot', '/opt/alation/alation', '/bin/su', '-', 'alation', '-c', 'env LC_ALL=C pg_probackup show']),
])
def test_wrap_argv(kwargs, expected):
    assert wrap_argv(['pg_probackup', 'show'], **kwargs) == expected


def test_login_quotes_each_argument_as_one_word():
    argv = wrap_argv(['alation_conf', "a b; rm -rf /"], run_as='alationadmin', login=True)
    assert argv[-1] == "env LC_ALL=C alation_conf 'a b; rm -rf /'"


@pytest.mark.parametrize('chroot, path, host', [
    (None, '/data2/tmp', '/data2/tmp'),
    ('/', '/data2/tmp', '/data2/tmp'),
    ('/opt/alation/alation', '/data2/tmp', '/opt/alation/alation/data2/tmp'),
])
def test_host_path(chroot, path, host):
    assert Runner(None, chroot=chroot).host_path(path) == host


@pytest.fixture
def module():
    with set_module_args({}):
        yield AnsibleModule(argument_spec={})


def test_run_records_the_command_and_passes_env_outside_argv(module):
    runner = Runner(module)
    result = runner.run(['sh', '-c', 'printf %s "$SECRET_FOR_TEST"'], env={'SECRET_FOR_TEST': 's3cret'})
    assert result['rc'] == 0 and result['stdout'] == 's3cret'
    assert runner.executed_commands == ['sh -c \'printf %s "$SECRET_FOR_TEST"\'']
    assert 's3cret' not in runner.executed_commands[0]


def test_check_rc_raises_with_the_result(module):
    with pytest.raises(CommandError) as e:
        Runner(module).run(['sh', '-c', 'echo oops >&2; exit 3'], check_rc=True)
    assert e.value.result['rc'] == 3 and 'oops' in e.value.result['stderr']


def test_open_pipe_streams_through_a_program():
    with tempfile.TemporaryFile() as err:
        proc = open_pipe(['tr', 'a-z', 'A-Z'], err, pipe_size=1 << 20)
        out, dummy = proc.communicate(b'hello')
    assert proc.returncode == 0 and out == b'HELLO'


@pytest.fixture
def german(monkeypatch):
    """A host set to German: LANGUAGE alone makes GNU gettext translate under C.UTF-8."""
    for name, value in (('LANG', 'C.UTF-8'), ('LC_ALL', 'C.UTF-8'), ('LANGUAGE', 'de')):
        monkeypatch.setenv(name, value)
    plain = subprocess.run(['ls', '/nonexistent-alation-test'], stderr=subprocess.PIPE, check=False).stderr.decode('utf-8', 'replace')
    if 'No such file' in plain:
        pytest.skip('no German translation of coreutils on this host (/usr/share/locale/de): cannot show the difference')
    return plain


def test_commands_run_in_english_whatever_the_hosts_language(german, module):
    # The modules parse English stderr ("No such file or directory", pg_probackup's ERROR lines).
    assert 'Datei oder Verzeichnis nicht gefunden' in german
    result = Runner(module).run(['ls', '/nonexistent-alation-test'])
    assert 'No such file or directory' in result['stderr'], result['stderr']


def test_streaming_programs_run_in_english_too(german):
    with tempfile.TemporaryFile() as err:
        proc = open_pipe(['ls', '/nonexistent-alation-test'], err)
        proc.communicate(b'')
        err.seek(0)
        assert 'No such file or directory' in err.read().decode()


def test_preview_is_the_wrapped_command_line_marked_not_run():
    r = Runner(None, chroot='/opt/alation/alation')
    assert r.preview(['pg_ctl', '-o', "-c 'a=b c'", 'start']) == \
        """chroot /opt/alation/alation pg_ctl -o '-c '"'"'a=b c'"'"'' start  (check mode: not run)"""
    assert r.executed_commands == []
