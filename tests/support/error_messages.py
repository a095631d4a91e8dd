# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The refusal and failure messages the backup role can give, read from the code, grouped by the step that gives them.

``python tests/support/error_messages.py`` prints the list docs/troubleshooting.md holds between its markers;
``--write`` replaces it there; tests/unit/test_troubleshooting_doc.py fails when the two differ.

A message is the first argument of ``raise <Something>Error(...)`` or the ``msg`` of ``fail_json(...)``, as its
format string: each ``%s`` (or ``{...}``) stands for a value the run fills in (a path, a pid, a number...), shown
as ``<...>``. So is what a ``*_problem`` or ``*_problems`` function returns or appends to its list (a refusal a
caller fails with: ``replication_problem``, ``data_directory_problem``, ``pgdata_problems``...). Other messages built
from pieces elsewhere (a ``return 'why'`` that a caller wraps) are not all here; the troubleshooting page covers
those by hand.
"""

from __future__ import absolute_import, division, print_function

import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, 'docs', 'troubleshooting.md')
BEGIN = '<!-- BEGIN generated messages: python tests/support/error_messages.py --write -->'
END = '<!-- END generated messages -->'

# Each step of the backup role, and the files whose messages it can give (modules/<name>.py, module_utils/<name>.py,
# filter/..., action/...). Files of the restore role only (its modules, the rebuild) are left out, except what the
# scheduled drill runs.
STEPS = (
    ('preflight', ('modules/alation_info.py', 'module_utils/_alation.py', 'module_utils/_alation_schedule.py',
                   'module_utils/_proc_scan.py', 'modules/backup_lock.py', 'module_utils/_locks.py',
                   'module_utils/_inputs.py', 'module_utils/_users.py', 'modules/pg_ping.py',
                   'module_utils/_pg_inventory.py', 'modules/space_check.py', 'module_utils/_host.py',
                   'module_utils/_runner.py')),
    ('stage', ('modules/staging_dir.py', 'module_utils/_staging.py')),
    ('database', ('modules/pg_probackup.py', 'module_utils/_pg_probackup.py', 'modules/pg_basebackup.py',
                  'module_utils/_postgres.py', 'modules/secret_file.py',
                  'module_utils/_secret_file.py')),
    ('archive', ('modules/archive.py', 'module_utils/_archive.py', 'module_utils/_archive_names.py',
                 'module_utils/_gzip.py', 'module_utils/_tar.py', 'module_utils/_gpg.py')),
    ('retention', ('modules/retention.py', 'module_utils/_retention.py')),
    ('copy', ('modules/offsite_copy.py', 'module_utils/_offsite.py', 'module_utils/_objstore.py')),
    ('cleanup', ('modules/cleanup.py', 'module_utils/_cleanup.py')),
    ('report/summary', ('modules/metrics.py', 'module_utils/_metrics.py', 'filter/report.py', 'action/run_summary.py',
                        'modules/wait_progress.py', 'action/wait_progress.py', 'module_utils/_progress.py',
                        'module_utils/_watch.py')),
    ('drill', ('module_utils/_drill.py', 'modules/archive_extract.py', 'module_utils/_archive_read.py',
               'module_utils/_restore.py', 'module_utils/_rebuild.py', 'modules/pgdata_restore.py',
               'module_utils/_pg_server.py', 'modules/temp_postgres.py', 'modules/pg_amcheck.py')),
)


def _text(node):
    """The format string of a message node, values as <...>; None when it holds no text of its own."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return ''.join(v.value if isinstance(v, ast.Constant) else '<...>' for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _text(node.left)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is None and right is None:
            return None
        return (left if left is not None else '<...>') + (right if right is not None else '<...>')
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'format':
        return _text(node.func.value)
    return None


