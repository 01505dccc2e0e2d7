"""Loaded by Python at start-up in a child process whose PYTHONPATH starts here (the
training container the local stack runs during the tests): records its AWS calls for the
IAM judge (tests/aws_calls.py)."""

import os
import sys

# Only a child started while someone acts (LMREC_TEST_AWS_PRINCIPAL): others pay nothing.
if os.environ.get("LMREC_TEST_AWS_CALLS_FILE") and os.environ.get("LMREC_TEST_AWS_PRINCIPAL"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    from tests.aws_calls import install_in_child

    install_in_child()
