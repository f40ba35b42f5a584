"""Verdict writes are constant work per gate: each record is appended to a journal, the verdict file is written at
the start and whole at the end; a killed session's journal is merged when its partial verdict is read. Pure."""

import json
import shutil

from pytest_ftgate.cli import main as ftgate
from pytest_ftgate.session import archive_previous
from pytest_ftgate.verdict import GateRecord, Verdict, append_journal, read_verdict, write_json_atomic


def gate(i: int, outcome: str = "passed", severity: str = "block") -> GateRecord:
    return GateRecord(id=f"G{i}", name=f"g{i}", severity=severity, outcome=outcome, value=float("nan"),
                      test=f"suites/test_x.py::test_{i}[run]", details={"samples": [{"row": r} for r in range(50)]})


def test_a_gate_record_appends_one_line_and_leaves_the_verdict_file_untouched(tmp_path):
    path = tmp_path / "verdicts" / "r.json"
    write_json_atomic(path, Verdict("r", "run", "t0").to_dict())
    before = path.read_bytes()
    journal = tmp_path / "verdicts" / "r.gates.jsonl"
    for i in range(30):
        append_journal(journal, gate(i))
    assert path.read_bytes() == before  # not rewritten 30 times
    lines = journal.read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[0])["value"] == "NaN"  # plain JSON, one record a line


def test_a_killed_sessions_journal_is_merged_and_the_verdict_stays_partial(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, Verdict("r", "run", "t0").to_dict())
    journal = tmp_path / "r.gates.jsonl"
    append_journal(journal, gate(1))
    append_journal(journal, gate(2, "failed"))
    with open(journal, "a") as fh:
        fh.write('{"id": "G3", "cut by the ki')  # the kill came mid-line
    v = read_verdict(path)
    assert [g["id"] for g in v["gates"]] == ["G1", "G2"] and v["gates_run"] == 2
    assert v["verdict"] == "partial" and v["decision"] == "block"  # what the gates that ran say, never a pass


def test_a_finished_verdict_is_read_as_written(tmp_path):
    v = Verdict("r", "run", "t0", gates=[gate(1)], complete=True, partial_reason="")
    path = write_json_atomic(tmp_path / "r.json", v.to_dict())
    assert read_verdict(path) == json.loads(path.read_text())


def killed_session(out):
    """An output directory as a SIGKILL leaves it: a verdict file written at the start, two gates journalled."""
    path = out / "verdicts" / "r.json"
    write_json_atomic(path, Verdict("r", "demo", "t0", gates_expected=5).to_dict())
    append_journal(path.with_name("r.gates.jsonl"), gate(1))
    append_journal(path.with_name("r.gates.jsonl"), gate(2, "failed", "warn"))
    write_json_atomic(path.with_name("r.intoto.json"), {"payloadType": "x"})  # an attestation, not a verdict
    return path


