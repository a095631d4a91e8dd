# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/troubleshooting.md lists every message the code gives: the list is the one the script makes today."""

import os

import error_messages


def test_the_troubleshooting_page_lists_the_messages_of_the_code_as_it_is():
    with open(error_messages.DOC) as f:
        doc = f.read()
    assert error_messages.replaced(doc, error_messages.render()) == doc, \
        'docs/troubleshooting.md is behind the code: run python tests/support/error_messages.py --write'


def test_the_list_holds_messages_of_every_step():
    block = error_messages.render()
    for step, dummy in error_messages.STEPS:
        assert '#### %s\n' % step in block
    # A refusal from preflight, one from the copy, one from the role's own assert.
    assert 'another backup (Alation\'s own, or another program) is at work in the staging dirs' in block
    assert 'not enough free space on the backup host for <...>' in block
    assert '`roles/backup/tasks/preflight.yml`' in block


def test_the_refusals_a_problem_function_returns_are_listed_under_preflight():
    """pg_ping fails with what replication_problem and data_directory_problem return: no raise, no fail_json text."""
    block = error_messages.render()
    preflight = block.partition('#### preflight\n')[2].partition('#### stage\n')[0]
    assert 'cannot open a replication connection to the server (<...>), which pg_probackup --stream' in preflight
    assert 'the PostgreSQL server on this port serves the data directory <...>, not PGDATA <...>' in preflight
    assert 'PGDATA <...> is not a PostgreSQL data directory: it has no PG_VERSION' in preflight
    assert 'the controller cannot write <...> <...>' in block
    # A frame of values filled from elsewhere is no message.
    assert '`the <...> <...> <...> the <...> <...>: <...>`' not in block


def test_every_file_the_steps_name_exists():
    for dummy, files in error_messages.STEPS:
        for rel in files:
            assert os.path.exists(os.path.join(error_messages.ROOT, 'plugins', rel)), rel
