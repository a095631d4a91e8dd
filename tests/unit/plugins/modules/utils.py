# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Harness for running a module's main() in-process (after community.general's)."""

import contextlib
import json

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class AnsibleExitJson(Exception):
    """exit_json was called; args holds the result."""


class AnsibleFailJson(Exception):
    """fail_json was called; args holds the result."""


@contextlib.contextmanager
def set_module_args(args):
    """Make AnsibleModule read ``args`` as its parameters."""
    serialized = json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_remote_tmp='/tmp', _ansible_keep_remote_files=False)})
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patch(basic, '_ANSIBLE_ARGS', to_bytes(serialized)))
        # ansible-core >= 2.19 caches profile-based args; clear that too when present.
        if hasattr(basic, '_ANSIBLE_PROFILE'):
            stack.enter_context(_patch(basic, '_ANSIBLE_PROFILE', 'legacy'))
        yield


@contextlib.contextmanager
def _patch(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _exit_json(self, **kwargs):
    kwargs.setdefault('changed', False)
    raise AnsibleExitJson(kwargs)


def _fail_json(self, **kwargs):
    kwargs['failed'] = True
    raise AnsibleFailJson(kwargs)


@contextlib.contextmanager
def patched_exits():
    with _patch(basic.AnsibleModule, 'exit_json', _exit_json), _patch(basic.AnsibleModule, 'fail_json', _fail_json):
        yield


def run_module(main, args):
    """Run ``main`` with ``args``; return (failed, result)."""
    with set_module_args(args), patched_exits():
        try:
            main()
        except AnsibleExitJson as e:
            return False, e.args[0]
        except AnsibleFailJson as e:
            return True, e.args[0]
    raise AssertionError('module returned without exit_json or fail_json')
