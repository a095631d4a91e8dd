# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.alation.backup.plugins.module_utils._postgres import (
    connection_argv,
    connection_env,
    postgres_argument_spec,
)


def test_password_is_no_log():
    assert postgres_argument_spec()['password']['no_log'] is True


@pytest.mark.parametrize('params, argv', [
    ({}, []),
    ({'host': '127.0.0.1', 'port': 5432, 'user': 'alation', 'dbname': 'rosemeta'},
     ['-h', '127.0.0.1', '-p', '5432', '-U', 'alation', '-d', 'rosemeta']),
    ({'host': '', 'port': None, 'user': 'alation'}, ['-U', 'alation']),
    ({'password': 'secret', 'user': 'u'}, ['-U', 'u']),
])
def test_connection_argv_has_what_is_set_and_never_the_password(params, argv):
    assert connection_argv(params) == argv


@pytest.mark.parametrize('params, env', [
    ({'password': 'secret'}, {'PGPASSWORD': 'secret'}),
    ({'password': ''}, {}),
    ({'password': None}, {}),
    ({}, {}),
])
def test_connection_env_carries_the_password(params, env):
    assert connection_env(params) == env


def test_the_password_file_is_read_removed_and_masked(tmp_path):
    from ansible_collections.alation.backup.plugins.module_utils._postgres import take_password_file

    class Module(object):
        def __init__(self, params):
            self.params = params
            self.no_log_values = set()

        def fail_json(self, **kw):
            raise AssertionError(kw['msg'])

    secret = tmp_path / 'pw'
    secret.write_text('pa ss\n')
    module = Module(dict(password=None, password_file=str(secret)))
    take_password_file(module)
    assert module.params['password'] == 'pa ss\n' and 'pa ss\n' in module.no_log_values
    assert not secret.exists()
    with pytest.raises(AssertionError, match='cannot be read'):
        take_password_file(Module(dict(password=None, password_file=str(secret))))
