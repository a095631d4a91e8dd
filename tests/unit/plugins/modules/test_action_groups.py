# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_defaults on an action group gives every key to every module of the group: each module of a group in
meta/runtime.yml takes the group's keys (spec and docs), and reads the group's "unset" value as unset."""

import importlib
import os

import pytest
import yaml

from ansible.module_utils import basic

from ansible_collections.alation.backup.plugins.action import wait_progress as wait_progress_action

from .utils import AnsibleFailJson, run_module

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..')

# What the roles set once per group, and the value a module_defaults entry gives for "none".
GROUP_KEYS = {
    'leased': {'lease': {}},
    'shell': {'chroot': ''},
    'postgres': {'host': '', 'port': None, 'user': '', 'dbname': '', 'bindir': '', 'run_as': ''},
    'background': {'controller_mark': '', 'controller_timeout': 180},
}


def groups():
    with open(os.path.join(ROOT, 'meta', 'runtime.yml')) as f:
        return yaml.safe_load(f)['action_groups']


class _Spec(Exception):
    pass


def argument_spec(name, monkeypatch):
    """The argument spec the module ``name`` builds (its AnsibleModule call, caught before it parses anything)."""
    if name == 'wait_progress':
        return wait_progress_action.ARGUMENT_SPEC

    def capture(self, argument_spec=None, **kwargs):
        raise _Spec(argument_spec)
    monkeypatch.setattr(basic.AnsibleModule, '__init__', capture)
    module = importlib.import_module('ansible_collections.alation.backup.plugins.modules.%s' % name)
    with pytest.raises(_Spec) as e:
        module.main()
    return e.value.args[0]


def documented(name):
    module = importlib.import_module('ansible_collections.alation.backup.plugins.modules.%s' % name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = set(doc.get('options') or {})
    for fragment in doc.get('extends_documentation_fragment') or []:
        parts = fragment.split('.')
        if parts[:2] != ['alation', 'backup']:
            continue  # ansible.builtin's attributes: no options
        frag = importlib.import_module('ansible_collections.alation.backup.plugins.doc_fragments.%s' % parts[2])
        text = getattr(frag.ModuleDocFragment, parts[3].upper() if len(parts) > 3 else 'DOCUMENTATION')
        options.update((yaml.safe_load(text) or {}).get('options') or {})
    return options


def test_the_groups_are_the_ones_the_roles_default():
    assert set(groups()) == {'backup'} | set(GROUP_KEYS)


@pytest.mark.parametrize('group,name', [(g, m) for g in GROUP_KEYS for m in groups()[g]])
def test_every_module_of_a_group_takes_the_groups_keys(group, name, monkeypatch):
    spec = argument_spec(name, monkeypatch)
    assert set(GROUP_KEYS[group]) <= set(spec), '%s lacks %s' % (name, set(GROUP_KEYS[group]) - set(spec))
    assert set(GROUP_KEYS[group]) <= documented(name), name


def test_the_backup_group_holds_every_module():
    names = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, 'plugins', 'modules')) if n.endswith('.py'))
    assert sorted(groups()['backup']) == names


@pytest.mark.parametrize('name', groups()['leased'])
def test_an_empty_lease_is_no_lease(name, monkeypatch):
    """``lease: {}`` passes validation (the suboptions are not required) and reads as no lease."""
    spec = argument_spec(name, monkeypatch)
    monkeypatch.undo()
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    for value in ({}, None):
        result = ArgumentSpecValidator(dict(lease=spec['lease'])).validate(dict(lease=value))
        assert not result.error_messages, (name, value, result.error_messages)
        from ansible_collections.alation.backup.plugins.module_utils._locks import lease_of
        assert lease_of(result.validated_parameters) is None


def test_half_a_lease_is_refused():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.alation.backup.plugins.module_utils._locks import lease_argument_spec
    result = ArgumentSpecValidator(lease_argument_spec()).validate(dict(lease=dict(path='/data2/backup/.lock')))
    assert 'token' in ' '.join(result.error_messages)


def test_a_module_run_with_every_groups_none_values_works_as_without_them(tmp_path):
    """staging_dir with lease {} and chroot '' (what the roles' module_defaults give outside a run) makes the dir."""
    from ansible_collections.alation.backup.plugins.modules import staging_dir
    d = tmp_path / 'data2' / 'tmp'
    try:
        failed, result = run_module(staging_dir.main, dict(path=str(d), state='present', lease={}, chroot=''))
    except AnsibleFailJson as e:  # pragma: no cover
        raise AssertionError(e.args)
    assert not failed and result['changed'] and d.is_dir()


@pytest.mark.parametrize('name', ['archive_info', 'archive_extract'])
def test_the_readers_of_an_encrypted_archive_take_one_decrypt_spec_and_fragment(name, monkeypatch):
    from ansible_collections.alation.backup.plugins.module_utils._archive_read import decrypt_argument_spec
    spec = argument_spec(name, monkeypatch)
    for key, option in decrypt_argument_spec().items():
        assert spec[key] == option
    module = importlib.import_module('ansible_collections.alation.backup.plugins.modules.%s' % name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert 'alation.backup.decrypt' in doc['extends_documentation_fragment']
    assert not set(decrypt_argument_spec()) & set(doc['options']), 'documented once, in the fragment'


@pytest.mark.parametrize('name', groups()['shell'])
def test_chroot_is_one_option_with_one_doc(name, monkeypatch):
    """The shell group's chroot: the spec of shell_argument_spec, documented only by alation.backup.shell."""
    from ansible_collections.alation.backup.plugins.module_utils._runner import shell_argument_spec
    assert argument_spec(name, monkeypatch)['chroot'] == shell_argument_spec()['chroot']
    module = importlib.import_module('ansible_collections.alation.backup.plugins.modules.%s' % name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert 'alation.backup.shell' in doc['extends_documentation_fragment'] and 'chroot' not in doc['options']
