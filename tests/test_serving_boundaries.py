"""What the serving side must never do: import torch, or start with bad settings."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from lmrec.settings import Settings
from pydantic import ValidationError

from tests.conftest import REPO


def test_nothing_under_functions_or_layers_imports_torch():
    offenders = []
    for path in [*(REPO / "functions").rglob("*.py"), *(REPO / "layers").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO)}: {n}"
                for n in names
                if n.split(".")[0] in ("torch", "training")
            ]
    assert offenders == []


def test_the_api_module_loads_without_torch_on_the_path(tmp_path):
    # Importing the handler must not pull torch in, even indirectly.
    code = (
        "import sys, importlib.util; "
        "spec = importlib.util.spec_from_file_location('a', 'functions/api/app.py'); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"LMREC_STORE_URI": f"file://{tmp_path}", "PATH": "/usr/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"store_uri": "ftp://x"}, "store_uri"),
        ({"erasure_uri": "bucket/erasure"}, "erasure_uri"),
        ({"refresh_seconds": 0}, "refresh_seconds"),
        ({"model_name": "bad name/with slash"}, "model_name"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
    ],
)
def test_bad_settings_fail_fast(env, field):
    with pytest.raises(ValidationError) as err:
        Settings(**env)
    assert err.value.errors()[0]["loc"] == (field,)


def test_store_roots_lose_their_trailing_slash_and_name_their_variable():
    got = Settings(store_uri="s3://b/", erasure_uri="file:///tmp/e//")
    assert (got.store_uri, got.erasure_uri) == ("s3://b", "file:///tmp/e")
    with pytest.raises(ValidationError, match="LMREC_ERASURE_URI must start with s3://"):
        Settings(erasure_uri="/tmp/e")
