"""Imported by every Python process the tests start, Ray's workers included (tests/conftest.py puts this
folder on PYTHONPATH). Where SWEEP_FAULTS_DIR is set, it installs the tests' fault injection
(sweep_faults.install) right after `sweeps.worker` is first imported, so that the sweep code itself has no
test hook. Nothing else happens here; the folder holds only this file, sweep_faults.py and late_measure.py
(a measure plugin the tests name in SENSITIVITY_MEASURES), so it shadows none of the project's packages."""

import importlib.abc
import importlib.machinery
import os
import sys

if os.environ.get("SWEEP_FAULTS_DIR"):

    class _AfterSweepWorker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "sweeps.worker":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                import sweep_faults

                sweep_faults.install()

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterSweepWorker())
