# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archives as the archive module publishes them, for the tests of what reads them (retention, the copies)."""

import hashlib
import os

from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name, sidecar_text

TAG = '5-17-0-116556'


def publish(directory, ts, *, data=None, uid=None, size=None, repeat=100):
    """The archive named for minute ``ts`` and its .sha256 in ``directory`` (made when missing); its path, a str.

    The bytes are ``data``, or ``size`` zero bytes (sparse), or else ``repeat`` times a line naming ``ts``; archive
    and sidecar (and the directory) are chowned to ``uid`` when given."""
    name = archive_name(ts, TAG)
    path = os.path.join(str(directory), name)
    os.makedirs(str(directory), exist_ok=True)
    digest = hashlib.sha256()
    with open(path, 'wb') as f:
        if size is None:
            data = data or ('archive %s' % ts).encode() * repeat
            f.write(data)
            digest.update(data)
        else:
            f.truncate(size)
            zeros = bytes(1024 * 1024)
            for start in range(0, size, len(zeros)):
                digest.update(zeros[:min(len(zeros), size - start)])
    with open(path + '.sha256', 'w') as f:
        f.write(sidecar_text(digest.hexdigest(), name, os.path.getsize(path)))
    if uid is not None:
        for p in (str(directory), path, path + '.sha256'):
            os.chown(p, uid, uid)
    return path
