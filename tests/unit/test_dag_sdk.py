"""The Python SDK builds the same DagSpec as the equivalent YAML."""

from __future__ import annotations

import pytest

import kiok
from kiok import Dag, conn, email, secret, webhook
from kiok.dag.load import spec_from_yaml
from kiok.errors import DagValidationError

EQUIVALENT_YAML = """\
dag:
  id: daily_etl
  description: nightly load
  schedule: "0 2 * * *"
  timezone: Europe/Berlin
  catchup: true
  max_active_runs: 2
  default_timeout: 5m
  labels: [linux, gpu]
  params: {region: eu, limit: 10}
tasks:
  - id: extract
    script: echo ${params.region}
    retries: 2
    retry_delay: 10s
    timeout: 20m
  - id: transform
    type: python
    script: print('t')
    requires: [extract]
  - id: notify
    type: http
    requires: [transform]
    trigger_rule: all_done
    config:
      url: https://example.invalid/hook
      method: POST
      body: '{"t":"${secret.api_token}"}'
      headers: {X-User: "${conn.api.user}"}
"""


def test_public_surface() -> None:
    assert set(kiok.__all__) >= {"Dag", "DagValidationError", "conn", "secret"}
    for name in kiok.__all__:
        assert hasattr(kiok, name)
    # docs/dags.md: what the SDK raises is importable from where the SDK is.
    assert kiok.DagValidationError is DagValidationError


def test_conn_and_secret_are_literal_references() -> None:
    assert conn("api", "user") == "${conn.api.user}"
    assert conn("s3", "fs.s3a.access.key") == "${conn.s3.fs.s3a.access.key}"
    assert secret("api_token") == "${secret.api_token}"
    with pytest.raises(DagValidationError):
        conn("a.b", "k")
    with pytest.raises(DagValidationError):
        secret("x}")


def test_sdk_equals_yaml() -> None:
    dag = Dag(
        "daily_etl",
        schedule="0 2 * * *",
        catchup=True,
        timezone="Europe/Berlin",
        max_active_runs=2,
        labels=["Linux", "gpu"],
        params={"region": "eu", "limit": 10},
        description="nightly load",
    )
    extract = dag.task("extract", script="echo ${params.region}", retries=2, retry_delay="10s", timeout="20m")
    transform = dag.task("transform", script="print('t')", task_type="python", requires=[extract])
    dag.task(
        "notify",
        task_type="http",
        requires="transform",
        trigger_rule="all_done",
        config={
            "url": "https://example.invalid/hook",
            "method": "POST",
            "body": '{"t":"' + secret("api_token") + '"}',
            "headers": {"X-User": conn("api", "user")},
        },
    )
    assert transform.upstream == ("extract",)
    assert dag.to_spec() == spec_from_yaml(EQUIVALENT_YAML)


def test_defaults_match_original_sdk() -> None:
    d = Dag("d")
    assert isinstance(d.task("a", script="x"), kiok.Task)
    s = d.to_spec()
    assert s.default_timeout_ms == 300_000 and s.schedule is None and not s.catchup and s.timezone == "UTC"


def test_chaining_with_shift_operators() -> None:
    d = Dag("chain")
    a, b, c, e = (d.task(x, script="x") for x in "abce")
    a >> [b, c] >> e
    spec = d.to_spec()
    assert spec.task("b").requires == ("a",) and spec.task("c").requires == ("a",)
    assert spec.task("e").requires == ("b", "c")
    d2 = Dag("chain2")
    x, y = d2.task("x", script="x"), d2.task("y", script="y")
    y << x
    assert d2.to_spec().task("y").requires == ("x",)
    assert d2.task("z", script="z").requires(x, "y").upstream == ("x", "y")


def test_dag_does_not_register_itself() -> None:
    import kiok.dag.sdk as sdk

    before = {k: v for k, v in vars(sdk).items() if not k.startswith("__")}
    Dag("lonely").task("a", script="x")
    after = {k: v for k, v in vars(sdk).items() if not k.startswith("__")}
    assert before == after


def test_errors_name_the_field() -> None:
    d = Dag("d")
    d.task("a", script="x", retries=-1)
    with pytest.raises(DagValidationError) as e:
        d.to_spec()
    assert e.value.field == "tasks[0].retries"
    with pytest.raises(DagValidationError, match="duplicate task id 'a'"):
        d.task("a", script="y")
    bad = Dag("d")
    bad.task("a", script="x", requires=["b"])
    with pytest.raises(DagValidationError, match="unknown task 'b'"):
        bad.to_spec()


NOTIFY_YAML = """\
dag:
  id: watched
  default_timeout: 5m
  run_timeout: 1h
  sla: 10m
  notify:
    on_failure:
      - webhook: {url: "${conn.alerts.url}", headers: {X-Token: "${secret.alert_token}"}}
      - email: {connection: smtp-main, to: [ops@example.com]}
    on_sla_miss:
      - email: {connection: smtp-main, to: [ops@example.com, lead@example.com]}
tasks:
  - id: a
    script: "true"
"""


def test_notify_sla_and_run_timeout_equal_the_yaml() -> None:
    d = Dag(
        "watched",
        run_timeout="1h",
        sla="10m",
        notify={
            "on_failure": [
                webhook(conn("alerts", "url"), headers={"X-Token": secret("alert_token")}),
                email("smtp-main", "ops@example.com"),
            ],
            "on_sla_miss": [email("smtp-main", ["ops@example.com", "lead@example.com"])],
        },
    )
    d.task("a", script="true")
    assert d.to_spec() == spec_from_yaml(NOTIFY_YAML)


def test_a_bad_notify_block_names_the_field() -> None:
    d = Dag("d", notify={"on_failure": [webhook("ftp://nope")]})
    d.task("a", script="x")
    with pytest.raises(DagValidationError) as e:
        d.to_spec()
    assert e.value.field == "dag.notify.on_failure[0].webhook.url"
    missing_sla = Dag("d", notify={"on_sla_miss": [email("smtp-main", "ops@example.com")]})
    missing_sla.task("a", script="x")
    with pytest.raises(DagValidationError, match=r"needs dag\.sla"):
        missing_sla.to_spec()


def test_compiling_checks_what_registering_does() -> None:
    """The re-probe of session 29: ``python -m kiok.compile`` printed a DAG of 101 params, or
    a 70,000-byte default, that ``kiok dags register`` then refused (the docs say an SDK file
    is checked whole when compiled)."""
    many = Dag("many", params={f"p{i}": "x" for i in range(101)})
    many.task("t", script="true")
    with pytest.raises(DagValidationError, match="at most 100 params"):
        many.to_spec()
    big = Dag("big", params={"p": "x" * 70_000})
    big.task("t", script="true")
    with pytest.raises(DagValidationError, match="default is 70000 bytes"):
        big.to_spec()
