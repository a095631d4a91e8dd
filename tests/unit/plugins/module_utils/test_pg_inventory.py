# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's comparison with the manifest, the psql command line and pg_amcheck's report."""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _pg_inventory as inv

RECORDED = {'alation': {'tables': 812}, 'postgres': {'tables': 4}}


def results(comparison):
    return {k: v['result'] for k, v in comparison.items()}


def test_compare_all_there():
    c = inv.compare(RECORDED, {'alation': {'tables': 812}, 'postgres': {'tables': 4}, 'added': {'tables': 1}})
    assert results(c) == {'databases': 'ok', 'table_counts': 'ok'}
    assert c['table_counts']['detail'] == 'alation: 812, postgres: 4'
    assert 'all 2 databases recorded exist' in c['databases']['detail']


def test_compare_missing_database_and_other_count():
    c = inv.compare(RECORDED, {'postgres': {'tables': 3}})
    assert results(c) == {'databases': 'failed', 'table_counts': 'failed'}
    assert c['databases']['detail'] == 'missing: alation' and c['databases']['missing'] == ['alation']
    assert c['table_counts']['detail'] == 'postgres: 4 tables recorded, 3 found'
    assert c['table_counts']['mismatches'] == {'postgres': {'recorded': 4, 'found': 3}}


def test_compare_unreadable_database_is_named_with_its_reason():
    c = inv.compare(RECORDED, {'postgres': {'tables': 4}}, {'alation': 'permission denied'})
    assert c['databases']['result'] == 'failed'
    assert c['databases']['detail'] == 'cannot be read: permission denied'
    assert c['table_counts']['result'] == 'ok'


@pytest.mark.parametrize('recorded', [{}, None])
def test_compare_without_a_record_skips_both(recorded):
    c = inv.compare(recorded, {'postgres': {'tables': 4}})
    assert results(c) == {'databases': 'skipped', 'table_counts': 'skipped'}
    assert 'records no databases' in c['databases']['detail']


def test_compare_when_nothing_could_be_counted():
    c = inv.compare({'x': {'tables': None}}, {'x': {'tables': 2}})
    assert results(c) == {'databases': 'ok', 'table_counts': 'skipped'}


@pytest.mark.parametrize('name, expected', [
    ('postgres', "dbname='postgres'"),
    ("o'brien", "dbname='o\\'brien'"),
    ('back\\slash', "dbname='back\\\\slash'"),
    ('host=evil dbname=x', "dbname='host=evil dbname=x'"),
])
def test_conninfo_dbname_never_reads_a_name_as_a_connection_string(name, expected):
    assert inv.conninfo_dbname(name) == expected


def test_psql_argv():
    argv = inv.psql_argv('/usr/bin/psql', ['-h', '/s', '-p', '5'], 'db', 'SELECT 1')
    assert argv == ['/usr/bin/psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '--no-password',
                    '-h', '/s', '-p', '5', '-d', "dbname='db'", '-c', 'SELECT 1']


def test_amcheck_problems_joins_each_place_with_its_detail():
    out = ('heap table "postgres.public.t", block 5, offset 2:\n'
           '    line pointer redirection to item at offset 1778 exceeds maximum offset 61\n'
           'btree index "postgres.public.t_pkey":\n'
           '    ERROR:  index is corrupt\n'
           '    DETAIL:  more\n\n')
    assert inv.amcheck_problems(out) == [
        'heap table "postgres.public.t", block 5, offset 2: line pointer redirection to item at offset 1778 '
        'exceeds maximum offset 61',
        'btree index "postgres.public.t_pkey": ERROR:  index is corrupt DETAIL:  more',
    ]
    assert inv.amcheck_problems('') == []


@pytest.mark.parametrize('host, user, line', [
    ('127.0.0.1', 'alation', 'host replication alation 127.0.0.1/32 scram-sha-256'),
    ('db.example.com', 'alation', 'host replication alation db.example.com scram-sha-256'),
    ('/var/run/postgresql', 'alation', 'local replication alation peer'),
    (None, 'alation', 'local replication alation peer'),
])
def test_hba_line(host, user, line):
    assert inv.hba_line(host, user) == line


def test_replication_argv_opens_a_replication_connection():
    argv = inv.psql_argv('psql', [], 'postgres', 'IDENTIFY_SYSTEM', replication=True)
    assert argv[-4:] == ['-d', "dbname='postgres' replication=true", '-c', 'IDENTIFY_SYSTEM']


class _Psql(object):
    def __init__(self, answer, chroot=None):
        from . import runner_double
        self.answer = answer
        self.runner = runner_double.runner(chroot=chroot)

    def query(self, dbname, sql):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize('answer', ['/data1/pgsql/data', '/data1/pgsql/data/', '',
                                    inv.InventoryError('permission denied to examine "data_directory"')])
def test_data_directory_of_the_server_or_unknown_is_fine(answer):
    assert inv.data_directory_problem(_Psql(answer), 'postgres', '/data1/pgsql/data') is None


def test_another_servers_data_directory_is_named(tmp_path):
    problem = inv.data_directory_problem(_Psql('/var/lib/postgresql/15/main', str(tmp_path)), 'postgres',
                                         '/data1/pgsql/data')
    assert problem == ('the PostgreSQL server on this port serves the data directory /var/lib/postgresql/15/main, not '
                       'PGDATA /data1/pgsql/data: set alation_backup_pgdata to /var/lib/postgresql/15/main, or '
                       'alation_backup_pg_port to the port of the server of /data1/pgsql/data')


def test_a_symlink_to_the_served_data_directory_is_fine(tmp_path):
    os.makedirs(str(tmp_path / 'data1/pgsql/data'))
    os.symlink('/data1/pgsql/data', str(tmp_path / 'data1/link'))
    # Resolved inside the chroot: the link's absolute target is a shell path.
    os.symlink(str(tmp_path / 'data1/pgsql/data'), str(tmp_path / 'data1/hostlink'))
    assert inv.data_directory_problem(_Psql('/data1/pgsql/data', str(tmp_path)), 'postgres', '/data1/hostlink') is None
