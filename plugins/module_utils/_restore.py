# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a restore writes, and the error every restore step raises.

A restore writes only into an empty or absent directory. With force a
non-empty one is moved aside, never deleted, and a failed restore puts it
back. The cores of the restore modules build on this: _archive_read
(archive_info, archive_extract), _rebuild (pgdata_restore) and _pg_server
(temp_postgres). Standard library only.
"""

import datetime
import os

from ansible_collections.alation.backup.plugins.module_utils._host import HostError
from ansible_collections.alation.backup.plugins.module_utils._staging import RemovalError, clear_tree, dir_state

# What a restore into a non-empty place renames the old one to.
ASIDE_FORMAT = '%s.before-restore-%s'


class RestoreError(HostError):
    """Something the user must fix or know; the message says what and how."""


def aside_name(path, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return ASIDE_FORMAT % (path.rstrip('/'), now.strftime('%Y%m%dT%H%M%SZ'))


def prepare_target(path, force, what, now=None, dry_run=False):
    """Make sure ``path`` may receive a restore; return the name the old one was (or would be) moved to.

    Empty or absent is fine. A non-empty directory is refused unless ``force``,
    and then renamed aside (never deleted) so nothing is lost.
    """
    state = dir_state(path)
    if state in ('symlink', 'not_dir'):
        raise RestoreError('%s %s is a %s: give a directory (or a path that does not exist yet)'
                           % (what, path, 'symlink' if state == 'symlink' else 'file, not a directory'))
    if state != 'not_empty':
        return None
    if not force:
        raise RestoreError('%s %s is not empty: a restore writes only into an empty or absent directory. Empty it, '
                           'choose another, or set force (the old one is then moved aside, not deleted)'
                           % (what, path))
    aside = aside_name(path, now)
    if os.path.lexists(aside):
        raise RestoreError('cannot move %s aside: %s exists already; wait a second and run again' % (path, aside))
    if not dry_run:
        os.rename(path, aside)
    return aside


def remove_made(path, warn):
    """Remove the directory ``path`` that this run made (links inside removed, never followed).

    Cleanup after the real work: a failure is passed to ``warn``, not raised.
    Returns whether ``path`` is gone.
    """
    try:
        if os.path.lexists(path):
            clear_tree(path, remove_self=True)
        return True
    except (RemovalError, OSError) as e:
        warn('could not remove %s: %s' % (path, e))
        return False


def undo_target(path, made, aside, warn):
    """After a failed restore into ``path``: what it wrote goes, what it moved aside comes back.

    A directory the restore made (``made``) or moved aside (``aside``, the
    name it has now) is removed; one that was there and empty is emptied again.
    """
    if not made and not aside:
        try:
            clear_tree(path)
        except (RemovalError, OSError) as e:
            warn('could not empty %s after the failed restore: %s' % (path, e))
        return
    if remove_made(path, warn) and aside:
        try:
            os.rename(aside, path)
        except OSError as e:
            warn('could not put %s back at %s after the failed restore: %s' % (aside, path, e))
