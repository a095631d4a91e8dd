# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_runner.start and program_env: the one place a program is started outside run_command (gpg, ssh, compressors)."""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _gpg, _offsite, _runner


def test_program_env_is_ours_in_the_c_locale_with_the_extras(monkeypatch):
    monkeypatch.setenv('LANGUAGE', 'de')
    monkeypatch.setenv('LC_ALL', 'de_DE.UTF-8')
    monkeypatch.setenv('ALATION_TEST_KEPT', 'yes')
    env = _runner.program_env({'SSH_AUTH_SOCK': '/run/agent.sock'})
    assert 'LANGUAGE' not in env and env['LC_ALL'] == 'C' and env['ALATION_TEST_KEPT'] == 'yes'
    assert env['SSH_AUTH_SOCK'] == '/run/agent.sock' and os.environ['LANGUAGE'] == 'de'


def test_start_gives_pipes_and_the_environment(monkeypatch):
    monkeypatch.setenv('LANGUAGE', 'de')
    proc = _runner.start(['sh', '-c', 'cat; echo "$LC_ALL ${LANGUAGE:-none} $EXTRA"; echo err >&2'], env={'EXTRA': 'x'})
    out, err = proc.communicate(b'in\n')
    assert proc.returncode == 0 and out == b'in\nC none x\n' and err == b'err\n'


def test_start_feeds_a_file_and_takes_other_popen_arguments(tmp_path):
    src = tmp_path / 'src'
    src.write_bytes(b'abc')
    rfd, wfd = os.pipe()
    os.write(wfd, b'secret\n')
    os.close(wfd)
    with open(str(src), 'rb') as f:
        proc = _runner.start(['sh', '-c', 'cat; cat /dev/fd/%d' % rfd], stdin=f, pass_fds=(rfd,))
        out, dummy = proc.communicate()
    os.close(rfd)
    assert out == b'abcsecret\n'


def test_start_wraps_for_the_shell_and_the_user(monkeypatch):
    seen = {}

    class Popen(object):
        def __init__(self, argv, **kw):
            seen.update(argv=argv, env=kw['env'])
            self.stdin = self.stdout = None
    monkeypatch.setattr(_runner.subprocess, 'Popen', Popen)
    _runner.start(['pg_probackup', 'show'], chroot='/opt/alation/alation', run_as='alation')
    assert seen['argv'] == ['chroot', '--userspec=alation', '/opt/alation/alation', 'pg_probackup', 'show']
    assert seen['env']['LC_ALL'] == 'C'


@pytest.mark.parametrize('module', [_gpg, _offsite])
def test_gpg_and_offsite_start_programs_only_through_the_runner(module):
    """No Popen of their own, no copy of the C-locale environment."""
    with open(module.__file__.replace('.pyc', '.py')) as f:
        text = f.read()
    assert 'Popen(' not in text and 'subprocess.call' not in text and 'LANGUAGE' not in text


def test_send_file_streams_the_file_with_the_environment(tmp_path):
    src = tmp_path / 'archive'
    src.write_bytes(b'x' * 10)

    class Runner(object):
        executed_commands = []
    result = _offsite.send_file(Runner(), ['sh', '-c', 'wc -c; echo "$LC_ALL $SSH_AUTH_SOCK"'], str(src),
                                {'SSH_AUTH_SOCK': '/run/a'})
    assert result['rc'] == 0 and result['stdout'].split() == ['10', 'C', '/run/a']
    assert Runner.executed_commands == ["sh -c 'wc -c; echo \"$LC_ALL $SSH_AUTH_SOCK\"' < %s" % src]
