# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""find_program: PostgreSQL programs inside an Alation shell, newest (or the data's own) version first."""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, find_program


@pytest.fixture
def shell(tmp_path):
    """A tree standing in for the Alation shell with PostgreSQL 13 and 15 (pg_ctl in both, psql only in 13)."""
    for version, names in (('13', ('pg_ctl', 'psql')), ('15', ('pg_ctl',))):
        bindir = tmp_path / 'usr/lib/postgresql' / version / 'bin'
        bindir.mkdir(parents=True)
        for name in names:
            (bindir / name).write_text('#!/bin/sh\n')
            os.chmod(bindir / name, 0o755)
    return str(tmp_path)


@pytest.mark.parametrize('name, version, expected', [
    ('pg_ctl', None, '/usr/lib/postgresql/15/bin/pg_ctl'),
    ('pg_ctl', '13', '/usr/lib/postgresql/13/bin/pg_ctl'),
    ('pg_ctl', '15', '/usr/lib/postgresql/15/bin/pg_ctl'),
    ('psql', '15', '/usr/lib/postgresql/13/bin/psql'),
])
def test_found_inside_the_shell_as_a_program_path(shell, name, version, expected):
    path, dummy = find_program(Runner(None, chroot=shell), name, version=version)
    assert path == expected


def test_bindir_alone_is_searched_and_the_message_lists_host_paths(shell):
    path, searched = find_program(Runner(None, chroot=shell), 'pg_amcheck', bindir='/usr/lib/postgresql/13/bin')
    assert path is None
    assert searched == [os.path.join(shell, 'usr/lib/postgresql/13/bin')]
