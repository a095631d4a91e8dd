# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection options shared by modules (after community.postgresql).

The password only ever travels in the environment (``PGPASSWORD``) of the
program that needs it, never on a command line where ``ps`` would show it.
"""

from ansible_collections.alation.backup.plugins.module_utils._secret_file import (
    secret_file_argument_spec, take_secret_options)


def postgres_argument_spec():
    """Connection options; extend a module's spec with ``.update()``."""
    return dict(
        host=dict(type='str', aliases=['login_host']),
        port=dict(type='int', aliases=['login_port']),
        user=dict(type='str', aliases=['login_user']),
        dbname=dict(type='str', aliases=['db', 'login_db']),
        password=dict(type='str', no_log=True, aliases=['login_password']),
    )


def connection_argv(params):
    """libpq-style ``-h -p -U -d`` arguments for the options that are set."""
    argv = []
    for flag, key in (('-h', 'host'), ('-p', 'port'), ('-U', 'user'), ('-d', 'dbname')):
        if params.get(key) not in (None, ''):
            argv += [flag, str(params[key])]
    return argv


def connection_env(params):
    """Environment entries for the command: the password, if any."""
    return {'PGPASSWORD': params['password']} if params.get('password') else {}


def password_file_argument_spec():
    """The ``password_file`` option of the modules that run in the background (async)."""
    return secret_file_argument_spec('password')


def take_password_file(module):
    """Read and remove ``password_file`` (written by alation.backup.secret_file) into ``password``, first thing."""
    take_secret_options(module, 'password')
