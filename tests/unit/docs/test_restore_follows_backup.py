# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore role's defaults follow the backup role's variables where a host has them (roles/restore/defaults/main.yml).

Each default is rendered by Ansible's own templar, as a role default is, against a host's variables, and the
result validated with the restore role's argument spec as its validate_argument_spec task does.
"""

import os

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RESTORE = os.path.join(ROOT, 'roles', 'restore')

# What follows what: the variables the backup role's scheduled drill hands the restore steps (tasks/drill.yml).
FOLLOWS = {
    'alation_restore_root': ('alation_backup_root', '/srv/alation'),
    'alation_restore_use_chroot': ('alation_backup_use_chroot', False),
    'alation_restore_storage_dir': ('alation_backup_storage_dir', '/data3/backups'),
    'alation_restore_pg_os_user': ('alation_backup_pg_os_user', 'postgres'),
    'alation_restore_pg_bindir': ('alation_backup_pg_bindir', '/usr/lib/postgresql/15/bin'),
    'alation_restore_pg_probackup_binary': ('alation_backup_pg_probackup_binary', '/opt/pg_probackup/bin/pg_probackup'),
}


def _defaults():
    # As Ansible loads a role's defaults: trusted as templates (ansible-core 2.19 templates nothing else).
    path = os.path.join(RESTORE, 'defaults', 'main.yml')
    try:
        return DataLoader().load_from_file(path, trusted_as_template=True)
    except TypeError:  # ansible-core before 2.19 templates whatever it loads
        return DataLoader().load_from_file(path)


def _options():
    with open(os.path.join(RESTORE, 'meta', 'argument_specs.yml')) as handle:
        specs = yaml.safe_load(handle)['argument_specs']
    options = {}
    for spec in specs.values():
        options.update(spec['options'])
    return options


def _render(host_vars):
    """The restore role's variables as a host with host_vars sees them: role defaults under the host's own."""
    defaults = _defaults()
    templar = Templar(loader=DataLoader(), variables=dict(host_vars))
    rendered = {name: templar.template(value) for name, value in defaults.items()}
    rendered.update({k: v for k, v in host_vars.items() if k.startswith('alation_restore_')})
    return rendered


def _validate(values):
    result = ArgumentSpecValidator(_options()).validate(values)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def test_alone_the_defaults_are_the_specs():
    """Without any backup variable each default is the one the spec (and the README's table) shows."""
    rendered = _render({})
    assert rendered == {name: option['default'] for name, option in _options().items()}
    _validate(rendered)


@pytest.mark.parametrize('restore_var', sorted(FOLLOWS))
def test_follows_the_backup_variable(restore_var):
    backup_var, value = FOLLOWS[restore_var]
    rendered = _render({backup_var: value})
    assert rendered[restore_var] == value
    assert _validate(rendered)[restore_var] == value


def test_all_at_once_and_the_rest_untouched():
    host_vars = dict(FOLLOWS.values())
    rendered = _render(host_vars)
    alone = _render({})
    for name in rendered:
        if name in FOLLOWS:
            assert rendered[name] == host_vars[FOLLOWS[name][0]]
        else:
            assert rendered[name] == alone[name]


def test_restore_variable_wins():
    rendered = _render({'alation_backup_storage_dir': '/data3/backups', 'alation_restore_storage_dir': '/mnt/copy'})
    assert rendered['alation_restore_storage_dir'] == '/mnt/copy'


@pytest.mark.parametrize('backup_var', ['alation_backup_root', 'alation_backup_storage_dir', 'alation_backup_pg_os_user'])
def test_empty_backup_value_means_the_default(backup_var):
    """An empty or null backup path (the backup role reads those as its default) does not become the restore's."""
    restore_var = [r for r, (b, _v) in FOLLOWS.items() if b == backup_var][0]
    for empty in ('', None):
        assert _render({backup_var: empty})[restore_var] == _options()[restore_var]['default']
