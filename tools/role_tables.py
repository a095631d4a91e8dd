# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's role variable tables, generated from each role's meta/argument_specs.yml.

One source for every variable: its name, type, default, choices, whether it is a
secret (no_log) and its description live in the role's argument spec only (where
``ansible-doc -t role`` and the role's validation read them too). This script
writes a table per role between marker comments in README.md:

    <!-- BEGIN alation.backup.backup variables (make docs) -->
    ...
    <!-- END alation.backup.backup variables -->

    .venv/bin/python tools/role_tables.py            # rewrite README.md (make docs)
    .venv/bin/python tools/role_tables.py --check    # exit 1 when README.md is not what the specs say

Standard library and PyYAML only.
"""

import argparse
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
ROLES = ('backup', 'restore')

BEGIN = '<!-- BEGIN alation.backup.{role} variables (make docs) -->'
END = '<!-- END alation.backup.{role} variables -->'

# Ansible's documentation markup, as Markdown. O(name=value) and V(value) read as code.
_MARKUP = [
    (re.compile(r'L\(([^)]*?),\s*([^)]*)\)'), r'[\1](\2)'),
    (re.compile(r'U\(([^)]*)\)'), r'<\1>'),
    (re.compile(r'[COVMRE]\(((?:[^()]|\([^()]*\))*)\)'), r'`\1`'),
    (re.compile(r'I\(([^)]*)\)'), r'*\1*'),
    (re.compile(r'B\(([^)]*)\)'), r'**\1**'),
]


def markup(text):
    """One description paragraph (Ansible markup) as one line of Markdown for a table cell."""
    text = ' '.join(str(text).split())
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return text.replace('|', '\\|')


def literal(value):
    """A default or a choice as the YAML a user would write, in code."""
    if isinstance(value, bool):
        shown = 'true' if value else 'false'
    elif isinstance(value, str):
        shown = value if value else '""'
    else:
        shown = json.dumps(value)
    return '`%s`' % shown.replace('|', '\\|')


def load_spec(role, root=ROOT):
    path = os.path.join(root, 'roles', role, 'meta', 'argument_specs.yml')
    with open(path) as handle:
        return yaml.safe_load(handle)['argument_specs']


def table(role, root=ROOT):
    """The Markdown table of one role's variables, every entry point's options in the order the spec gives them."""
    specs = load_spec(role, root)
    options = {}
    where = {}
    for entry, spec in specs.items():
        for name, option in (spec.get('options') or {}).items():
            options.setdefault(name, option)
            where.setdefault(name, []).append(entry)
    lines = [
        '| variable | type | default | choices | no_log | description |',
        '|---|---|---|---|---|---|',
    ]
    for name, option in options.items():
        kind = option.get('type', 'str')
        if option.get('elements'):
            kind = '%s of %s' % (kind, option['elements'])
        default = literal(option['default']) if 'default' in option else ''
        if option.get('required'):
            default = 'required'
        choices = ', '.join(literal(c) for c in option.get('choices') or [])
        secret = 'yes' if option.get('no_log') else ''
        description = option.get('description') or ''
        if isinstance(description, str):
            description = [description]
        text = ' '.join(markup(d) for d in description)
        if len(where[name]) < len(specs):
            text = 'Entry point %s only. %s' % (', '.join('`%s`' % e for e in where[name]), text)
        lines.append('| `%s` | %s | %s | %s | %s | %s |' % (name, kind, default, choices, secret, text))
    return '\n'.join(lines) + '\n'


def render(readme, root=ROOT):
    """README text with every role's table replaced by the one its spec gives; the markers must be there."""
    for role in ROLES:
        begin, end = BEGIN.format(role=role), END.format(role=role)
        start = readme.find(begin)
        stop = readme.find(end)
        if start < 0 or stop < start:
            raise ValueError('README.md lacks the markers %r ... %r for the %s role table' % (begin, end, role))
        readme = readme[:start] + begin + '\n\n' + table(role, root) + '\n' + readme[stop:]
    return readme


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='exit 1 when README.md differs from the specs')
    parser.add_argument('--readme', default=README)
    args = parser.parse_args(argv)
    with open(args.readme) as handle:
        current = handle.read()
    wanted = render(current)
    if wanted == current:
        return 0
    if args.check:
        sys.stderr.write('%s: the role variable tables differ from roles/*/meta/argument_specs.yml; run make docs\n'
                         % args.readme)
        return 1
    with open(args.readme, 'w') as handle:
        handle.write(wanted)
    print('%s: role variable tables rewritten from roles/*/meta/argument_specs.yml' % args.readme)
    return 0


if __name__ == '__main__':
    sys.exit(main())
