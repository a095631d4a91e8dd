# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # PostgreSQL connection options (postgres_argument_spec() in module_utils/_postgres.py).
    DOCUMENTATION = r'''
options:
  host:
    description:
      - Host name, IP address or Unix socket directory of the PostgreSQL server.
      - Omit to use libpq's default (the local Unix socket, or E(PGHOST)).
    type: str
    aliases: [login_host]
  port:
    description:
      - Port of the PostgreSQL server. Omit for libpq's default (5432, or E(PGPORT)).
    type: int
    aliases: [login_port]
  user:
    description:
      - Database role to connect as. It needs the right to run a backup and to open a replication connection.
      - Omit for libpq's default (the OS user, or E(PGUSER)).
    type: str
    aliases: [login_user]
  dbname:
    description:
      - Database to connect to. Omit for libpq's default (the role name, or E(PGDATABASE)).
    type: str
    aliases: [db, login_db]
  password:
    description:
      - Password of O(user).
      - Passed to the program in the environment as E(PGPASSWORD), never on its command line.
      - Omit when the server trusts the connection or a C(.pgpass) file of O(run_as) has it.
    type: str
    aliases: [login_password]
'''

    # The password handed to a background (async) step through a tmpfs file (password_file_argument_spec()).
    PASSWORD_FILE = r'''
options:
  password_file:
    description:
      - A 0600 file on a tmpfs holding the password, written by M(alation.backup.secret_file) right before this task;
        read and removed as the module starts, then used as O(password). For a module run with C(async), whose
        arguments would otherwise sit in its payload on disk for the whole step.
    type: path
'''
