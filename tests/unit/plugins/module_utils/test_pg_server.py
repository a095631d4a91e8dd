# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_pg_server: the temporary server's settings, its record, and starting and stopping only what it started.

pg_ctl is answered by a double here (tests/integration/test_restore_modules.py
starts and stops real servers); a live pid in postmaster.pid is this test's own.
"""

import json
import os
import shlex
import socket
import stat

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _pg_server as pgs
from ansible_collections.alation.backup.plugins.module_utils._restore import RestoreError

from .runner_double import program, runner

DEAD_PID = 999999999


# -- what a data directory says ------------------------------------------------------

def test_running_postmaster(tmp_path):
    assert pgs.running_postmaster(str(tmp_path)) is None
    (tmp_path / 'postmaster.pid').write_text('%d\n/x\n' % os.getpid())
    assert pgs.running_postmaster(str(tmp_path)) == os.getpid()
    (tmp_path / 'postmaster.pid').write_text('%d\n' % DEAD_PID)
    assert pgs.running_postmaster(str(tmp_path)) is None
    (tmp_path / 'postmaster.pid').write_text('garbage\n')
    assert pgs.running_postmaster(str(tmp_path)) is None


def test_pg_major_version(tmp_path):
    assert pgs.pg_major_version(str(tmp_path)) is None
    (tmp_path / 'PG_VERSION').write_text('15\n')
    assert pgs.pg_major_version(str(tmp_path)) == '15'
    (tmp_path / 'PG_VERSION').write_text('\n')
    assert pgs.pg_major_version(str(tmp_path)) is None


# -- settings ----------------------------------------------------------------------

def settings(major=None, extra=None):
    return dict(pgs.server_settings('/s/pgdata', 5999, '/s/socket', '/s/socket/pg_hba.conf', major, extra))


def test_server_settings_keep_the_server_away_from_the_live_one():
    s = settings('15')
    assert s['data_directory'] == '/s/pgdata' and s['external_pid_file'] == ''
    assert s['listen_addresses'] == '127.0.0.1' and s['port'] == '5999'
    assert s['unix_socket_directories'] == '/s/socket' and s['hba_file'] == '/s/socket/pg_hba.conf'
    assert s['archive_mode'] == 'off' and s['restore_command'] == '' and s['primary_conninfo'] == ''
    assert 'stats_temp_directory' not in s


@pytest.mark.parametrize('major, recovery_gucs, stats_temp', [
    ('15', True, False), ('14', True, True), ('12', True, True), ('11', False, True), ('9.6', False, True),
    (None, True, False), ('garbage', True, False),
])
def test_server_settings_by_major_version(major, recovery_gucs, stats_temp):
    s = settings(major)
    assert ('restore_command' in s) is recovery_gucs
    assert ('stats_temp_directory' in s) is stats_temp


def test_server_settings_extra_overrides_and_adds():
    s = pgs.server_settings('/p', 1, '/s', '/s/h', '15', {'shared_buffers': '1GB', 'work_mem': '4MB'})
    assert ('shared_buffers', '1GB') in s and s[-1] == ('work_mem', '4MB')
    assert [k for k, v in s].count('shared_buffers') == 1


@pytest.mark.parametrize('settings_, options', [
    ([('unix_socket_directories', '/a b'), ('archive_mode', 'off')],
     "-c 'unix_socket_directories=/a b' -c archive_mode=off"),
    ([('restore_command', '')], '-c restore_command='),
    ([('x', "it's; rm -rf /")], """-c 'x=it'"'"'s; rm -rf /'"""),
])
def test_postgres_options_quotes_for_the_shell(settings_, options):
    assert pgs.postgres_options(settings_) == options
    # What the shell pg_ctl hands it to makes of it: each setting one word again.
    words = shlex.split(options)
    assert words[1::2] == ['%s=%s' % kv for kv in settings_]


def test_log_findings():
    log = ('LOG:  starting PostgreSQL 15\n'
           'LOG:  consistent recovery state reached at 0/3000168\n'
           'FATAL:  the database system is starting up\n'
           'LOG:  database system is ready to accept connections\n')
    consistent, errors = pgs.log_findings(log)
    assert consistent == ['LOG:  consistent recovery state reached at 0/3000168',
                          'LOG:  database system is ready to accept connections']
    assert errors == ['FATAL:  the database system is starting up']


def test_free_port_is_bindable():
    port = pgs.free_port()
    with socket.socket() as s:
        s.bind(('127.0.0.1', port))


def test_tail():
    assert pgs.tail('a\nb\nc\n', 2) == 'b\nc'


@pytest.mark.parametrize('text', [None, 'not json', '["a list"]'])
def test_read_record_of_no_record(tmp_path, text):
    if text is not None:
        (tmp_path / pgs.RECORD).write_text(text)
    assert pgs.read_record(str(tmp_path / pgs.RECORD)) is None


# -- the core ----------------------------------------------------------------------

@pytest.fixture
def place(tmp_path):
    """A restored data directory, a bindir with pg_ctl, and where the socket dir goes."""
    pgdata = tmp_path / 'pgdata'
    pgdata.mkdir()
    (pgdata / 'PG_VERSION').write_text('15\n')
    bindir = tmp_path / 'bin'
    program(bindir, 'pg_ctl')
    return dict(pgdata=str(pgdata), socket_dir=str(tmp_path / 'socket'), bindir=str(bindir))


def params(place, **kw):
    p = dict(place, state='started', port=0, settings={}, timeout=30, chroot=None, run_as=None)
    p.update(kw)
    return p


def fake_pg_ctl(place, start_rc=0, log='LOG:  database system is ready to accept connections\n', stops=True):
    """pg_ctl's double: start writes the log and a postmaster.pid naming this (live) process; stop removes it."""
    def answer(argv):
        if argv[-1] == 'start':
            with open(os.path.join(place['socket_dir'], pgs.LOG), 'a') as f:
                f.write(log)
            if start_rc == 0:
                with open(os.path.join(place['pgdata'], 'postmaster.pid'), 'w') as f:
                    f.write('%d\n' % os.getpid())
                return 0, 'server started\n', ''
            return start_rc, '', 'pg_ctl: could not start server\nExamine the log output.\n'
        if stops:
            os.unlink(os.path.join(place['pgdata'], 'postmaster.pid'))
            return 0, 'server stopped\n', ''
        return 1, '', 'pg_ctl: server does not shut down\n'
    return answer


