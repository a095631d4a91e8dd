"""Offline stand-in for pip's get-pip.py, used by ``ansible-test sanity --requirements``.

ansible-test bootstraps pip in each sanity venv by downloading get-pip.py from a
host these machines cannot reach. It first looks for the script in its cache;
``make sanity`` puts this file there. It runs pip from a wheel that sits next
to it (downloaded from PyPI by the Makefile) to install the requested packages.
"""
import glob
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ONLY_FOR_REAL_GET_PIP = ('--no-setuptools', '--no-wheel')


def main():
    wheels = sorted(glob.glob(os.path.join(HERE, 'pip-*.whl')))
    if not wheels:
        sys.exit('get_pip_offline: no pip wheel in %s; run "make sanity" to fetch it' % HERE)
    sys.path.insert(0, wheels[-1])
    args = [a for a in sys.argv[1:] if a not in ONLY_FOR_REAL_GET_PIP]
    sys.argv = ['pip', 'install'] + args
    runpy.run_module('pip', run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