def _message(call):
    """The message a raise or fail_json call gives, or None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ''
    if name == 'fail_json':
        node = next((k.value for k in call.keywords if k.arg == 'msg'), None)
    elif (name[:1].isupper() or name == 'error') and call.args:
        node = call.args[0]
    else:
        return None
    return _normal(_text(node) if node is not None else None)


def _normal(text):
    """A message's format string with its values as <...>, on one line; None when it says nothing of its own."""
    if not text:
        return None
    text = re.sub(r'%(\([a-z_]+\))?[-#0 +]*[0-9.*]*[sdifrgx]', '<...>', text)
    text = re.sub(r'\{[a-z_0-9.!:]*\}', '<...>', text)
    text = re.sub(r'\s+', ' ', text).strip()
    # A message that is only a value (raise Error(str(e))) says nothing here.
    return text if re.search(r'[a-z]{3}', text.replace('<...>', '')) else None


def _problems(func):
    """(line, message) of each text a ``*_problem(s)`` function returns or appends: what its caller fails with."""
    out = []
    for node in ast.walk(func):
        found = []
        if isinstance(node, ast.Return) and node.value is not None:
            found = node.value.elts if isinstance(node.value, ast.List) else [node.value]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'append'
              and len(node.args) == 1):
            found = node.args
        for value in found:
            text = _normal(_text(value))
            # A text that is mostly values (the/<...> <...> the <...>) is a frame filled from elsewhere: left out.
            if text and len(set(re.findall(r'[A-Za-z_]{3,}', text.replace('<...>', ' ')))) >= 3:
                out.append((node.lineno, text))
    return out


def messages(path):
    """Each message of the file at ``path``, in the order they come, once."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and re.search(r'_problems?$', node.name):
            out.extend(_problems(node))
        call = None
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            call = node.exc
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'fail_json':
            call = node
        text = _message(call) if call is not None else None
        if text:
            out.append((getattr(node, 'lineno', 0), text))
    seen, ordered = set(), []
    for dummy, text in sorted(out):
        if text not in seen:
            seen.add(text)
            ordered.append(text)
    return ordered


def role_messages():
    """fail_msg/msg texts of the backup role's fail and assert tasks, as written (Jinja left in)."""
    out = []
    tasks = os.path.join(ROOT, 'roles', 'backup', 'tasks')
    for name in sorted(os.listdir(tasks)):
        with open(os.path.join(tasks, name)) as f:
            text = f.read()
        for m in re.finditer(r'^\s+(?:fail_msg|msg): (?:>-\s*\n)?((?:.*\n)+?)(?=^\s*[a-z_]+:|^\s*-|\Z)', text, re.M):
            msg = re.sub(r'\s+', ' ', m.group(1)).strip().strip('"')
            if msg and not msg.startswith('{{ __alation_backup_summary'):
                out.append((name, msg))
    return out


def render():
    lines = [BEGIN, '']
    for step, files in STEPS:
        lines.append('#### %s' % step)
        lines.append('')
        for rel in files:
            path = os.path.join(ROOT, 'plugins', rel)
            if not os.path.exists(path):
                continue
            found = messages(path)
            if not found:
                continue
            lines.append('`plugins/%s`:' % rel)
            lines.append('')
            lines.extend('- %s' % _md(text) for text in found)
            lines.append('')
    lines.append('#### role tasks (fail and assert)')
    lines.append('')
    lines.extend('- `roles/backup/tasks/%s`: %s' % (name, _md(msg)) for name, msg in role_messages())
    lines += ['', END]
    return '\n'.join(lines) + '\n'


def _md(text):
    """The message as a Markdown code span: shown as is."""
    return '`%s`' % text.replace('`', "'")


def replaced(doc, block):
    head, sep, rest = doc.partition(BEGIN)
    if not sep or END not in rest:
        raise ValueError('%s has no %s ... %s block' % (DOC, BEGIN, END))
    return head + block.rstrip('\n') + rest.partition(END)[2]


def main(argv):
    block = render()
    if '--write' not in argv:
        sys.stdout.write(block)
        return 0
    with open(DOC) as f:
        doc = f.read()
    new = replaced(doc, block)
    if new != doc:
        with open(DOC, 'w') as f:
            f.write(new)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
