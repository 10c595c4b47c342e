"""The layers run one way, only siyu is installed, the library runs without Prefect, and what
a Prefect task receives can be serialised (issue 15, items 1-3)."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_import_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_the_import_counter_finds_no_circle_and_no_upward_arrow() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_layers.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "import circles: 0" in done.stdout
    assert "arrows from a lower layer up: 0\n" in done.stdout


def test_only_siyu_is_installed(tmp_path: Path) -> None:
    done = _python(
        "import importlib.util as u;"
        "print([m for m in ('siyu', 'flows', 'tasks', 'db') if u.find_spec(m)])",
        tmp_path,
    )
    assert done.stdout.strip() == "['siyu']", done.stderr


def test_no_library_module_imports_prefect_not_even_in_a_function_body() -> None:
    """Everything in siyu except the CLI and the demo (the Prefect layer plugs in through
    siyu.hooks), counting deferred imports, which import-linter counts as well."""
    found = []
    for path in sorted((ROOT / "siyu").rglob("*.py")):
        if path.relative_to(ROOT).parts[1] in ("cli", "demo.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.name}:{node.lineno}" for n in names if n.split(".")[0] == "prefect"]
    assert found == []


def test_a_task_receives_serialisable_inputs_and_a_send_task_carries_its_channel() -> None:
    from tasks.context import TickSettings
    from tasks.phases import PHASE_TASKS, STEP_RETRIES, step_task

    settings = TickSettings(str(ROOT), "sqlite:///var/x.db", "http://127.0.0.1:1", False, 2)
    inputs = (settings, "first-purchase-care", 1, datetime(2026, 9, 1, tzinfo=UTC))
    assert pickle.loads(pickle.dumps(inputs)) == inputs
    assert hash(settings) == hash(pickle.loads(pickle.dumps(settings)))

    send = step_task("day3-care", "wecom", 2)
    assert send.name == "day3-care" and send.tags == {"channel:wecom"}
    # untagged where no operator holds the channel (each tagged task run asks the API)
    assert step_task("day3-care", "wecom", 2, tagged=False).tags == set()
    assert send.retries == len(STEP_RETRIES) == 3
    assert {task.name for task in PHASE_TASKS.values()} == {
        "enroll",
        "opt-outs",
        "goals",
        "exits",
        "breakers",
        "older-versions",
        "complete",
    }