def test_ftgate_verdict_shows_a_killed_sessions_gates_and_exits_1(tmp_path, capsys):
    killed_session(tmp_path)
    assert ftgate(["verdict", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "PARTIAL  demo [r] — 2 of 5 gate tests ran, warn so far; not a release verdict"
    assert out[1] == "    partial: the session has not finished"
    assert out[2].split()[:4] == ["warn", "G2", "g2", "failed:"]
    assert out[3].startswith("    session ?, written ") and len(out) == 4  # the attestation is not read as one


def test_ftgate_verdict_json_is_the_merged_verdict(tmp_path, capsys):
    path = killed_session(tmp_path)
    assert ftgate(["verdict", "--json", str(path)]) == 1
    (doc,) = json.loads(capsys.readouterr().out)
    assert [g["id"] for g in doc["gates"]] == ["G1", "G2"] and doc["verdict"] == "partial"


def test_ftgate_verdict_exits_0_for_a_complete_pass(tmp_path, capsys):
    v = Verdict("r", "demo", "t0", gates=[gate(1)], complete=True, partial_reason="", session_id="s1",
                finished_at="t1")
    write_json_atomic(tmp_path / "verdicts" / "r.json", v.to_dict())
    assert ftgate(["verdict", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "PASS     demo [r]\n    session s1, written t1\n"  # which session said so


def test_ftgate_verdict_names_a_path_that_holds_no_verdict(tmp_path, capsys):
    (tmp_path / "notes.json").write_text("[1, 2]")
    assert ftgate(["verdict", str(tmp_path / "nowhere")]) == 2
    assert ftgate(["verdict", str(tmp_path / "notes.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "nowhere: no such file or directory" in err[0]
    assert "notes.json: not a pytest-ftgate verdict file" in err[1]


def test_ftgate_verdict_piped_into_head_ends_without_a_traceback(tmp_path):
    import subprocess
    import sys

    path = killed_session(tmp_path)
    for i in range(3, 60):  # well over a pipe's 64 KiB of JSON
        append_journal(path.with_name("r.gates.jsonl"), gate(i))
    proc = subprocess.Popen([sys.executable, "-m", "pytest_ftgate.cli", "verdict", "--json", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(10).startswith(b"[")
    proc.stdout.close()  # the reader leaves, as `| head` does
    assert proc.wait(60) == 1 and proc.stderr.read() == b""


def earlier_session(out, session_id="20261201T000000Z-aaaaaaaa"):
    """An output directory as a finished session leaves it: report, summary, a PASS verdict, logs."""
    v = Verdict("r", "run", "t0", session_id=session_id)
    v.complete = True
    write_json_atomic(out / "verdicts" / "r.json", v.to_dict())
    (out / "verdicts" / "r.intoto.json").write_text("{}")
    for name in ("report.html", "report.json", "summary.md"):
        (out / name).write_text("PASS")
    (out / "logs").mkdir()
    (out / "logs" / "train.log").write_text("log")
    return out


def test_a_new_session_moves_an_earlier_sessions_outputs_aside_and_keeps_them(tmp_path):
    out = earlier_session(tmp_path / "out")
    moved = archive_previous(out, "20261202T000000Z-bbbbbbbb")  # the lock's last holder gated nothing
    assert moved == out / "previous" / "20261201T000000Z-aaaaaaaa"  # named by the session its verdicts name
    assert sorted(p.name for p in moved.iterdir()) == ["report.html", "report.json", "summary.md", "verdicts"]
    assert read_verdict(moved / "verdicts" / "r.json")["verdict"] == "pass"  # kept whole
    assert not (out / "report.html").exists() and list((out / "verdicts").iterdir()) == []
    assert (out / "logs" / "train.log").is_file()  # training logs are not a session's verdict: left in place


def test_nothing_to_move_creates_no_previous_folder(tmp_path):
    (tmp_path / "verdicts").mkdir()
    assert archive_previous(tmp_path, "s") is None and not (tmp_path / "previous").exists()


def test_archiving_never_overwrites_an_earlier_archive_or_escapes_the_folder(tmp_path):
    out = earlier_session(tmp_path / "out", session_id="..")
    first = archive_previous(out, "")
    shutil.rmtree(out / "logs")
    second = archive_previous(earlier_session(out, session_id=".."), "")  # a second one under the same id
    assert first == out / "previous" / "earlier" and second == out / "previous" / "earlier-2"
    assert (first / "summary.md").is_file() and (second / "summary.md").is_file()


def test_ftgate_verdict_on_a_directory_whose_last_session_gated_nothing_points_to_previous(tmp_path, capsys):
    out = earlier_session(tmp_path / "out")
    archive_previous(out, "")
    assert ftgate(["verdict", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the last session to use it gated no run" in err and str(out / "previous") in err
    assert ftgate(["verdict", str(out / "previous" / "20261201T000000Z-aaaaaaaa")]) == 0
