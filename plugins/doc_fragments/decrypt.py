# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The options of the modules that read an encrypted archive (decrypt_argument_spec() in module_utils/_archive_read.py).
    DOCUMENTATION = r'''
options:
  decrypt_key:
    description:
      - The ASCII-armored secret key that decrypts an encrypted archive (C(.tar.gz.gpg)). It is imported into a private
        keyring made for this run (in C(/dev/shm) where there is one) and removed afterwards, with the gpg-agent that
        held it; it never appears on a command line.
      - Not needed for a plain C(.tar.gz).
    type: str
  decrypt_passphrase:
    description:
      - The passphrase of O(decrypt_key), when it has one. It reaches gpg through a pipe (C(--passphrase-fd)),
        never its command line or environment.
    type: str
'''
