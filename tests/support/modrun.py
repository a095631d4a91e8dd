# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one of our modules for real, in its own process, the way Ansible does.

AnsibleModule reads its arguments from a JSON file named on the command line;
the module prints its result as JSON. This runs the real module code with the
real programs (no mocks) and lets a test kill it at any point.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')


def _argv_env(name, args, check=False, diff=False, env=None):
    params = dict(args)
    params['_ansible_check_mode'] = check
    params['_ansible_diff'] = diff
    params.setdefault('_ansible_remote_tmp', tempfile.gettempdir())
    fd, path = tempfile.mkstemp(prefix='modargs-', suffix='.json')
    with os.fdopen(fd, 'w') as f:
        json.dump({'ANSIBLE_MODULE_ARGS': params}, f)
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(p for p in (COLLECTIONS, full_env.get('PYTHONPATH')) if p)
    full_env.update(env or {})
    argv = [sys.executable, '-m', 'ansible_collections.alation.backup.plugins.modules.%s' % name, path]
    return argv, full_env, path


def spawn_module(name, args, check=False, diff=False, env=None):
    """Start the module; return (Popen, args_file). Caller waits or kills."""
    argv, full_env, path = _argv_env(name, args, check, diff, env)
    proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, path


def result_of(proc, path, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    os.unlink(path)
    try:
        result = json.loads(out[out.index('{'):])
    except ValueError:
        raise AssertionError('module printed no JSON (rc=%s)\nstdout:\n%s\nstderr:\n%s' % (proc.returncode, out, err))
    result.setdefault('failed', False)
    return result


def run_module(name, args, check=False, diff=False, env=None, timeout=600):
    """Run module ``name`` with ``args``; return its result dict (``failed`` always set)."""
    proc, path = spawn_module(name, args, check, diff, env)
    return result_of(proc, path, timeout)
