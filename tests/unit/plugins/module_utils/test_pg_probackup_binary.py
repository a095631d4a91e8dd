# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pg_probackup binary checked in preflight (pg_ping pg_probackup=true): found as the backup finds it,
runs, and is built for the server's PostgreSQL major. --version output as the real 2.5.15 prints it."""

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _pg_probackup as pp

from .runner_double import program, runner

# What the real pg_probackup 2.5.15 printed (shared/reference/pg_probackup/commands-log.txt).
REAL = 'pg_probackup 2.5.15 (PostgreSQL 15.18 (Debian 15.18-0+deb12u1))\n'


@pytest.mark.parametrize('text, expected', [
    (REAL, ('2.5.15', '15')),
    ('pg_probackup 2.5.15 (PostgreSQL 16.4) (compressions: zlib)\n', ('2.5.15', '16')),
    ('pg_probackup-11 2.4.15 (PostgreSQL 11.22)\n', ('2.4.15', '11')),
    ('pg_probackup 2.5.5 (PostgreSQL 9.6.24)\n', ('2.5.5', '9.6')),
    ('pg_probackup 2.5.15\n', ('2.5.15', None)),
    ('psql (PostgreSQL) 15.18\n', None),
    ('', None),
])
def test_parse_version(text, expected):
    assert pp.parse_version(text) == expected


@pytest.mark.parametrize('value, major', [
    (150018, '15'), ('150018', '15'), (90624, '9.6'), (100023, '10'), ('15.20', '15'), ('9.6.24', '9.6'),
    ('16', '16'), (None, None), ('', None),
])
def test_pg_major(value, major):
    assert pp.pg_major(value) == major


def answering(rc, out, err=''):
    return lambda argv: (rc, out, err)


def test_a_binary_built_for_the_server_major_passes(tmp_path):
    exe = program(tmp_path, 'pg_probackup')
    r = runner({'pg_probackup': answering(0, REAL)})
    assert pp.check_binary(r, exe, 150020) == dict(binary=exe, version='2.5.15', pg_major='15')
    assert r.module.calls == [[exe, '--version']]


def test_a_missing_binary_is_named_with_what_to_do(tmp_path):
    missing = str(tmp_path / 'nope' / 'pg_probackup')
    r = runner()
    with pytest.raises(pp.PgProbackupError) as e:
        pp.check_binary(r, missing, 150020, setting='alation_backup_pg_probackup_binary')
    assert missing in e.value.msg and 'is not an executable file' in e.value.msg
    assert 'Install pg_probackup, or set alation_backup_pg_probackup_binary to its path.' in e.value.msg
    assert r.module.calls == [], 'nothing ran'


def test_inside_the_shell_the_message_says_so(tmp_path):
    shell = tmp_path / 'shell'
    shell.mkdir()
    r = runner(chroot=str(shell))
    with pytest.raises(pp.PgProbackupError) as e:
        pp.check_binary(r, '/usr/local/bin/pg_probackup', 150020)
    assert '/usr/local/bin/pg_probackup is not an executable file (looked at %s/usr/local/bin/pg_probackup on the host)' \
        % shell in e.value.msg
    assert 'Install pg_probackup inside the Alation shell, or set binary to its path there.' in e.value.msg


def test_a_binary_that_does_not_run_is_refused(tmp_path):
    exe = program(tmp_path, 'pg_probackup')
    r = runner({'pg_probackup': answering(127, '', 'error while loading shared libraries: libpq.so.5')})
    with pytest.raises(pp.PgProbackupError) as e:
        pp.check_binary(r, exe, 150020)
    assert '%s --version' % exe in e.value.msg and 'libpq.so.5' in e.value.msg


def test_another_program_is_refused(tmp_path):
    exe = program(tmp_path, 'pg_probackup')
    r = runner({'pg_probackup': answering(0, 'psql (PostgreSQL) 15.18\n')})
    with pytest.raises(pp.PgProbackupError) as e:
        pp.check_binary(r, exe, 150020)
    assert '%s is not pg_probackup' % exe in e.value.msg and 'psql (PostgreSQL) 15.18' in e.value.msg


def test_a_build_for_another_major_is_refused_naming_both(tmp_path):
    exe = program(tmp_path, 'pg_probackup')
    r = runner({'pg_probackup': answering(0, 'pg_probackup 2.5.15 (PostgreSQL 14.13)\n')})
    with pytest.raises(pp.PgProbackupError) as e:
        pp.check_binary(r, exe, 150020, setting='pg_probackup_binary')
    msg = e.value.msg
    assert 'built for PostgreSQL 14, but the server runs PostgreSQL 15' in msg
    assert 'pg_probackup-15' in msg and 'set pg_probackup_binary to it' in msg


def test_without_a_server_version_the_major_is_not_judged(tmp_path):
    exe = program(tmp_path, 'pg_probackup')
    r = runner({'pg_probackup': answering(0, 'pg_probackup 2.5.15 (PostgreSQL 14.13)\n')})
    assert pp.check_binary(r, exe)['pg_major'] == '14'


def test_found_by_its_versioned_name_as_the_backup_finds_it(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    exe = program(tmp_path, 'pg_probackup-15')
    r = runner({'pg_probackup-15': answering(0, REAL)})
    assert pp.check_binary(r, None, 150020)['binary'] == exe
