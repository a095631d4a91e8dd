# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures the module_utils tests share."""

import os

import pytest

from .test_tar import make_tree


@pytest.fixture
def tree(tmp_path):
    """(src, dest): make_tree's sources, and an empty backup storage dir."""
    src, dest = str(tmp_path / 'src'), str(tmp_path / 'dest')
    make_tree(src)
    os.mkdir(dest)
    return src, dest
