# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CHANGELOG.rst until the first release: the notes the coming release will carry, rendered from changelogs/fragments/.

Nothing is released yet (changelogs/changelog.yaml has no release, galaxy.yml's version ends in -dev). So that
CHANGELOG.rst still says what the first release holds, this renders the fragments with antsibull-changelog itself,
in a throwaway copy of the tree (``antsibull-changelog release`` there, with galaxy.yml's version without ``-dev``),
and writes its CHANGELOG.rst here, the version marked "not released yet" and no date. The real release runs
``antsibull-changelog release`` in the repository, which consumes the fragments and writes the final CHANGELOG.rst.

    .venv/bin/python tools/changelog_preview.py            # rewrite CHANGELOG.rst (make changelog)
    .venv/bin/python tools/changelog_preview.py --check    # exit 1 when CHANGELOG.rst is not what the fragments say
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTE = ('Nothing is released yet: no tag, nothing on Galaxy. These are the notes the first release will carry,\n'
        'rendered from ``changelogs/fragments/`` (``make changelog``); install from the git repository meanwhile\n'
        '(README, Install).\n')


def coming_version(root=ROOT):
    with open(os.path.join(root, 'galaxy.yml')) as handle:
        version = str(yaml.safe_load(handle)['version'])
    return version.split('-', 1)[0]


def render(root=ROOT, antsibull=None):
    antsibull = antsibull or os.path.join(os.path.dirname(sys.executable), 'antsibull-changelog')
    version = coming_version(root)
    tmp = tempfile.mkdtemp(prefix='changelog-preview.')
    try:
        tree = os.path.join(tmp, 'ansible_collections', 'alation', 'backup')
        os.makedirs(tree)
        files = subprocess.check_output(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=root).split(b'\0')
        for name in (f.decode() for f in files if f):
            if not os.path.isfile(os.path.join(root, name)):
                continue
            os.makedirs(os.path.dirname(os.path.join(tree, name)), exist_ok=True)
            shutil.copy2(os.path.join(root, name), os.path.join(tree, name))
        # The date is antsibull-changelog's requirement for a release entry; it is not rendered in CHANGELOG.rst.
        subprocess.check_call([antsibull, 'release', '--version', version, '--date', '1970-01-01'], cwd=tree,
                              stdout=subprocess.DEVNULL)
        with open(os.path.join(tree, 'CHANGELOG.rst')) as handle:
            text = handle.read()
    finally:
        shutil.rmtree(tmp)
    heading = 'v%s\n%s\n' % (version, '=' * (len(version) + 1))
    if heading not in text:
        raise ValueError('antsibull-changelog wrote no section %r' % heading)
    title = 'v%s (not released yet)' % version
    return text.replace(heading, '%s\n%s\n\n%s' % (title, '=' * len(title), NOTE), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='exit 1 when CHANGELOG.rst differs from the fragments')
    args = parser.parse_args(argv)
    path = os.path.join(ROOT, 'CHANGELOG.rst')
    with open(path) as handle:
        current = handle.read()
    wanted = render()
    if wanted == current:
        return 0
    if args.check:
        sys.stderr.write('CHANGELOG.rst differs from changelogs/fragments/; run make changelog\n')
        return 1
    with open(path, 'w') as handle:
        handle.write(wanted)
    print('CHANGELOG.rst: the coming release notes rewritten from changelogs/fragments/')
    return 0


if __name__ == '__main__':
    sys.exit(main())
