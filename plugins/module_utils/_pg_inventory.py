# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a PostgreSQL cluster holds, read with psql: databases and their table counts.

The backup role records it in the archive's manifest; the restore drill reads
it again from the restored cluster and compares. Also runs pg_amcheck over
every database. Standard library only; programs run through the Runner.
"""

import json
import os
import posixpath

from ansible_collections.alation.backup.plugins.module_utils._host import command_failure
from ansible_collections.alation.backup.plugins.module_utils._postgres import (
    connection_argv, connection_env, postgres_argument_spec)
from ansible_collections.alation.backup.plugins.module_utils._runner import (
    Runner, find_program, not_found, runner_argument_spec)

# Databases a client can use: not templates, and open to connections.
LIST_DATABASES_SQL = (
    "SELECT coalesce(json_agg(datname ORDER BY datname), '[]') FROM pg_database "
    "WHERE datallowconn AND NOT datistemplate"
)
# Every database pg_amcheck --all visits (template1 too).
LIST_CONNECTABLE_SQL = "SELECT coalesce(json_agg(datname ORDER BY datname), '[]') FROM pg_database WHERE datallowconn"
# Tables as a user sees them: ordinary and partitioned, outside the system schemas.
COUNT_TABLES_SQL = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%'"
)
AMCHECK_INSTALLED_SQL = "SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'"
AMCHECK_INSTALL_SQL = 'CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA pg_catalog'
AMCHECK_REMOVE_SQL = 'DROP EXTENSION IF EXISTS amcheck'
SERVER_VERSION_SQL = 'SHOW server_version_num'


class InventoryError(Exception):
    """psql could not read what it was asked; carries the command's result."""

    def __init__(self, msg, result=None):
        self.result = result or {}
        super().__init__(msg)


def conninfo_dbname(name):
    """``dbname='...'`` for psql -d: a database name is never read as a connection string."""
    return "dbname='%s'" % name.replace('\\', '\\\\').replace("'", "\\'")


def psql_argv(psql, conn_argv, dbname, sql, replication=False):
    """psql, quiet, unaligned, tuples only, stopping at the first error, without reading ~/.psqlrc.

    ``replication`` opens a physical replication connection (the one
    pg_probackup --stream and pg_basebackup open), which takes replication
    commands such as IDENTIFY_SYSTEM.
    """
    conninfo = conninfo_dbname(dbname) + (' replication=true' if replication else '')
    return [psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '--no-password'] + list(conn_argv) + [
        '-d', conninfo, '-c', sql]


def psql_argument_spec(**more):
    """Options of the modules that talk to PostgreSQL with psql: the connection, the Alation shell, the
    maintenance database and where psql is; ``more`` adds the module's own."""
    spec = postgres_argument_spec()
    spec.update(runner_argument_spec())
    spec.update(dbname=dict(type='str', default='postgres', aliases=['db', 'login_db']), bindir=dict(type='path'))
    spec.update(more)
    return spec


def maintenance_db(params):
    """The database the psql modules connect to first: ``dbname``, or postgres when it is omitted or '' (unset)."""
    return params.get('dbname') or 'postgres'


def psql_client(module):
    """(Runner, Psql) for the connection in ``module``'s params; InventoryError naming where psql was looked for."""
    p = module.params
    runner = Runner(module, chroot=p['chroot'], run_as=p['run_as'])
    program, searched = find_program(runner, 'psql', p['bindir'])
    if not program:
        raise InventoryError(not_found(runner, 'psql', searched, 'Install the PostgreSQL client or set bindir.'))
    return runner, Psql(runner, program, connection_argv(dict(p, dbname=None)), connection_env(p))


class Psql(object):
    """Runs one SQL statement at a time through the Runner."""

    def __init__(self, runner, psql, conn_argv, env):
        self.runner = runner
        self.psql = psql
        self.conn_argv = conn_argv
        self.env = env

    def query(self, dbname, sql, replication=False):
        result = self.runner.run(psql_argv(self.psql, self.conn_argv, dbname, sql, replication), env=self.env)
        if result['rc'] != 0:
            raise InventoryError(command_failure('psql on database %s' % dbname, result['rc'], result['stderr'],
                                                 limit=1), result)
        return result['stdout'].strip()

    def json(self, dbname, sql):
        out = self.query(dbname, sql)
        try:
            return json.loads(out)
        except ValueError:
            raise InventoryError('psql on database %s printed %r, not JSON' % (dbname, out[:200]))

    def integer(self, dbname, sql):
        out = self.query(dbname, sql)
        try:
            return int(out)
        except ValueError:
            raise InventoryError('psql on database %s printed %r, not a number' % (dbname, out[:200]))


def inventory(psql, maintenance_db):
    """{databases: {name: {tables: N}}, unreachable: {name: error}, server_version_num}.

    The list comes from ``maintenance_db``; a database that cannot be read (no
    CONNECT right, dropped meanwhile) is reported in ``unreachable`` instead of
    failing the whole inventory.
    """
    names = psql.json(maintenance_db, LIST_DATABASES_SQL)
    version = psql.integer(maintenance_db, SERVER_VERSION_SQL)
    databases, unreachable = {}, {}
    for name in names:
        try:
            databases[name] = dict(tables=psql.integer(name, COUNT_TABLES_SQL))
        except InventoryError as e:
            unreachable[name] = str(e)
    return dict(databases=databases, unreachable=unreachable, server_version_num=version)