def server(place, check_mode=False, programs=None, **kw):
    return pgs.Server(params(place, **kw), runner(programs or {'pg_ctl': fake_pg_ctl(place)}), check_mode=check_mode)


def test_start_writes_hba_and_record_then_starts_with_the_settings(place):
    core = server(place, port=5999, settings={'work_mem': '4MB'})
    result = core.run()
    assert result['changed'] and result['port'] == 5999 and result['pid'] == os.getpid()
    assert result['pg_version'] == '15' and result['consistent'] == [
        'LOG:  database system is ready to accept connections']
    [argv] = core.runner.module.calls
    assert argv[:9] == [os.path.join(place['bindir'], 'pg_ctl'), '-D', place['pgdata'], '-l',
                        os.path.join(place['socket_dir'], pgs.LOG), '-w', '-t', '30', '-o']
    options = shlex.split(argv[9])
    assert 'port=5999' in options and 'work_mem=4MB' in options and 'archive_mode=off' in options
    assert 'hba_file=%s' % os.path.join(place['socket_dir'], pgs.HBA) in options
    sock = place['socket_dir']
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o700
    with open(os.path.join(sock, pgs.HBA)) as f:
        assert f.read() == pgs.HBA_TEXT
    record = json.load(open(os.path.join(sock, pgs.RECORD)))
    assert record['pgdata'] == place['pgdata'] and record['port'] == 5999 and record['pid'] == os.getpid()
    assert stat.S_IMODE(os.stat(os.path.join(sock, pgs.RECORD)).st_mode) == 0o600


def test_start_again_on_its_own_server_changes_nothing(place):
    first = server(place).run()
    assert 1024 <= first['port'] <= 65535  # port 0: a free one chosen
    again = server(place)
    result = again.run()
    assert not result['changed'] and result['port'] == first['port'] and result['pid'] == os.getpid()
    assert again.runner.module.calls == []


