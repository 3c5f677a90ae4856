"""The transform playground: run a script on a sample, generate and run test cases.

Shaped like the original's ``/transform/*`` endpoints and Transform Studio test suites;
scripts run under the same sandbox limits as a running job's. See
:mod:`mstream.transform.playground` and :mod:`mstream.transform.assertions`.
"""

from mstream.transform.assertions import ASSERT_TYPES, check_case
from mstream.transform.playground import generate_cases, run_cases, run_script, validate_script

__all__ = [
    "ASSERT_TYPES",
    "check_case",
    "generate_cases",
    "run_cases",
    "run_script",
    "validate_script",
]