def count_tables(runner, conn_argv, env, maintenance_db, bindir=None):
    """(databases {name: {tables: N}}, error '' or why not all were counted), as ``inventory`` counts them; never
    raises: the backup steps that count right after their backup never fail for it (the restore drill then skips
    the counts, saying why)."""
    program, searched = find_program(runner, 'psql', bindir)
    if not program:
        return {}, not_found(runner, 'psql', searched, 'Install the PostgreSQL client or set bindir.')
    try:
        found = inventory(Psql(runner, program, conn_argv, env), maintenance_db)
    except (InventoryError, OSError, ValueError, TypeError) as e:
        return {}, 'cannot list the databases: %s' % e
    error = '; '.join('database %s was not counted: %s' % (name, why) for name, why in sorted(found['unreachable'].items()))
    return found['databases'], error


def hba_line(host, user):
    """The pg_hba.conf line that lets ``user`` open a replication connection from ``host``."""
    if not host or host.startswith('/'):
        return 'local replication %s peer' % user
    address = host if ':' in host or not host.replace('.', '').isdigit() else host + '/32'
    return 'host replication %s %s scram-sha-256' % (user, address)


def replication_problem(psql, dbname, host, user):
    """None when ``user`` may open a replication connection, else what to do about it.

    pg_probackup --stream and pg_basebackup stream WAL over one; without a
    pg_hba.conf entry they fail only after the backup has begun.
    """
    try:
        psql.query(dbname, 'IDENTIFY_SYSTEM', replication=True)
    except InventoryError as e:
        return ('role %s cannot open a replication connection to the server (%s), which pg_probackup --stream and '
                'pg_basebackup need. Add this line to pg_hba.conf above the others that match (with the '
                'authentication method your other lines use), then reload PostgreSQL (SELECT pg_reload_conf()): '
                '"%s"; the role also needs the REPLICATION attribute (or to be a superuser)'
                % (user or 'of the connection', e, hba_line(host, user or '<user>')))
    return None


def data_directory_problem(psql, dbname, pgdata):
    """None when the server serves ``pgdata`` (a path as the server sees it), else what to do about it.

    A role that may not read ``data_directory`` (neither superuser nor
    pg_read_all_settings) cannot tell: None. Paths are compared as written,
    then resolved on the host (through the runner's chroot), so a symlink to
    the same dir is fine.
    """
    try:
        seen = psql.query(dbname, "SELECT current_setting('data_directory')")
    except InventoryError:
        return None
    if not seen or posixpath.normpath(seen) == posixpath.normpath(pgdata):
        return None
    host = psql.runner.host_path
    if os.path.realpath(host(seen)) == os.path.realpath(host(pgdata)):
        return None
    return ('the PostgreSQL server on this port serves the data directory %s, not PGDATA %s: set '
            'alation_backup_pgdata to %s, or alation_backup_pg_port to the port of the server of %s'
            % (seen, pgdata, seen, pgdata))


def outcome(result, detail, **extra):
    """One check's record: result ok, failed or skipped, and what was seen."""
    return dict(extra, result=result, detail=detail)


def compare(expected, found, unreachable=None):
    """The drill's two checks of a restored cluster against the manifest's record.

    ``databases``: every database the manifest lists exists. ``table_counts``:
    each has the number of tables recorded. Skipped when nothing was recorded
    (an archive made before the backup role recorded them).
    """
    unreachable = unreachable or {}
    if not expected:
        why = 'the manifest records no databases (an archive made before table counts were recorded)'
        return dict(databases=outcome('skipped', why), table_counts=outcome('skipped', why))
    missing = sorted(name for name in expected if name not in found and name not in unreachable)
    blocked = sorted(name for name in expected if name in unreachable)
    if missing or blocked:
        parts = []
        if missing:
            parts.append('missing: %s' % ', '.join(missing))
        if blocked:
            parts.append('cannot be read: %s' % '; '.join(unreachable[n] for n in blocked))
        databases = outcome('failed', '; '.join(parts), missing=missing + blocked)
    else:
        databases = outcome('ok', 'all %d databases recorded exist: %s' % (len(expected), ', '.join(sorted(expected))),
                            missing=[])
    mismatches = {}
    counted = 0
    for name in sorted(expected):
        want = (expected[name] or {}).get('tables')
        if want is None or name not in found:
            continue
        counted += 1
        got = found[name].get('tables')
        if int(want) != int(got):
            mismatches[name] = dict(recorded=int(want), found=int(got))
    if mismatches:
        detail = '; '.join('%s: %d tables recorded, %d found' % (n, m['recorded'], m['found'])
                           for n, m in sorted(mismatches.items()))
        counts = outcome('failed', detail, mismatches=mismatches)
    elif counted == 0:
        counts = outcome('skipped', 'no recorded database could be counted', mismatches={})
    else:
        agreed = [n for n in sorted(expected) if n in found and (expected[n] or {}).get('tables') is not None]
        counts = outcome('ok', ', '.join('%s: %d' % (n, int(expected[n]['tables'])) for n in agreed), mismatches={})
    return dict(databases=databases, table_counts=counts)


def amcheck_problems(stdout):
    """pg_amcheck's report, one item a place: its header line with the indented lines under it joined."""
    problems = []
    for line in (stdout or '').splitlines():
        if not line.strip():
            continue
        if line[:1].isspace() and problems:
            problems[-1] = '%s %s' % (problems[-1], line.strip())
        else:
            problems.append(line.strip())
    return problems