def test_start_in_check_mode_says_what_it_would_run(place):
    core = server(place, check_mode=True, port=5999)
    result = core.run()
    assert result['changed'] and result['port'] == 5999 and core.runner.module.calls == []
    [cmd] = result['executed_commands']
    assert cmd.endswith(' start  (check mode: not run)') and 'port=5999' in cmd
    assert not os.path.exists(place['socket_dir'])


def test_start_in_check_mode_before_the_restore(place):
    os.unlink(os.path.join(place['pgdata'], 'PG_VERSION'))
    result = server(place, check_mode=True).run()
    assert result['changed'] and result['pg_version'] is None
    assert result['executed_commands'] == ['pg_ctl start on %s  (check mode: not run)' % place['pgdata']]


def test_start_refuses_what_is_no_data_directory(place):
    os.unlink(os.path.join(place['pgdata'], 'PG_VERSION'))
    with pytest.raises(RestoreError, match='is not a PostgreSQL data directory .*restore it first'):
        server(place).run()


def test_start_refuses_a_server_it_did_not_start(place):
    with open(os.path.join(place['pgdata'], 'postmaster.pid'), 'w') as f:
        f.write('%d\n' % os.getpid())
    core = server(place)
    with pytest.raises(RestoreError, match='pid %d.* this module did not start it' % os.getpid()):
        core.run()
    assert core.runner.module.calls == [] and not os.path.exists(place['socket_dir'])


def test_start_failure_quotes_pg_ctl_and_the_log_and_keeps_the_record(place):
    answer = fake_pg_ctl(place, start_rc=1, log='LOG:  starting\nFATAL:  could not map anonymous shared memory\n')
    core = server(place, programs={'pg_ctl': answer})
    with pytest.raises(RestoreError) as e:
        core.run()
    assert str(e.value) == (
        'PostgreSQL did not start on %s: pg_ctl start failed with exit code 1: pg_ctl: could not start server '
        'Examine the log output.; the server log says: FATAL:  could not map anonymous shared memory' % place['pgdata'])
    assert core.result['log_tail'].endswith('could not map anonymous shared memory')
    assert 'could not start server' in core.result['stderr']
    assert os.path.exists(os.path.join(place['socket_dir'], pgs.RECORD))  # so that stop can find it


def test_pg_ctl_not_found_says_where_it_looked(place, tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(RestoreError, match='pg_ctl not found: looked for pg_ctl in .*/empty. Install the PostgreSQL '
                                           '15 server or set bindir'):
        server(place, bindir=str(tmp_path / 'empty')).run()


def test_stop_with_nothing_running_changes_nothing(place):
    core = server(place, state='stopped')
    assert core.run()['changed'] is False and core.runner.module.calls == []


def test_stop_refuses_a_server_it_did_not_start(place):
    with open(os.path.join(place['pgdata'], 'postmaster.pid'), 'w') as f:
        f.write('%d\n' % os.getpid())
    os.mkdir(place['socket_dir'])
    with open(os.path.join(place['socket_dir'], pgs.RECORD), 'w') as f:
        json.dump(dict(pgdata='/another/pgdata', port=1), f)
    core = server(place, state='stopped')
    with pytest.raises(RestoreError, match='was not started by this module with socket_dir .*stops only servers'):
        core.run()
    assert core.runner.module.calls == []


def test_stop_what_it_started(place):
    server(place).run()
    preview = server(place, state='stopped', check_mode=True)
    assert preview.run()['changed'] and preview.runner.module.calls == []
    core = server(place, state='stopped')
    result = core.run()
    assert result['changed'] and [a[-1] for a in core.runner.module.calls] == ['stop']
    assert core.runner.module.calls[0][3:5] == ['-m', 'fast']
    assert not os.path.exists(os.path.join(place['socket_dir'], pgs.RECORD))


def test_stop_tries_immediate_and_says_when_the_server_stays(place):
    server(place).run()
    core = server(place, state='stopped', programs={'pg_ctl': fake_pg_ctl(place, stops=False)})
    with pytest.raises(RestoreError, match='did not stop: pg_ctl stop failed with exit code 1: pg_ctl: server does '
                                           'not shut down'):
        core.run()
    assert [a[4] for a in core.runner.module.calls] == ['fast', 'immediate']
    assert 'ready to accept connections' in core.result['log_tail']
