"""Issue 13 §3: `echo "${secret.api}"; sleep; echo done` stored the secret in plaintext,
because a timed flush kept back a fixed tail and the cut fell inside the secret. Against a
real standalone whose log batches flush every 50 ms, so the pause splits the output."""

from __future__ import annotations

import pytest

from kiok.testing.process import Standalone

SECRET = "s3cr3t-api-value-0123456789"


@pytest.fixture
def k(standalone_factory: object) -> Standalone:
    node: Standalone = standalone_factory("mask", {"KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "50"})  # type: ignore[operator]
    conn = {"connectionId": "api", "type": "generic", "properties": {"value": SECRET}}
    r = node.api("POST", "/api/v1/connections", json=conn)
    assert r.status_code == 201, r.text
    return node


def test_a_secret_printed_before_a_pause_is_masked_in_the_stored_log(k: Standalone) -> None:
    k.register(
        """
dag: {id: masked}
tasks:
  - {id: t, script: 'echo "${secret.api}"; sleep 0.5; echo done; printf %s "${secret.api}"; sleep 0.3'}
  - id: py
    type: python
    script: |
      import sys, time
      for ch in "${secret.api}":
          sys.stdout.write(ch); sys.stdout.flush(); time.sleep(0.01)
      print(); time.sleep(0.2); print("end")
"""
    )
    run = k.wait_run(k.trigger("masked"))
    assert run["state"] == "SUCCESS", run
    assert k.log(run["runId"], "t") == "***\ndone\n***"
    assert k.log(run["runId"], "py") == "***\nend\n"
    for task in ("t", "py"):
        assert SECRET[:6] not in k.log(run["runId"], task)


def test_a_crlf_secret_placed_in_a_python_script_is_masked_as_python_reads_it(k: Standalone) -> None:
    """Found by the security probe (session 27): a PEM key pasted with CRLF endings, placed
    in a python script, is read by Python with ``\\n`` endings and so printed unlike the
    stored value: it went through unmasked (a shell task printing it was masked)."""
    pem = (
        "-----BEGIN PRIVATE KEY-----\r\nTOPSECRETKEYMATERIAL1234567890\r\n"
        "lone\rcr\r\n-----END PRIVATE KEY-----\r\n"
    )
    conn = {"connectionId": "tls", "type": "generic", "properties": {"key": pem}}
    assert k.api("POST", "/api/v1/connections", json=conn).status_code == 201
    k.register(
        """
dag: {id: pem}
tasks:
  - id: py
    type: python
    script: |
      key = '''${conn.tls.key}'''
      print("loaded:", key)
      raise ValueError(key)
  - {id: sh, script: 'printf "loaded: %s\\n" "${conn.tls.key}"'}
"""
    )
    run = k.wait_run(k.trigger("pem"))
    assert run["tasks"]["sh"]["state"] == "SUCCESS", run["tasks"]["sh"].get("error")
    assert run["tasks"]["py"]["state"] == "FAILED", run
    for task in ("py", "sh"):
        assert "TOPSECRETKEYMATERIAL" not in k.log(run["runId"], task), k.log(run["runId"], task)
    assert "TOPSECRETKEYMATERIAL" not in (run["tasks"]["py"].get("error") or "")
    assert "loaded: ***" in k.log(run["runId"], "py")


def test_a_secret_as_a_script_literal_reads_it_is_masked(k: Standalone) -> None:
    """Found by the security re-probe (session 27): a value with backslashes placed in a
    python string literal printed as Python reads it (``CORP\\new_svc`` with a line break),
    and in a shell's double quotes without the backslashes it escapes: both unmasked."""
    values = {"pw": "CORP\\new_svc\\tok9", "bs": 'ab\\\\cd\\"ef-secret'}
    conn = {"connectionId": "c2", "type": "generic", "properties": values}
    assert k.api("POST", "/api/v1/connections", json=conn).status_code == 201
    k.register(
        """
dag: {id: literals}
tasks:
  - id: py
    type: python
    script: |
      import sys
      sys.stdout.write('pw:' + '${conn.c2.pw}' + '\\n')
      raise ValueError('${conn.c2.pw}')
  - {id: sh, script: 'printf "bs:%s\\n" "${conn.c2.bs}"'}
"""
    )
    run = k.wait_run(k.trigger("literals"))
    assert run["tasks"]["sh"]["state"] == "SUCCESS", run["tasks"]["sh"].get("error")
    assert k.log(run["runId"], "sh") == "bs:***\n"
    py_log = k.log(run["runId"], "py")
    assert "pw:***\n" in py_log and "ValueError: ***" in py_log, py_log
    assert "new_svc" not in py_log and "new_svc" not in (run["tasks"]["py"].get("error") or "")


def test_a_json_secret_with_an_escaped_emoji_runs_and_is_masked(k: Standalone) -> None:
    """Found by the security re-probe (session 27): the masker read ``\\ud83d\\ude00`` (how
    ``json.dumps`` writes an emoji) one escape at a time, two lone surrogate halves it could
    not encode: building the run's driver failed, and the run stayed RUNNING for ever."""
    import json

    value = json.dumps({"client": "svc", "key": "K3y-ABCDEF-123456", "note": "deploy bot 😀"})
    conn = {"connectionId": "sa", "type": "generic", "properties": {"json": value}}
    assert k.api("POST", "/api/v1/connections", json=conn).status_code == 201
    k.register(
        """
dag: {id: emoji_json}
tasks:
  - {id: sh, script: "cat <<'EOF'\\n${conn.sa.json}\\nEOF\\necho done"}
"""
    )
    run = k.wait_run(k.trigger("emoji_json"), 30)
    assert run["state"] == "SUCCESS", run
    assert k.log(run["runId"], "sh") == "***\ndone\n"


def test_a_secret_printed_inside_a_dict_or_as_json_is_masked(k: Standalone) -> None:
    """A python task that prints the dict holding a connection value (or ``json.dumps`` of
    it) prints the value quoted, its backslashes doubled and its quote escaped: it went
    through unmasked."""
    value = "DOMAIN\\svc'Pa55-secret"
    conn = {"connectionId": "c3", "type": "generic", "properties": {"pw": value}}
    assert k.api("POST", "/api/v1/connections", json=conn).status_code == 201
    k.register(
        """
dag: {id: quoted}
tasks:
  - id: py
    type: python
    script: |
      import json
      config = {"user": "svc", "pw": r'''${conn.c3.pw}'''}
      print(config)
      print(json.dumps(config))
"""
    )
    run = k.wait_run(k.trigger("quoted"))
    assert run["state"] == "SUCCESS", run
    log = k.log(run["runId"], "py")
    assert log.count("***") == 2 and "Pa55" not in log, log


def test_a_task_errors_tail_masks_a_secrets_end_only_where_it_was_cut(k: Standalone) -> None:
    """The security re-probe of session 28: an error quoting the output's last 4 KiB that
    began inside a host name kept 10-21 of its characters (``***xample.com``); and an output
    short enough to be quoted whole is not masked at its start for looking like a secret's end."""
    host, user = "pg-etl.internal.example.com", "etl"
    conn = {
        "connectionId": "db2",
        "type": "generic",
        "properties": {"host": host, "user": user, "pw": "hunter2"},
    }
    assert k.api("POST", "/api/v1/connections", json=conn).status_code == 201
    k.register(
        """
dag: {id: tails}
tasks:
  - id: cut
    type: python
    script: |
      import json, sys
      host, user = "${conn.db2.host}", "${conn.db2.user}"
      detail = "y" * (4096 - 28 - len("example.com") + 11)
      sys.stdout.write("sync failed: " + json.dumps({"host": host, "detail": detail}) + "\\n")
      sys.exit(1)
  - id: whole
    type: python
    script: |
      import sys
      pw = "${conn.db2.pw}"
      print("2 files failed: see above")
      sys.exit(1)
"""
    )
    run = k.wait_run(k.trigger("tails"))
    cut, whole = run["tasks"]["cut"]["error"], run["tasks"]["whole"]["error"]
    assert "xample" not in cut and "internal" not in cut and cut.startswith("***"), cut
    assert whole.startswith("2 files failed: see above"), whole
